"""The HTTP edge: one body decoder, one error mapping, one generic route.

Design note.  dockerd's plugin client sends ``POST /<Subsystem>.<Method>``
with a JSON body but *no* Content-Type, and an empty body for argument-less
methods (protocol.md §1.3), so bodies are parsed here by hand.  Every failure,
for both protocols, is a non-2xx status with ``{"Err": msg, "Error": msg}``:
the network proxy reads ``Err``, the IPAM proxy's 200-path reads ``Error``,
and for non-200 answers dockerd reads ``Err`` for both (§1.4), so the pair is
correct everywhere.  Success is always 200 with a JSON object.

A route is a table row: (path, request dataclass or None, call).  The view
decodes, calls, encodes: it never holds logic of its own.

Limits.  A body is at most ``MAX_BODY`` (1 MiB; dockerd's largest, a CreateNetwork, is a few KiB):
Flask refuses a longer Content-Length before reading, a chunked body is counted here and refused
once it passes the cap, and either way the answer is the usual envelope with 413 naming the cap,
never Werkzeug's HTML page.  JSON nested deeper than Python's recursion limit is a 400 like any
other malformed body.  How long a client may take to send a request is bounded in the server
(plugin/worker.py); a body that deadline cuts short ends here as a 400.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pynet.errors import BadRequest, NotFound, PynetError
from pynet.plugin.wire import decode, encode

log = logging.getLogger("pynet.http")

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_BODY = 1 << 20  # bytes

# libnetwork treats 404 from these two methods as "not implemented" and carries
# on as if they had succeeded (protocol.md §1.4), so a real NotFound there must
# not travel as 404: it goes as 400 (the request names an endpoint pynet does
# not have), not as a 500 that would read as pynet's own failure.
_NO_404 = {"/NetworkDriver.ProgramExternalConnectivity", "/NetworkDriver.RevokeExternalConnectivity"}


@dataclass(frozen=True)
class Route:
    path: str
    request: type | None
    call: Callable[[Any], Any]


def reply(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type=CONTENT_TYPE)


def error_reply(message: str, status: int) -> Response:
    return reply({"Err": message, "Error": message}, status)


def read_body() -> dict:
    """The request's JSON object: empty body and ``null`` mean {}."""
    try:
        raw = _read_capped()
    except OSError as exc:  # socket.timeout from the server's read deadline, or the client went away
        raise BadRequest(f"request body not received: {exc or type(exc).__name__}") from None
    expected = request.content_length
    if expected is not None and len(raw) < expected:
        # gunicorn ends the body at end-of-file without complaint, also when its read deadline cut it.
        raise BadRequest(f"request body not received: {len(raw)} of {expected} bytes arrived "
                         "(the client hung up or was too slow)")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is not valid JSON: nested too deeply") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _read_capped() -> bytes:
    """The raw body, at most MAX_BODY bytes.  Flask's MAX_CONTENT_LENGTH alone refuses a long
    Content-Length, but under gunicorn (wsgi.input_terminated) a chunked body reaches the app
    unlimited, so the cap is also counted here."""
    stream, parts, size = request.stream, [], 0
    while size <= MAX_BODY:
        part = stream.read(MAX_BODY + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > MAX_BODY:
        raise RequestEntityTooLarge()
    return b"".join(parts)


def _view(route: Route):
    def view():
        req = decode(route.request, read_body()) if route.request else None
        result = route.call(req) if route.request else route.call()
        if result is None:
            return reply({})
        return reply(result if isinstance(result, dict) else encode(result))

    view.__name__ = "route_" + route.path.strip("/").replace(".", "_")
    return view


def install(app: Flask, routes: list[Route]) -> None:
    """Register every route and the single error mapping."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    for route in routes:
        app.add_url_rule(route.path, view_func=_view(route), methods=["POST"])
    app.register_error_handler(Exception, _on_error)


def _on_error(exc: Exception) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        log.warning("%s refused: request body over %d bytes", request.path, MAX_BODY)
        return error_reply(f"request body too large: pynet accepts at most {MAX_BODY} bytes (1 MiB)", 413)
    if isinstance(exc, HTTPException):
        # Unknown paths get 404 so dockerd treats a newer method as not implemented.
        return error_reply(f"{exc.name}: {request.path}", exc.code or 500)
    if isinstance(exc, PynetError):
        status = exc.status
        if status == NotFound.status and request.path in _NO_404:
            status = BadRequest.status  # any 4xx but 404 fails the call, as it must
        level = logging.WARNING if status < 500 else logging.ERROR
        log.log(level, "%s failed: %s", request.path, exc)
        return error_reply(str(exc), status)
    log.exception("%s failed unexpectedly", request.path)
    return error_reply(f"internal error in {request.path}: {type(exc).__name__}: {exc}", 500)
