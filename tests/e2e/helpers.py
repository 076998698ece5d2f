"""What the e2e tests do with containers, once: start one, ping from it, list pynet's links."""

from __future__ import annotations

import time

IMG = "busybox:local"
SLEEP = ("sleep", "1d")


def run(host, cleanup, name: str, *args: str, network: str | None = None, image: str = IMG,
        cmd: tuple[str, ...] = SLEEP) -> str:
    """``docker run -d --name NAME [--network N] ARGS IMAGE CMD`` on ``host``, removed by ``cleanup``."""
    cleanup.container(name, host)
    host.docker("run", "-d", "--name", name, *(["--network", network] if network else []), *args, image, *cmd)
    return name


def pn_links(host) -> list[str]:
    """The links in ``host``'s netns that follow pynet's naming."""
    return sorted(link for link in host.links() if link.startswith("pn"))


def ping(host, container: str, target: str, size: int | None = None, wait: float = 0.0) -> tuple[bool, str]:
    """One ping from ``container`` (busybox: no -M, so a full-size payload is the MTU check); with
    ``wait``, retried for that long (e.g. peer entries reaching the other hosts through etcd)."""
    argv = ["exec", container, "ping", "-c1", "-W2", *(["-s", str(size)] if size else []), target]
    deadline = time.monotonic() + wait
    while True:
        p = host.docker(*argv, check=False, timeout=30)
        if p.returncode == 0 or time.monotonic() >= deadline:
            return p.returncode == 0, (p.stdout + p.stderr).strip()
        time.sleep(0.3)


def assert_ping(host, container: str, target: str, size: int | None = None, wait: float = 0.0) -> None:
    ok, out = ping(host, container, target, size, wait)
    assert ok, f"ping {container} (host {host.name}) -> {target}, payload {size or 56}, waited {wait}s:\n{out}"
