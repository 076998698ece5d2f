"""One etcd watch: the ``/watch`` HTTP stream of the v3 gateway, read by a thread into a queue.

etcd3gw's own watch helper silently drops the responses that report a compacted
start revision or a cancelled watch, so pynet reads the stream itself: each JSON
line becomes a list of Events, or the exception that ends the watch (Compacted,
Unavailable); the queue lets the caller's idle timeout hold while the socket blocks.
A watch etcd refuses to create for want of permission, or because its token
expired (store/etcd_auth.py), is cancelled ("permission denied", "invalid auth
token"): that is WatchDenied, not Compacted, so the store can authenticate again instead of re-listing.
"""

from __future__ import annotations

import json
import queue
import socket
import threading

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception

from pynet.errors import PynetError, Unavailable
from pynet.store.base import Compacted, Event
from pynet.store.etcd_auth import token_rejected
from pynet.store.etcd_codec import event as _event

END = object()  # queued by a stream that ended because we closed it


class WatchDenied(PynetError):
    """etcd cancelled the watch at its creation: permission denied (or a token it no longer takes)."""


class WatchStream:
    """One ``/watch`` HTTP stream and the thread that turns its JSON lines into queue items:
    a list of Events per response, an exception that ends the iterator, or END."""

    def __init__(self, session: requests.Session, response: requests.Response, url: str,
                 token: str | None = None) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.token = token  # the auth token the watch was created with (None: no auth)
        self.url = url
        self._session = session
        self._response = response
        self._sock = getattr(response.raw.connection, "sock", None)
        self._closing = False

    @classmethod
    def open(cls, client: Etcd3Client, request: dict, timeout: float, headers: dict | None = None) -> WatchStream:
        """POST the create request (with ``headers``: the auth token); connection problems raise
        etcd3gw's exceptions like ``post``.

        On a session of its own, with the client's TLS settings: closing a stream from
        another thread races the reader thread, and both hand the connection back to
        the session's pool; in a shared pool another request could get it while it
        dies (seen as 'Connection aborted, ResponseNotReady' under load)."""
        session = requests.Session()
        session.verify, session.cert = client.session.verify, client.session.cert
        session.trust_env = client.session.trust_env  # see EtcdSecurity.configure
        try:
            response = session.post(client.get_url("/watch"), json=request, stream=True, timeout=timeout,
                                    headers=headers or {})
        except requests.exceptions.RequestException as err:
            session.close()
            failure = ConnectionTimeoutError if isinstance(err, requests.exceptions.Timeout) else ConnectionFailedError
            raise failure(str(err)) from err
        if response.status_code != 200:
            response.close()
            session.close()
            raise Etcd3Exception(response.text, response.reason)
        stream = cls(session, response, client.base_url, (headers or {}).get("Authorization"))
        # The timeout bounded the connect and the headers; the stream itself may be quiet for
        # hours, and close() ends it by shutting the socket down.
        if stream._sock is not None:
            stream._sock.settimeout(None)
        stream.start()
        return stream

    def start(self) -> None:
        threading.Thread(target=self._read, name="etcd-watch", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines(chunk_size=None):
                if line.strip():
                    item = watch_item(json.loads(line), self.url)
                    if item:
                        self.queue.put(item)
                    if isinstance(item, Exception):
                        return
            ended: object = Unavailable(f"etcd at {self.url} closed the watch stream")
        except Exception as err:  # the connection broke (or we shut it down)
            ended = Unavailable(f"etcd watch stream from {self.url} broke: {err}")
        self.queue.put(END if self._closing else ended)

    def close(self) -> None:
        """Wake the reader (shutdown unblocks a recv in another thread; close alone may not)."""
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed: the reader has ended anyway
                pass
        self._response.close()
        self._session.close()


def watch_item(message: dict, url: str) -> list[Event] | Exception | None:
    """One JSON line of the watch stream -> Events, or the exception that ends the watch."""
    if "error" in message:  # the gateway's stream error, e.g. etcd shutting down
        return Unavailable(f"etcd watch at {url} failed: {stream_error(message)}")
    result = message.get("result", {})
    if int(result.get("compact_revision", 0)):
        return Compacted(f"etcd compacted history up to revision {result['compact_revision']}")
    reason = str(result.get("cancel_reason", ""))
    if result.get("canceled") and ("permission denied" in reason or token_rejected(reason)):
        return WatchDenied(f"etcd at {url} refused the watch: {result['cancel_reason']}")
    if result.get("canceled"):
        return Compacted(f"etcd cancelled the watch: {result.get('cancel_reason', 'no reason given')}")
    return [_event(event) for event in result.get("events", [])]


def stream_error(message: dict) -> str:
    error = message["error"]
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)
