"""The Flask app: built by ``create_app`` from services passed in; importing does no work."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from driver.service import NetworkService
from ipam.service import IpamService
from plugin import http, wire_ipam, wire_network

IMPLEMENTS = {"Implements": ["NetworkDriver", "IpamDriver"]}


@dataclass(frozen=True)
class Services:
    network: NetworkService
    ipam: IpamService


def create_app(services: Services) -> Flask:
    app = Flask("pynet")
    routes = [http.Route("/Plugin.Activate", None, lambda: IMPLEMENTS)]
    routes += wire_network.routes(services.network)
    routes += wire_ipam.routes(services.ipam)
    http.install(app, routes)
    return app
