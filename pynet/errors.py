"""pynet's one error taxonomy.

Services raise these according to what went wrong; plugin/http.py maps every one
of them to an HTTP status and the {"Err": ..., "Error": ...} envelope in exactly
one place.  Callers branch on the class, never on the message.  Messages name
the offending thing and carry context, e.g.
"could not create bridge 'pn-1a2b3c4d5e6f': File exists".
"""


class PynetError(Exception):
    """Base class: an unexpected internal failure (HTTP 500)."""

    status = 500


class BadRequest(PynetError):
    """The request is malformed or asks for something pynet cannot honour (400)."""

    status = 400


class NotFound(PynetError):
    """The request names a network, endpoint, pool or address pynet does not have (404)."""

    status = 404


class Conflict(PynetError):
    """The request collides with existing state: a taken address, an overlapping pool (409)."""

    status = 409


class Exhausted(Conflict):
    """A pool or the default pools have nothing left to hand out (409)."""


class Retryable(PynetError):
    """A transient condition (store contention, backend unreachable); the same request may succeed later (503)."""

    status = 503


class Unavailable(Retryable):
    """The state store cannot be reached (every etcd endpoint refused or timed out) (503)."""


class Timeout(Retryable):
    """An outbound call (a command, the kernel, the store, dockerd) did not finish within its bound; the
    message names what hung (503)."""
