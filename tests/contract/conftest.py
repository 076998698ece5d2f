"""Contract tier: the real Flask app and services over a MemoryStore and fake kernel ports."""

from __future__ import annotations

import pytest

from pynet.driver.service import NetworkService
from pynet.ipam.service import IpamService
from pynet.plugin.app import Services, create_app
from pynet.store.memory import MemoryStore
from tests.fakes import FakeFirewall, FakeLinks


@pytest.fixture
def world():
    store = MemoryStore()
    links, firewall = FakeLinks(), FakeFirewall()
    taken: set = set()  # host ports the fake host reports as in use
    sysctls: dict = {}  # never the host's /proc/sys
    network = NetworkService(store, links, firewall, port_probe=lambda f, proto, ip, port: port not in taken,
                             set_sysctl=lambda path, value: sysctls.__setitem__(path, value) or True)
    services = Services(network=network, ipam=IpamService(store))
    app = create_app(services)
    return type("World", (), {"client": app.test_client(), "links": links, "firewall": firewall, "taken": taken, "sysctls": sysctls,
                              "store": store, "services": services})


@pytest.fixture
def client(world):
    return world.client


def post(client, method: str, body=None, raw: bytes | None = None):
    """POST like dockerd: no Content-Type header, JSON text body (or empty)."""
    data = raw if raw is not None else (b"" if body is None else __import__("json").dumps(body).encode())
    resp = client.post("/" + method, data=data, headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
    return resp.status_code, resp.get_json(force=True, silent=True)
