"""pynet's cluster DNS: names of overlay containers on every host, answered by a resolver on each host.

Design note.  Docker's embedded resolver (127.0.0.11 in every container of a user-defined network) knows
only the containers of its own host, and no remote driver can change a container's resolver.  But it
forwards every name it does not know to the daemon's ``dns`` servers, from inside the container's network
namespace with the container's own address as the source (measured with dockerd 20.10 and 28).  So with
``"dns": ["169.254.53.53"]`` in daemon.json, pynet's resolver on that address sees exactly the queries
Docker cannot answer, and the source address tells it which container asks:

    docker_names.py  the local Docker API, in the background: each local endpoint's DNS names, put into
                     its advert (cluster/control.py ``name``), so they travel with it through etcd
    table.py         (pure) the answers: (overlay, name) -> addresses, container address -> overlays
    server.py        UDP and TCP on the resolver's address: answer from the table or forward
    upstream.py      the host's own resolvers (resolv.conf, re-read when it changes), forwarded to raw
    service.py       wiring: the address (a /32 on lo), the loops under the supervisor

The wire format is dnspython's (dns.message): the most complete and best-kept DNS library for Python
(RFC-complete parsing and rendering, EDNS, strict about malformed input, maintained since 2003, used by
e.g. certbot and eventlet).  dnslib would do too, but it is smaller, less strict with malformed packets and
more loosely maintained.  Forwarded queries are passed on as the bytes that came in and their answers
returned as the bytes the upstream sent, so nothing of theirs is re-encoded.
"""
