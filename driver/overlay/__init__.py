"""The driver's side of multi-host overlays.

* port.py       -- the typed port to the overlay control plane (the driver depends on this only;
                   cluster/ implements it on etcd).
* reconciler.py -- the one writer of every kernel table of an overlay: desired vs programmed, diffed.
* tables.py     -- the tables it writes (a VXLAN device's FDB and neighbour entries).
* networks.py   -- what NetworkService asks of overlays: checks, MTU, claim, device, adverts.
"""
