"""Runs the app under gunicorn on the unix socket.

Design note.  One worker process with threads (gthread): all state lives in
the store, but the kernel handle, the per-endpoint locks and the background
reconciler must be single per host, so there is exactly one worker.  The
arbiter binds the socket before the worker has even imported the app, so
dockerd can connect within a second of start; requests wait in the backlog
until the worker is ready.  The worker builds the services (plugin/compose.py,
after the fork, so netlink and sqlite handles are never shared across
processes) and starts the background work there: heavy start-up work never
delays the socket.  SIGTERM is gunicorn's graceful stop; the socket file is
removed.  Each request must arrive within plugin/worker.py's deadline and be at
most plugin/http.py's MAX_BODY: neither a slow nor a huge client can hold a
request thread.
"""

from __future__ import annotations

import logging
import os
import socket as socketlib
import sys

from gunicorn.app.base import BaseApplication

import pynet
from pynet.plugin.settings import Settings

log = logging.getLogger("pynet")
# The folder that holds the pynet package (site-packages, or the repository for an editable install).
_IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pynet.__file__)))


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        for key, value in {
            "bind": [f"unix:{s.socket}"],
            "workers": 1,
            # gthread with a deadline on reading each request (plugin/worker.py): a slow client cannot hold a thread
            "worker_class": "pynet.plugin.worker.BoundedThreadWorker",
            "threads": s.threads,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 30,  # dockerd's Go client keeps connections open
            "loglevel": s.log_level,
            "errorlog": "-",
            "accesslog": "-" if s.log_level == "debug" else None,
            "proc_name": "pynet",
            "umask": 0o077,
            # gunicorn puts chdir first on sys.path: make it where pynet is installed, never the caller's cwd.
            "chdir": _IMPORT_ROOT,
            # Newer gunicorn opens a control socket in ~/.gunicorn, shared by every instance; pynet needs none.
            "control_socket_disable": True,
        }.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        from pynet.plugin.app import create_app
        from pynet.plugin.compose import build_services

        services = build_services(self.settings)
        app = create_app(services)
        services.start()
        return app


def _check_socket(path: str) -> None:
    """Refuse to steal a live plugin's socket; a stale one is replaced by gunicorn."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socketlib.socket(socketlib.AF_UNIX)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        log.info("replacing stale socket %s", path)
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SystemExit(f"pynet: another process is already serving on {path}")


def _check_multi_host(settings: Settings) -> Settings:
    """Fill in the VTEP address (the default route's source) and refuse what cannot work, before
    the socket is bound: a wrong etcd URL or VTEP should stop `pynet serve`, not every request."""
    from dataclasses import replace

    from pynet.driver.kernel.links import Links
    from pynet.plugin import secure_etcd
    from pynet.store.etcd import parse_endpoints

    from pynet.clusterdns.service import parse_address
    from pynet.errors import BadRequest

    try:
        parse_endpoints(settings.etcd)
    except ValueError as exc:
        raise SystemExit(f"pynet: --etcd: {exc}") from None
    secure_etcd.check(settings)  # TLS, credentials, permission: one line and exit 1 if wrong
    try:
        parse_address(settings.dns_address)
    except BadRequest as exc:
        raise SystemExit(f"pynet: {exc}") from None
    links = Links()
    vtep = settings.vtep_address
    try:
        vtep = vtep or links.default_source_address()
        if not vtep:
            raise SystemExit("pynet: no --vtep-address given and no default route to take it from")
        links.underlay_mtu(vtep)
    except SystemExit:
        raise
    except Exception as exc:
        raise SystemExit(f"pynet: --vtep-address {vtep}: {exc}") from None
    finally:
        links.close()
    return replace(settings, vtep_address=vtep)


def serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.etcd:
        settings = _check_multi_host(settings)
    _check_socket(settings.socket)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    from pynet.store import check_store

    problem = check_store(settings.state_dir)  # here, not in the worker: one line and exit, no boot loop
    if problem:
        raise SystemExit(f"pynet: {problem}")
    log.info("pynet serving driver %r on %s, state in %s", settings.driver_name, settings.socket, settings.state_dir)
    _Gunicorn(settings).run()
    return 0
