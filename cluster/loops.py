"""The control plane's background work: three supervised loops, none of them ever in a request handler.

* ``lease``  -- refreshes this host's lease every ttl/3 (control.keepalive).
* ``watch``  -- lists ``/pynet/v1/cluster/`` into the view, then follows a watch from the listed
  revision, passing each event to the view; after a compaction, a lost connection or etcd coming back
  it lists again: catching up is "load a fresh view and diff", the same path as start-up.  Every
  RESYNC seconds it runs housekeeping.
* ``docker-sync`` -- the only code that calls the Docker API (docker_sync.py): it describes overlays
  created here into their record, creates the Docker network of overlays this host lacks, and removes
  unused copies of overlays removed elsewhere.
* ``grace`` -- (with a grace period) every GRACE_TICK seconds, drops the departed hosts and adverts whose
  grace is over (control.expire).  Not in the watch loop: that one blocks in the watch, and a host's
  grace must end on time even when nothing else happens in the cluster.

Losing etcd never empties the view: the watch keeps what it has and only replaces it with a listing that
succeeded, so this host's tables stay as they were for as long as etcd is away.

pynet/background.py restarts a loop that dies and shows each one's health.
"""

from __future__ import annotations

import time

from pynet.cluster.docker_sync import DockerSync
from pynet.store import keys
from pynet.store.base import Compacted

RESYNC = 30.0  # seconds between housekeeping passes
WATCH_IDLE = 5.0  # a quiet watch is re-opened after this long (a silently dead connection is noticed)
RETRY = 1.0
GRACE_TICK = 1.0  # seconds between checks for departures whose grace is over


class ClusterLoops:
    def __init__(self, control, supervisor, docker=None) -> None:
        self.control = control  # cluster.control.EtcdControlPlane
        self.supervisor = supervisor
        self.docker = DockerSync(control, docker) if docker is not None else None

    def start(self) -> None:
        every = max(1.0, self.control.membership.ttl / 3)
        self.supervisor.every("lease", every, self.control.keepalive, retry=RETRY)
        self.supervisor.spawn("watch", self.watch)
        if self.control.linger:
            self.supervisor.every("grace", GRACE_TICK, self.control.expire, first=GRACE_TICK)
        if self.docker is not None:
            self.supervisor.spawn("docker-sync", self.docker.run)

    def watch(self, ctx) -> None:
        control, store = self.control, self.control.store
        loaded, next_resync = False, 0.0
        while not ctx.stopping.is_set():
            try:
                if not loaded:
                    control.load()
                    loaded, next_resync = True, time.monotonic() + RESYNC
                for event in store.watch(keys.cluster_prefix(), control.view.revision + 1, WATCH_IDLE):
                    control.apply(event)
                    if time.monotonic() > next_resync or ctx.stopping.is_set():
                        break
                if time.monotonic() > next_resync:
                    control.housekeeping()
                    next_resync = time.monotonic() + RESYNC
                ctx.ok()
            except Compacted:
                loaded = False
            except Exception as exc:
                ctx.failed(exc)
                loaded = False
                ctx.wait(RETRY)
