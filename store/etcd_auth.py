"""TLS and etcd's v3 user/password authentication, for every request pynet sends to etcd.

Design note.  etcd3gw has TLS (a requests session's ``verify``/``cert``: set here on the sessions
pynet builds, since etcd3gw ignores its ``ca_cert``/``cert_*`` arguments when given a session) but
no authentication, so this module speaks it over the JSON gateway itself: ``POST
/v3/auth/authenticate {"name", "password"}`` answers a token, sent as ``Authorization: <token>`` on
every later request, the watch stream's included (the gateway passes it on as gRPC metadata).

A token stops working: a simple token after ``--auth-token-ttl`` seconds unused (default 300), a
JWT at its expiry, every simple token when etcd restarts.  A unary request then fails with "invalid
auth token" (HTTP 401); a watch whose create carries such a token is cancelled with "permission
denied" (etcd 3.4 checks the token only when a watch is created, not per event).  The store then
authenticates again, once, and resends: ``renew(seen)`` replaces the token only if it is still the
one the failed request carried, so threads failing together authenticate once.  Authenticating costs
etcd a bcrypt check, hence a token shared by every thread rather than one per request.

Why not certificate-CN authentication (etcd maps a client certificate's CN to a user): it does not
cross the gateway.  With ``--client-cert-auth`` and auth enabled, etcd 3.4 answers every gateway
request over a certificate that has a CN with "400 CommonName of client sending a request against
gateway will be ignored" (``embed/serve.go``): pynet's client certificate must have no CN, and the
user is named by ``--etcd-user``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests
from etcd3gw.client import Etcd3Client

from pynet.errors import PynetError

# etcd's answers (rpctypes) meaning "this token no longer works": authenticate again and resend.
TOKEN_REJECTED = ("invalid auth token", "revision of auth store is old")


class AuthFailed(PynetError):
    """etcd refused the user name or the password (or authentication is not enabled on it)."""


@dataclass(frozen=True)
class EtcdSecurity:
    """How to reach a secured etcd: ``ca`` verifies its server certificate (None: the system's
    trust store), ``cert``/``key`` are pynet's client certificate, ``user``/``password`` its etcd
    user (None: no authentication).  Paths, and the password itself (read by the caller)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs both --etcd-cert and --etcd-key")
        if bool(self.user) != (self.password is not None):
            raise ValueError("etcd authentication needs both --etcd-user and --etcd-password-file")

    @property
    def tls(self) -> bool:
        return bool(self.ca or self.cert)

    def configure(self, session: requests.Session) -> None:
        """Put the TLS settings on a session (each session pynet opens to etcd goes through here)."""
        if self.ca:
            session.verify = self.ca
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's verify (set in
            # many images: the server would then be checked against the system CAs, not --etcd-ca);
            # etcd is reached directly, never through an environment proxy either.
            session.trust_env = False
        if self.cert:
            session.cert = (self.cert, self.key)


class TokenAuth:
    """The token of one etcd user, shared by every thread of a store; see the design note."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password
        self._token: str | None = None
        self._lock = threading.Lock()

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": token} if token else {}

    def current(self, client: Etcd3Client) -> str:
        """The token to send (authenticating first if there is none yet)."""
        token = self._token
        return token if token is not None else self.renew(client, None)

    def renew(self, client: Etcd3Client, seen: str | None) -> str:
        """A new token, unless another thread already replaced ``seen`` (the one that failed).

        Raises AuthFailed when etcd refuses the credentials; connection errors and other etcd
        errors as etcd3gw raises them (the store's _call maps them)."""
        with self._lock:
            if self._token is not None and self._token != seen:
                return self._token
            answer = client.post(client.get_url("/auth/authenticate"),
                                 json={"name": self.user, "password": self._password})
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise AuthFailed(f"etcd answered no token for user {self.user!r}: is authentication enabled?")
            self._token = token
            return token


def token_rejected(message: str) -> bool:
    """Whether etcd's error message says the token must be renewed (see TOKEN_REJECTED)."""
    return any(text in message for text in TOKEN_REJECTED)
