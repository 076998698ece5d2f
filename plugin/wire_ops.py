"""pynet's own calls behind the operator's CLI (`pynet status`, `hosts`, `hosts rm`, `doctor`): the
route table; the answers are built by plugin/ops_service.py."""

from __future__ import annotations

from dataclasses import dataclass

from pynet.plugin import http
from pynet.plugin.wire import wire


@dataclass
class HostsRemoveRequest:
    host: str = wire("Host", required=True)
    force: bool = wire("Force", default=False)


def routes(ops) -> list[http.Route]:
    return [http.Route("/Pynet.Status", None, ops.status),
            http.Route("/Pynet.Hosts", None, ops.hosts_list),
            http.Route("/Pynet.HostsRemove", HostsRemoveRequest, ops.evict),
            http.Route("/Pynet.Doctor", None, ops.doctor)]
