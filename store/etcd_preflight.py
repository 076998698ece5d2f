"""Start-up check of a (secured) etcd: one line naming the problem, before pynet serves.

Design note.  A misconfigured secure cluster would otherwise surface as a 500 on every request, long
after start, with a TLS error deep in a chain of wrapped exceptions.  ``preflight`` runs once in
``pynet serve`` (plugin/server.py) and raises ``Misconfigured`` with one sentence:

1. the files: every path given is readable, the CA loads, the certificate and key load and match;
2. TLS, per endpoint, with a plain ``GET /version`` on a session set up like the store's (no auth
   is needed there): a server certificate the CA does not verify, a client certificate missing or
   refused (a TLS 1.3 server refuses it after the handshake: the client sees EOF or an alert), an
   ``http://`` URL to a TLS listener (etcd drops the connection without an answer; a TLS
   handshake then tells the two apart);
3. authentication and permission, through the store itself: the user and password (a token), a
   count-only read and a write-permission probe of pynet's prefix (``EtcdStore.check_access``).

An endpoint that cannot be reached at all (refused, silent) is not a misconfiguration: pynet
starts and the store retries, as when etcd goes away later; ``preflight`` returns the unreachable
ones so the caller can log them.  Every network call here is bounded by ``timeout``.
"""

from __future__ import annotations

import socket
import ssl

import requests

from pynet.errors import PynetError, Unavailable
from pynet.store.etcd import EtcdStore, parse_endpoint, parse_endpoints
from pynet.store.etcd_auth import AuthFailed, EtcdSecurity
from pynet.store.keys import ROOT


class Misconfigured(PynetError):
    """pynet cannot use etcd as configured; the message is the one line ``pynet serve`` prints."""


def preflight(endpoints: str, security: EtcdSecurity, timeout: float = 3.0) -> list[str]:
    """Check files, TLS, credentials and permission (see the design note); the unreachable URLs."""
    urls = parse_endpoints(endpoints)
    check_files(security)
    for url in urls:
        if security.tls and url.startswith("http://"):
            raise Misconfigured(f"--etcd {url} is not https://, but TLS files are given: "
                                "the certificates and password would not be used (or be sent in clear)")
    unreachable = []
    for url in urls:
        if not _check_tls(url, security, timeout):
            unreachable.append(url)
            continue
        _check_access(url, security, timeout)
    return unreachable


def check_files(security: EtcdSecurity) -> None:
    """Each file readable; the CA a certificate; the certificate and key a pair."""
    for flag, path in (("--etcd-ca", security.ca), ("--etcd-cert", security.cert), ("--etcd-key", security.key)):
        if path:
            try:
                with open(path, "rb") as file:
                    file.read(1)
            except OSError as err:
                raise Misconfigured(f"{flag} {path}: cannot read it: {err.strerror or err}") from None
    context = ssl.create_default_context()
    if security.ca:
        try:
            context.load_verify_locations(cafile=security.ca)
        except ssl.SSLError as err:
            raise Misconfigured(f"--etcd-ca {security.ca}: not a PEM certificate ({err.reason or err})") from None
    if security.cert:
        try:
            context.load_cert_chain(security.cert, security.key)
        except ssl.SSLError as err:
            raise Misconfigured(f"--etcd-cert {security.cert} with --etcd-key {security.key}: not a PEM "
                                f"certificate and its matching key ({err.reason or err})") from None


def _check_tls(url: str, security: EtcdSecurity, timeout: float) -> bool:
    """True if etcd answered ``/version``; False if it cannot be reached; Misconfigured otherwise."""
    session = requests.Session()
    security.configure(session)
    try:
        session.get(f"{url}/version", timeout=timeout).close()
        return True
    except requests.exceptions.SSLError as err:
        raise Misconfigured(_tls_problem(url, security, err)) from None
    except requests.exceptions.ConnectionError as err:
        if url.startswith("http://") and _speaks_tls(url, timeout):
            raise Misconfigured(f"etcd at {url} speaks TLS only: use https:// (and --etcd-ca, "
                                "--etcd-cert, --etcd-key)") from None
        if _unreachable(err):
            return False
        raise Misconfigured(f"etcd at {url} did not answer: {err}") from None
    except requests.exceptions.Timeout:
        return False
    finally:
        session.close()


def _tls_problem(url: str, security: EtcdSecurity, err: Exception) -> str:
    cause = _ssl_cause(err)
    if isinstance(cause, ssl.SSLCertVerificationError) and "mismatch" in (cause.verify_message or ""):
        return (f"etcd at {url}: its server certificate is not valid for that address ({cause.verify_message}): "
                "use an address in its subjectAltName, or add this one")
    if isinstance(cause, ssl.SSLCertVerificationError):
        trust = f"--etcd-ca {security.ca}" if security.ca else "the system's CAs (give --etcd-ca)"
        return f"etcd at {url}: its server certificate is not verified by {trust}: {cause.verify_message}"
    reason = getattr(cause, "reason", None) or str(cause or err)
    if not security.cert:
        return f"etcd at {url} requires a client certificate: give --etcd-cert and --etcd-key ({reason})"
    return (f"etcd at {url} refused the client certificate --etcd-cert {security.cert}: "
            f"not issued by a CA it trusts? ({reason})")


def _check_access(url: str, security: EtcdSecurity, timeout: float) -> None:
    store = EtcdStore([url], timeout=timeout, security=security)
    try:
        store.check_access()
    except AuthFailed as err:
        raise Misconfigured(str(err)) from None
    except Unavailable:
        return  # it answered /version a moment ago: gone again, the store will retry
    except PynetError as err:
        raise Misconfigured(_access_problem(url, security, str(err))) from None
    finally:
        store.close()


def _access_problem(url: str, security: EtcdSecurity, message: str) -> str:
    if "user name is empty" in message:
        return f"etcd at {url} requires authentication: give --etcd-user and --etcd-password-file"
    if "permission denied" in message:
        return (f"etcd at {url}: user {security.user!r} may not read and write pynet's prefix {ROOT}/: "
                f"grant its role readwrite on that prefix")
    if "CommonName of client" in message:
        return (f"etcd at {url} refuses client certificates that have a Common Name on its JSON gateway "
                f"(auth enabled with --client-cert-auth): issue --etcd-cert {security.cert} without a CN, "
                "e.g. openssl -subj /O=pynet")
    return message


def _ssl_cause(err: BaseException) -> BaseException | None:
    """The ssl.SSLError at the bottom of requests' and urllib3's wrapping, if any."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException) and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    return None


def _unreachable(err: BaseException) -> bool:
    """Refused, no route, unknown host, connect timeout: nothing answered at that address."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionRefusedError, socket.gaierror, socket.timeout)) or (
                isinstance(seen, OSError) and seen.errno is not None and "unreachable" in str(seen.strerror)):
            return True
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException) and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    return False


def _speaks_tls(url: str, timeout: float) -> bool:
    """Whether a TLS server answers at the URL's address (a handshake, verifying nothing)."""
    _, host, port = parse_endpoint(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return True
    except ssl.SSLError as err:
        return "ALERT" in str(err).upper()  # a TLS server that refused us (TLS 1.2 and a client certificate)
    except OSError:
        return False
