"""The overlay control plane on etcd: implements the driver's port (driver/overlay/port.py).

Each host runs its own dockerd with local-scope networks; an overlay network is the same local network
created on several hosts under one cluster-wide name (``-o pynet.overlay=NAME``).  What the hosts share
lives in the cluster store (store/keys.py, ``/pynet/v1/cluster/``).  This package depends on the store
and on the port's value types, never on the driver's internals:

* control.py        -- EtcdControlPlane: the port, this host's intent, housekeeping.
* registry.py       -- the writes: overlay records, VNIs, members, adverts (atomic primitives each).
* records.py        -- the reads: every record validated field by field; a bad one is skipped, counted.
* view.py           -- pure: the cluster as the watch has seen it, and the remote entries it implies.
* membership.py     -- this host's lease and registration.
* loops.py          -- the background loops: lease keep-alive, the watch, the Docker sync.
* docker_network.py -- how an overlay's Docker network is described and re-created on other hosts.
* docker_sync.py    -- the only code that calls the Docker API for overlays.
"""
