"""pynet: a Docker network and IPAM plugin.

The import root.  The repository keeps the design card's folders at its top level, and each is a
subpackage here (setup.py derives the mapping):

    pynet            this folder: what every layer shares (the error taxonomy, HTTP over unix sockets,
                     the health of background work, record helpers)
    pynet.plugin     plugin/   the process, its HTTP edge (Flask, gunicorn), settings and the CLI
    pynet.driver     driver/   the network driver; driver/overlay/ is its side of the overlay port
    pynet.ipam       ipam/     the IPAM driver
    pynet.store      store/    the key-value port and its sqlite, memory and etcd implementations
    pynet.cluster    cluster/  the overlay control plane on etcd (implements driver/overlay/port.py)
    pynet.lab        lab/      hosts in network namespaces, a private dockerd, etcd: tests, demos, bench

docs/architecture.md draws the layers and the flows between them.
"""
