"""Docker networks follow the overlays: the control plane's only use of the Docker API.

Design note.  Each host runs its own dockerd with local-scope networks; an overlay is the same local
network created on every host under one cluster-wide name.  This loop, woken by the control plane when
overlays or members change (and every 10 s), makes this host's dockerd follow:

1. an overlay created here gets its Docker network described into its record (docker_network.py), once
   dockerd has it (the handler that created it runs before dockerd has stored the network);
2. an active, described overlay this host lacks is created here through ``POST /networks/create``,
   from the validated description only; a Docker network of the same name that is not this overlay is
   left alone (logged, retried after 30 s);
3. a copy of an overlay removed elsewhere is removed here once no container uses it; dockerd's refusal
   (e.g. its endpoint-count leak, moby/moby#42119) is logged once and tried again.
"""

from __future__ import annotations

import logging
import time

from pynet.cluster.docker_network import DockerNetwork
from pynet.cluster.records import InvalidRecord
from pynet.docker_api import DockerApi, DockerApiError

log = logging.getLogger("pynet.cluster")
SOON = 0.25  # seconds: a network dockerd is still creating is looked at again this soon
IDLE = 10.0
BACKOFF = 30.0


class DockerSync:
    def __init__(self, control, docker: DockerApi) -> None:
        self.control = control  # cluster.control.EtcdControlPlane
        self.docker = docker
        self._backoff: dict[str, float] = {}
        self._failing: dict[str, str] = {}

    def run(self, ctx) -> None:
        soon = False
        while not ctx.stopping.is_set():
            self.control.changed.wait(SOON if soon else IDLE)
            self.control.changed.clear()
            if ctx.stopping.is_set():
                return
            try:
                soon = self.sync()
                ctx.ok()
            except Exception as exc:
                ctx.failed(exc)

    def sync(self) -> bool:
        """One pass; True when something should be looked at again shortly."""
        snap = self.control.snapshot()
        again = self._describe(snap)
        self._create(snap)
        self._remove(snap)
        return again

    def _describe(self, snap) -> bool:
        again = False
        for name, network_id in snap.joined.items():
            rec = snap.overlays.get(name)
            if rec is None or rec.docker is not None or rec.origin != self.control.host_id \
                    or rec.origin_network != network_id:
                continue
            inspected = self.docker.network(network_id)
            if inspected is None:
                again = True
                continue
            try:
                described = DockerNetwork.describe(inspected, name)
                described.check_against(rec)
            except InvalidRecord as exc:
                self._once(name, f"overlay {name!r}: its Docker network cannot be re-created elsewhere: {exc}")
                continue
            self.control.registry.update(name, lambda o: o if o.docker is not None else o.with_docker(described))
            log.info("overlay %r is Docker network %r: other hosts will create it", name, described.name)
        return again

    def _create(self, snap) -> None:
        names = None
        for rec in snap.wanted:
            if rec.name in snap.joined or self._backoff.get(rec.name, 0) > time.monotonic():
                continue
            names = names if names is not None else self.docker.network_names()
            if rec.docker.name in names:
                self._later(rec.name, f"overlay {rec.name!r}: a Docker network named {rec.docker.name!r} already "
                                      "exists here and is not this overlay; not creating it")
                continue
            try:
                self.docker.create_network(rec.docker.request(rec.name, rec.origin))
                log.info("created Docker network %r for overlay %r", rec.docker.name, rec.name)
            except DockerApiError as exc:
                self._later(rec.name, f"overlay {rec.name!r}: {exc}")

    def _remove(self, snap) -> None:
        for name in snap.removing:
            network_id = snap.joined.get(name)
            if network_id is None:
                continue
            inspected = self.docker.network(network_id)
            if inspected is None or inspected.get("Containers"):
                continue
            what = f"removing Docker network {inspected.get('Name')!r} of overlay {name!r}"
            try:
                if self.docker.remove_network(network_id):
                    log.info("%s: done", what)
                self._failing.pop(what, None)
            except DockerApiError as exc:
                self._once(what, f"{what}: {exc}")

    def _later(self, name: str, message: str) -> None:
        if self._backoff.get(name, 0) == 0:
            log.warning("%s", message)
        self._backoff[name] = time.monotonic() + BACKOFF

    def _once(self, what: str, message: str) -> None:
        if self._failing.get(what) != message:
            log.warning("%s", message)
        self._failing[what] = message
