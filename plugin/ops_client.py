"""How the operator's commands reach the running `pynet serve`: its socket, found, and one call.

The socket is, in order: ``--socket``, ``PYNET_SOCKET``, the legacy plugin's socket
(/run/docker/plugins/pynet.sock) when it exists, else the managed plugin's, which dockerd puts at
/run/docker/plugins/<plugin id>/pynet.sock (config.json's ``interface.socket``): found by itself when there
is exactly one.  Only the standard library (pynet/unixhttp.py).
"""

from __future__ import annotations

import glob
import http.client
import json
import os

from pynet import unixhttp

DEFAULT_SOCKET = "/run/docker/plugins/pynet.sock"
MANAGED_GLOB = "/run/docker/plugins/*/pynet.sock"
TIMEOUT = 60.0  # doctor probes every peer: bounded server-side, a few seconds per peer


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def find_socket(given: str | None = None, legacy: str = DEFAULT_SOCKET, managed: str = MANAGED_GLOB) -> str:
    if given:
        return given
    if os.environ.get("PYNET_SOCKET"):
        return os.environ["PYNET_SOCKET"]
    if os.path.exists(legacy):
        return legacy
    found = sorted(glob.glob(managed))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CliError(f"several managed pynet plugins ({', '.join(found)}): name one with --socket")
    return legacy  # nothing found: the error then names the usual place


def call(socket_path: str, path: str, body: dict | None = None, timeout: float = TIMEOUT) -> dict:
    """POST ``path`` to pynet; its JSON object, or CliError naming what went wrong."""
    try:
        status, raw = unixhttp.request(unixhttp.UnixConnection(socket_path, timeout), "POST", path, body or {})
    except OSError as e:
        raise CliError(f"cannot reach the pynet plugin on {socket_path}: {e.strerror or e} "
                       "(is `pynet serve` running? --socket / PYNET_SOCKET)") from None
    except http.client.HTTPException as e:
        raise CliError(f"bad answer from the pynet plugin on {socket_path}: {e!r}") from None
    if status == 404:
        raise CliError(f"the plugin on {socket_path} does not answer {path} (not pynet, or an older pynet)")
    if status != 200:
        raise CliError(f"pynet answered {path} with HTTP {status}: {unixhttp.error_text(raw)}")
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise CliError(f"unexpected answer from pynet on {socket_path}: {raw[:200]!r}")
    return doc


def table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [headers] + [tuple("-" if v in (None, "") else str(v) for v in r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells) + "\n"


def ago(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    return "now" if seconds < 1 else f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"
