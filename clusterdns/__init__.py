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

The wire format is dnslib's (DNSRecord.parse / pack): pure Python, no dependencies, maintained (0.9.x
since 2014, releases through 2024), and all pynet needs -- parse a query, build an A/AAAA answer, read the
EDNS UDP size.  dnspython is the more complete library (DNSSEC, zones, a stub resolver, async and QUIC
transports), but pynet uses none of that, and its 3.4 MB installed pushed the managed plugin's rootfs over
its 150 MB budget (measured: 150 MB with it, tests/e2e/test_managed_plugin.py); dnslib is 0.6 MB.  The
parser only ever sees what this host's containers send, and anything it refuses (DNSError) is dropped.
Forwarded queries are passed on as the bytes that came in and their answers returned as the bytes the
upstream sent, so nothing of theirs is re-encoded.
"""
