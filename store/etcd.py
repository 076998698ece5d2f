"""EtcdStore: the multi-host implementation of the Store port, on etcd v3.

Design note.  Every method is one etcd v3 request through etcd's JSON gateway
(``/v3/...``, etcd >= 3.4; a watch is two: a range at the start revision, so a
compacted one fails at the call as in the other stores, then the stream), and
the semantics of store/base.py map one to one:
revisions are etcd's ``mod_revision``; ``current_revision`` is the header
revision of a range; ``create`` is a txn comparing ``create_revision == 0``;
``cas`` and ``delete(key, rev)`` are txns comparing ``mod_revision``; ``list``
is a range up to the prefix's upper bound, sorted by key; leases are etcd
leases.  Values are the JSON text of store/_common.encode, keys as given.

Why the ``etcd3gw`` client (OpenStack's): it is maintained, it speaks the HTTP
gateway instead of gRPC, so nothing pulls grpcio and protobuf into the managed
plugin's rootfs (python-etcd3 no longer imports with current protobuf;
etcd-sdk-python needs grpcio, about 19 MB, plus a protobuf it does not
declare), and its API is synchronous, which suits pynet's threads.  We use its
``post``/``transaction`` (HTTP, status-to-exception mapping, pinned API path).
Its ``Lease.refresh`` turns a keep-alive error into a KeyError, so lease calls
are plain posts too.  Its watch we cannot use: it silently drops the responses that report a
compacted start revision or a cancelled watch, so a caller would wait forever
for events that are gone.  ``WatchStream`` below posts to ``/watch`` (on a
session of its own: see ``open``) and reads the JSON lines itself; a reader
thread feeds a queue so the caller's idle timeout holds while the socket blocks.

Several endpoints (the members of one cluster): a call goes to the one that
last worked and moves on in order when it cannot connect; when none answers,
``pynet.errors.Unavailable`` (HTTP 503) names them all.  Every request is
bounded by ``timeout`` per endpoint, so nothing hangs.  A read, or a write that
never reached a server (connection refused, connect timeout), is safe to retry
on the next endpoint.  A write whose connection failed after it was sent may or
may not have been applied, so it is not resent: Unavailable, and the caller
re-reads before trying again.  A watch whose connection drops (etcd restarted,
member gone) ends with Unavailable; the caller re-watches from last + 1.  A
silently dead connection (a partition, no reset) is noticed by the caller's
idle timeout, after which the re-watch fails fast: use a finite timeout.

Secured etcd (store/etcd_auth.py): TLS settings go on every session (the watch
streams' too), and with a user every request carries its token; a request whose
token etcd no longer accepts is resent once after authenticating again.  Under
RBAC pynet's role may read only pynet's prefix, so the revision probes (a
count-only range) name a key in it (``PROBE_KEY``), never the whole keyspace.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.parse
from typing import Any, Callable, Iterator

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from pynet.errors import PynetError, Unavailable
from pynet.store.base import Compacted, Entry, Event, LeaseNotFound
from pynet.store.etcd_auth import AuthFailed, EtcdSecurity, TokenAuth, token_rejected
from pynet.store.etcd_codec import NO_KEY, b64, entry, new_revision, put, range_end
from pynet.store.etcd_watch import END, WatchDenied, WatchStream, stream_error
from pynet.store.keys import ROOT

log = logging.getLogger("pynet.store")

DEFAULT_PORT = 2379
API_PATH = "/v3/"  # etcd 3.4+; 3.3 served only /v3beta/, 3.5 dropped /v3beta/
POOL_SIZE = 32  # pooled HTTP connections per endpoint: many threads share one store
REPLAY_GRACE_SECONDS = 1.0  # least quiet time allowed before a watch's first past events
_UNREACHABLE = (ConnectionFailedError, ConnectionTimeoutError)
PROBE_KEY = f"{ROOT}/"  # a key pynet's etcd role can read (see the design note)
Action = Callable[[Etcd3Client, dict], Any]  # (client, headers with the token) -> answer


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """``http://host:port`` (also https, [v6], port defaulting to 2379) -> (scheme, host, port).

    ValueError naming the endpoint for anything else (a path, credentials, no scheme...).
    """
    problem = f"bad etcd endpoint {url!r}: expected http://host:port or https://host:port"
    parts = urllib.parse.urlsplit(url.strip())
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username
            or parts.password or parts.query or parts.fragment or parts.path not in ("", "/")):
        raise ValueError(problem)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:  # a port that is not a number in 0..65535
        raise ValueError(problem) from None
    return parts.scheme, parts.hostname, port


def parse_endpoints(endpoints: str | list[str]) -> list[str]:
    """Comma-separated or a list -> normalised ``scheme://host:port`` URLs (at least one)."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    urls = []
    for item in (i.strip() for i in items):
        if item:
            scheme, host, port = parse_endpoint(item)
            urls.append(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}")
    if not urls:
        raise ValueError("no etcd endpoint given: expected http://host:port[,http://host:port...]")
    return urls


