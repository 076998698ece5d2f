"""The Flask app: built by ``create_app`` from services passed in; importing does no work."""

from __future__ import annotations

from flask import Flask

from pynet.plugin import http, wire_ipam, wire_network, wire_ops
from pynet.plugin.compose import Services

IMPLEMENTS = {"Implements": ["NetworkDriver", "IpamDriver"]}


def _ports(services: Services) -> dict:
    """``POST /Pynet.Ports``: pynet's own call (not Docker's), behind `pynet ports`, because
    dockerd never shows a plugin's published ports in `docker port`."""
    return {"Ports": [
        {"NetworkID": ep.network_id, "EndpointID": ep.id, "Proto": b["proto"], "HostIP": b["host_ip"],
         "HostPort": b["host_port"], "ContainerIP": b["container_ip"], "ContainerPort": b["container_port"]}
        for ep, b in services.network.published()]}


def create_app(services: Services) -> Flask:
    app = Flask("pynet")
    routes = [http.Route("/Plugin.Activate", None, lambda: IMPLEMENTS),
              http.Route("/Pynet.Ports", None, lambda: _ports(services)),
              # pynet's own: the health of its background loops and the records it refused to use
              http.Route("/Pynet.Health", None, services.health.snapshot)]
    if services.ops is not None:
        routes += wire_ops.routes(services.ops)
    routes += wire_network.routes(services.network)
    routes += wire_ipam.routes(services.ipam)
    http.install(app, routes)
    return app
