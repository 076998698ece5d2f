"""Multi-host overlay networks: the shared state in etcd and the agent that acts on it.

Design note.  Each host runs its own dockerd with local-scope networks; an
overlay network is the same local network created on several hosts under one
cluster-wide name (``-o pynet.overlay=NAME``).  What the hosts share lives in
the cluster store (store/keys.py, ``/pynet/v1/cluster/``):

* registry.py -- the overlay records, VNIs, members and endpoint adverts:
  every write a request handler makes, each an atomic store primitive.
* view.py     -- pure: the cluster as one watcher has seen it, and from it the
  FDB/neighbour entries each local VXLAN device should hold.
* agent.py    -- the background threads: lease keep-alive, the watch that
  programs the kernel, re-advertising after an outage, and the Docker API
  sync that creates/removes the overlay's Docker network on every host.
  Nothing here ever runs inside a request handler (dockerd waits on those).
"""
