"""Running iptables commands, bounded.

Design note.  A bare ``-w`` makes iptables (legacy backend) wait for the xtables lock without end, and
dockerd waits on pynet without end too (its legacy-plugin client has no timeout).  So every command gets
``-w WAIT`` (the caller adds it) and a subprocess timeout of WAIT plus a margin; a command that hangs
anyway is killed.  Either way the caller gets ``FirewallTimeout`` (a ``pynet.errors.Timeout``, 503)
naming the command, so the request fails within seconds and says what hung.  The nf_tables backend
takes no xtables lock, but the legacy backend and wrappers do.
"""

from __future__ import annotations

import subprocess

from pynet.errors import PynetError, Timeout

WAIT = 5  # seconds an iptables command waits for the xtables lock (-w WAIT)
TIMEOUT = WAIT + 5  # seconds before an iptables command is killed


class FirewallError(PynetError):
    """An iptables command failed; the message names the command and what it said."""


class FirewallTimeout(FirewallError, Timeout):
    """An iptables command hung or gave up waiting for the xtables lock (503)."""

    status = Timeout.status


LOCK_EXIT = 4  # iptables: "Another app is currently holding the xtables lock" (legacy, -w expired)


def execute(argv: list[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess:
    """Run one iptables command, bounded; FirewallTimeout names it if it hangs or the lock is held."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirewallTimeout(f"{' '.join(argv)} did not finish within {timeout:g} s (killed; is another "
                              "process holding the xtables lock?)") from None
    if proc.returncode == LOCK_EXIT and "xtables lock" in proc.stderr:
        raise FirewallTimeout(f"{' '.join(argv)} gave up waiting for the xtables lock, held by another "
                              f"process: {proc.stderr.strip()}")
    return proc


def run(argv: list[str], stdin: str | None = None, timeout: float = TIMEOUT) -> None:
    proc = execute(argv, stdin, timeout)
    if proc.returncode != 0:
        raise FirewallError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")


def ok(argv: list[str], timeout: float = TIMEOUT) -> bool:
    return execute(argv, None, timeout).returncode == 0