class _Rejected(PynetError):
    """etcd answered, with an error.  The callers that expect one (lease not found,
    revision compacted) catch it; any other escapes as an internal error (500)."""


class _TokenRejected(_Rejected):
    """etcd no longer accepts the token ``token``: authenticate again and resend."""

    def __init__(self, message: str, token: str | None) -> None:
        super().__init__(message)
        self.token = token


class EtcdStore:
    """A Store on an etcd cluster reached at ``endpoints``; safe to share between threads."""

    supports_leases = True

    def __init__(self, endpoints: list[str] | str, timeout: float = 2.0,
                 security: EtcdSecurity | None = None) -> None:
        """Parses ``endpoints`` (ValueError if malformed) and sends nothing yet; ``security``:
        TLS files and the etcd user (store/etcd_auth.py)."""
        self.urls = parse_endpoints(endpoints)
        self.timeout = timeout
        self.security = security or EtcdSecurity()
        user = self.security.user
        self._auth = TokenAuth(user, self.security.password or "") if user else None
        self._clients = [self._client(url) for url in self.urls]
        self._preferred = 0  # index of the endpoint that answered last
        self._lock = threading.Lock()
        self._streams: set[WatchStream] = set()
        self._closed = False

    def _client(self, url: str) -> Etcd3Client:
        scheme, host, port = parse_endpoint(url)
        session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.security.configure(session)  # etcd3gw applies its own TLS arguments only to a session it makes
        return Etcd3Client(host=host, port=port, protocol=scheme, timeout=self.timeout,
                           api_path=API_PATH, session=session)

    # -- plumbing --------------------------------------------------------------------

    def _call(self, action: Action, what: str, resend: bool = True) -> Any:
        """``action(client, headers)`` on the preferred endpoint, then the others in order.

        ``resend=False`` (a write whose repetition is not harmless): move on only if
        the request cannot have been sent.  Unavailable when no endpoint could be
        used; _Rejected when etcd answered with an error; AuthFailed when it refused
        the credentials.  A token etcd no longer accepts is renewed and the request
        sent once more: etcd refused it unapplied, so even a write may be resent.
        """
        try:
            return self._endpoints(action, what, resend)
        except _TokenRejected as err:
            log.info("etcd: token of user %r no longer accepted (%s): authenticating again", self.security.user, err)
            stale = err.token
        self._endpoints(lambda client, _: self._auth.renew(client, stale), "authentication", True)
        try:
            return self._endpoints(action, what, resend)
        except _TokenRejected as err:
            raise _Rejected(f"{err} (again right after authenticating)") from None

    def _endpoints(self, action: Action, what: str, resend: bool) -> Any:
        if self._closed:
            raise RuntimeError("store is closed")
        first = self._preferred
        failures: dict[str, str] = {}
        for index in [*range(first, len(self._clients)), *range(first)]:
            url = self.urls[index]
            client = self._clients[index]
            token = None
            try:
                token = self._auth.current(client) if self._auth else None
                result = action(client, self._auth.headers(token) if self._auth else {})
            except (*_UNREACHABLE, requests.exceptions.RequestException) as err:
                failures[url] = _reason(err, self.timeout)
                if not resend and not _never_sent(err):
                    raise Unavailable(f"etcd at {url} failed during {what}, which may or may not "
                                      f"have been applied: {failures[url]}") from None
                continue
            except Etcd3Exception as err:
                raise self._rejected(url, what, _message(err), token) from None
            if self._auth and isinstance(result, dict) and "error" in result and token_rejected(stream_error(result)):
                # a streaming call (lease keep-alive) reports its errors inside a 200
                raise _TokenRejected(f"etcd at {url} rejected {what}: {stream_error(result)}", token)
            if index != first:
                self._preferred = index
                log.warning("etcd: now using %s (%s)", url, _describe(failures))
            return result
        raise Unavailable(f"etcd unreachable at {', '.join(self.urls)}: {_describe(failures)}")

    def _rejected(self, url: str, what: str, message: str, token: str | None) -> PynetError:
        """The exception for an error answer: the token's, the credentials', or any other."""
        if self._auth and token_rejected(message):
            return _TokenRejected(f"etcd at {url} rejected {what}: {message}", token)
        if self._auth and ("authentication failed" in message or "authentication is not enabled" in message):
            return AuthFailed(f"etcd at {url} refused user {self._auth.user!r}: {message}")
        return _Rejected(f"etcd at {url} rejected {what}: {message}")

    def _post(self, path: str, body: dict, resend: bool = True) -> dict:
        return self._call(lambda client, headers: client.post(client.get_url(path), json=body, headers=headers),
                          path, resend)

    def _txn(self, compare: dict, success: dict) -> dict:
        """One compare-and-then-request transaction (nothing on failure)."""
        txn = {"compare": [compare], "success": [success], "failure": []}
        try:
            return self._call(lambda client, headers: client.post(client.get_url("/kv/txn"), json=txn, headers=headers),
                              "a transaction", resend=False)
        except _Rejected as err:
            if "lease not found" not in str(err):
                raise
            lease = success.get("request_put", {}).get("lease")
            raise LeaseNotFound(f"lease {lease} does not exist (expired or revoked)") from None

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        kvs = self._post("kv/range", {"key": b64(key)}).get("kvs") or []
        return entry(kvs[0]) if kvs else None

    def list(self, prefix: str) -> list[Entry]:
        body = {"key": b64(prefix or NO_KEY), "range_end": b64(range_end(prefix)),
                "sort_order": "ASCEND", "sort_target": "KEY"}
        entries = [entry(kv) for kv in self._post("kv/range", body).get("kvs") or []]
        return [e for e in entries if e.key.startswith(prefix)]

    def current_revision(self) -> int:
        return int(self._post("kv/range", {"key": b64(PROBE_KEY), "count_only": True})["header"]["revision"])

    def check_access(self) -> None:
        """Authenticate (with a user), then check that pynet may read and write its prefix,
        writing nothing: a txn whose compare always holds, with a put in the branch never
        taken (etcd checks the permissions of both branches).  Raises like any call."""
        self.current_revision()
        always = {"key": b64(PROBE_KEY), "result": "GREATER", "target": "VERSION", "version": -1}
        txn = {"compare": [always], "success": [], "failure": [put(PROBE_KEY, {"probe": True}, 0)]}
        self._call(lambda client, headers: client.post(client.get_url("/kv/txn"), json=txn, headers=headers),
                   "a permission check")

    # -- writes ----------------------------------------------------------------------

    def create(self, key: str, value: dict, lease: int = 0) -> int | None:
        compare = {"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
        return new_revision(self._txn(compare, put(key, value, lease)))

    def cas(self, key: str, value: dict, revision: int, lease: int = 0) -> int | None:
        compare = {"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}
        return new_revision(self._txn(compare, put(key, value, lease)))

    def delete(self, key: str, revision: int | None = None) -> bool:
        if revision is None:
            return int(self._post("kv/deleterange", {"key": b64(key)}, resend=False).get("deleted", 0)) > 0
        compare = {"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}
        result = self._txn(compare, {"request_delete_range": {"key": b64(key)}})
        if not result.get("succeeded"):
            return False
        return int(result["responses"][0]["response_delete_range"].get("deleted", 0)) > 0

    # -- leases ----------------------------------------------------------------------
    # All three may be resent to another member: a refresh or a revoke twice is
    # harmless, a grant twice leaks a lease that expires on its own.

    def grant_lease(self, ttl: int) -> int:
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, got {ttl}")
        result = self._post("lease/grant", {"TTL": ttl, "ID": 0})
        if result.get("error"):
            raise PynetError(f"etcd refused a lease of {ttl} s: {result['error']}")
        return int(result["ID"])

    def refresh_lease(self, lease_id: int) -> bool:
        try:
            result = self._post("lease/keepalive", {"ID": lease_id})
        except _Rejected as err:
            if "lease not found" in str(err):
                return False
            raise
        if "error" in result:  # keep-alive is a stream: its errors come inside a 200
            raise Unavailable(f"etcd could not refresh lease {lease_id}: {stream_error(result)}")
        # An expired or revoked lease is not an error: the answer just has no TTL (0 omitted).
        return int(result.get("result", {}).get("TTL", 0)) > 0

    def revoke_lease(self, lease_id: int) -> None:
        try:
            self._post("lease/revoke", {"ID": lease_id})
        except _Rejected as err:
            if "lease not found" not in str(err):
                raise

    # -- watch -----------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, timeout: float | None = None) -> Iterator[Event]:
        start = max(start_revision, 1)
        replay = self._check_history(start)  # eager, like the other stores: Compacted at the call
        # etcd replays past revisions from a loop that runs every 100 ms: give it time
        # before calling the watch quiet.
        first = timeout if timeout is None or not replay else max(timeout, REPLAY_GRACE_SECONDS)
        return self._follow(prefix, start, first, timeout)

    def _check_history(self, start: int) -> bool:
        """Whether there are past revisions to replay from ``start``.  Compacted if ``start``
        is older than etcd's history: a range at that revision (of any key: the condition
        is the revision's alone) then fails."""
        try:
            result = self._post("kv/range", {"key": b64(PROBE_KEY), "revision": start, "count_only": True})
        except _Rejected as err:
            if "compacted" in str(err):
                raise Compacted(f"revision {start} is compacted: {err}") from None
            if "future revision" not in str(err):  # a start beyond the newest revision is fine
                raise
            return False
        return int(result["header"]["revision"]) >= start

    def _follow(self, prefix: str, start: int, first: float | None, timeout: float | None) -> Iterator[Event]:
        """The iterator; the stream opens at the first next(), so an iterator that is
        never started holds no connection.  ``first``: the quiet time allowed before the
        first events, ``timeout`` after each batch."""
        if self._closed:
            return
        stream = self._open_stream(prefix, start)
        wait = first
        renewed = delivered = False
        try:
            while True:
                try:
                    item = stream.queue.get(timeout=wait)
                except queue.Empty:
                    return
                if item is END:
                    return
                if isinstance(item, WatchDenied) and self._auth and not renewed and not delivered:
                    # etcd 3.4 cancels a watch created with a token it no longer accepts
                    # (etcd_auth.py): once, authenticate again and create it anew.
                    renewed = True
                    self._drop(stream)
                    self._call(lambda client, _, seen=stream.token: self._auth.renew(client, seen), "authentication")
                    stream = self._open_stream(prefix, start)
                    continue
                if isinstance(item, Exception):
                    raise item
                delivered = True
                yield from item
                wait = timeout
        finally:
            self._drop(stream)

    def _drop(self, stream: WatchStream) -> None:
        stream.close()
        with self._lock:
            self._streams.discard(stream)

    def _open_stream(self, prefix: str, start: int) -> WatchStream:
        request = {"create_request": {"key": b64(prefix or NO_KEY), "range_end": b64(range_end(prefix)),
                                      "start_revision": start}}

        def post(client: Etcd3Client, headers: dict) -> WatchStream:
            return WatchStream.open(client, request, self.timeout, headers)

        stream = self._call(post, "watch")
        with self._lock:
            self._streams.add(stream)
            if self._closed:
                stream.close()  # close() ran while we connected: the iterator ends at once
        return stream

    def close(self) -> None:
        """End every watch iterator and drop the connections; idempotent."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        for client in self._clients:
            client.session.close()


# -- errors --------------------------------------------------------------------------


def _requests_error(err: Exception) -> BaseException | None:
    """The requests exception behind ``err`` (etcd3gw wraps them), None for an HTTP status."""
    return err if isinstance(err, requests.exceptions.RequestException) else err.__context__


def _never_sent(err: Exception) -> bool:
    """True if the request cannot have reached etcd: the connection itself failed."""
    cause = _requests_error(err)
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        return isinstance(getattr(cause.args[0], "reason", None), NewConnectionError)
    return False


def _reason(err: Exception, timeout: float) -> str:
    """A short reason for a connection error: 'Connection refused', 'no answer within 2.0 s'..."""
    cause = _requests_error(err)
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout} s"
    if isinstance(cause, requests.exceptions.Timeout):
        return f"no answer within {timeout} s"
    seen = cause
    for _ in range(10):  # down the chain: the OS error at the bottom says it best
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        inner = getattr(seen.args[0], "reason", None) if seen.args else None
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    if cause is None:  # etcd answered 503/504/408: e.g. no leader
        return _message(err)
    return str(cause)


def _describe(failures: dict[str, str]) -> str:
    """'Connection refused' for one endpoint; 'http://a:1: Connection refused; http://b:2: ...'."""
    if len(failures) == 1:
        return next(iter(failures.values()))
    return "; ".join(f"{url}: {reason}" for url, reason in failures.items())


def _message(err: Etcd3Exception) -> str:
    """etcd's own message from an error answer (the gateway sends {"error": ..., "code": ...})."""
    text = err.detail_text or ""
    try:
        body = json.loads(text)
        return str(body.get("message") or body.get("error") or text)
    except (ValueError, AttributeError):
        status = " ".join(str(a) for a in err.args)
        return f"not an etcd v3 gateway answer ({status}: {text[:200]!r})"
