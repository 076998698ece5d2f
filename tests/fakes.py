"""Fakes at the driver's two kernel ports (links and firewall), for unit and contract tests.

They keep just enough state to answer what the service asks; the real
behaviour is proven by tests/kernel and tests/e2e.
"""

from __future__ import annotations

from pynet.driver.kernel.links import BridgeSpec, KernelError, LinkInfo, VethSpec


class FakeLinks:
    def __init__(self) -> None:
        self.links: dict[str, dict] = {}
        self.fail_on: set[str] = set()  # names whose creation fails, to drive rollbacks
        self.tables: dict[str, dict] = {}  # vxlan device -> MAC -> (vtep, ips)

    def get(self, name):
        link = self.links.get(name)
        if link is None:
            return None
        return LinkInfo(name=name, index=hash(name) & 0xFFFF, kind=link["kind"], mtu=link["mtu"],
                        master=None, address=link.get("mac", ""), up=True)

    def names(self):
        return list(self.links)

    def ensure_bridge(self, spec: BridgeSpec, adopt_foreign: bool = False) -> bool:
        if spec.name in self.fail_on:
            raise KernelError(f"could not create bridge {spec.name!r}: injected failure")
        existing = self.links.get(spec.name)
        if existing and existing["kind"] != "bridge" and adopt_foreign:
            raise KernelError(f"link {spec.name!r} exists and is not a bridge ({existing['kind']})")
        created = existing is None or existing["kind"] != "bridge"
        self.links[spec.name] = {"kind": "bridge", "mtu": spec.mtu, "mac": spec.mac,
                                 "addresses": set(spec.addresses)}
        return created

    def ensure_veth(self, spec: VethSpec) -> bool:
        if spec.bridge not in self.links:
            raise KernelError(f"could not attach {spec.host!r}: bridge {spec.bridge!r} does not exist")
        if spec.host in self.fail_on:
            raise KernelError(f"could not create veth {spec.host!r}: injected failure")
        created = spec.host not in self.links
        self.links[spec.host] = {"kind": "veth", "mtu": spec.mtu, "master": spec.bridge}
        self.links[spec.peer] = {"kind": "veth", "mtu": spec.mtu, "mac": spec.peer_mac}
        return created

    def delete(self, name) -> bool:
        self.tables.pop(name, None)
        return self.links.pop(name, None) is not None

    # -- overlay (VXLAN) ---------------------------------------------------------------
    underlay = {"192.0.2.1": 1500}

    def ensure_vxlan(self, spec) -> bool:
        if spec.bridge not in self.links:
            raise KernelError(f"could not attach {spec.name!r}: bridge {spec.bridge!r} does not exist")
        created = spec.name not in self.links
        self.links[spec.name] = {"kind": "vxlan", "mtu": spec.mtu, "master": spec.bridge, "vni": spec.vni,
                                 "local": spec.local}
        self.tables.setdefault(spec.name, {})
        return created

    def ensure_remote(self, dev, mac, vtep, ips) -> None:
        self.tables.setdefault(dev, {})[mac] = (vtep, frozenset(ips))

    def delete_remote(self, dev, mac, vtep, ips) -> None:
        self.tables.get(dev, {}).pop(mac, None)

    def remotes(self, dev):
        return dict(self.tables.get(dev, {}))

    def unpinned(self, dev) -> set:
        return set()

    def underlay_mtu(self, address) -> int:
        if address not in self.underlay:
            raise KernelError(f"no link holds address {address}")
        return self.underlay[address]

    def default_source_address(self) -> str:
        return "192.0.2.1"

    def addresses(self, name):
        return set(self.links.get(name, {}).get("addresses", ()))

    def close(self):
        pass


class FakeFirewall:
    def __init__(self) -> None:
        self.synced: list[list[str]] = []
        self.published: list[dict] = []

    def sync(self, networks, endpoints=()) -> None:
        self.synced.append(sorted(n.id for n in networks))
        self.published = [b for e in endpoints for b in e.published]

    @property
    def current(self) -> list[str]:
        return self.synced[-1] if self.synced else []
