"""Processes and commands for the lab: run a command with a bound, find a binary, read a log's tail.

Every helper here is bounded (``run`` has a timeout) and touches only what it is given.  ``LIVE`` is the
safety net of the lab: every started host registers itself, and an interpreter exit or SIGTERM/SIGHUP
(``install_signal_handlers``) stops them all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

class DockerHostError(RuntimeError):
    """Something the lab was asked to do failed; the message says what and shows the log's tail."""


LabError = DockerHostError


class CommandError(DockerHostError):
    def __init__(self, argv: Sequence[str], proc: subprocess.CompletedProcess):
        self.argv = list(argv)
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(
            f"command failed (rc={proc.returncode}): {' '.join(map(str, argv))}\n"
            f"stdout: {(proc.stdout or '').strip()[-2000:]}\nstderr: {(proc.stderr or '').strip()[-2000:]}"
        )


def run(argv: Sequence[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc)
    return proc


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def binary(name: str) -> str:
    """Find an executable; sbin dirs are searched too (PATH under sudo/CI may lack them)."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    found = shutil.which(name, path=path)
    if not found:
        raise DockerHostError(f"{name} not found in PATH")
    return found


def pynet_executable() -> str:
    """The `pynet` console script next to this interpreter (the project's venv), or $PYNET_TEST_PYNET."""
    override = os.environ.get("PYNET_TEST_PYNET")
    if override:
        return override
    cand = Path(sys.executable).parent / "pynet"
    if cand.exists():
        return str(cand)
    return binary("pynet")


def prerequisites_missing() -> str | None:
    """Why the e2e tier cannot run here, or None."""
    if os.geteuid() != 0:
        return "e2e tests need root (network namespaces, a real dockerd)"
    for tool in ("dockerd", "docker", "containerd", "runc", "ip", "nsenter", "unshare", "iptables"):
        try:
            binary(tool)
        except DockerHostError:
            return f"e2e tests need `{tool}` (apt-get install docker.io iptables iproute2 util-linux)"
    if not Path("/bin/busybox").exists() and not shutil.which("busybox"):
        return "e2e tests need busybox-static (/bin/busybox)"
    return None


# --------------------------------------------------------------------------------------------------
# safety net: every live host is stopped at interpreter exit and on SIGTERM/SIGHUP
LIVE: set = set()  # of DockerHost (and Underlay)
LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_live() -> None:
    with LIVE_LOCK:
        hosts = list(LIVE)
    for h in hosts:
        try:
            h.stop()
        except Exception as e:  # pragma: no cover - best effort
            print(f"dockerhost: cleanup of {h.netns} failed: {e}", file=sys.stderr)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so finally blocks, fixtures and atexit run.
    (SIGINT already raises KeyboardInterrupt.) Call it from the main thread of a script/conftest."""

    owner = os.getpid()

    def handler(signum, frame):
        # A forked child inherits this handler (pyroute2 forks to open a socket in
        # another netns, then SIGTERMs the child).  Raising there would unwind the
        # child back into pytest and run the rest of the suite a second time, so a
        # child just dies as the default disposition would have it.
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, handler)
        except (ValueError, OSError):  # not main thread
            pass


