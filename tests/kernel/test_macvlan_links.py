"""kernel/macvlan.py against the real kernel, in the throwaway netns of tests/kernel/conftest.py."""

from __future__ import annotations

import subprocess

import pytest

from pynet.driver.kernel.links import KernelError
from pynet.driver.kernel.macvlan import OWNER_ALIAS, HostRoute, MacvlanSpec


def ip(netns, *args, check=True):
    return subprocess.run(["ip", "-n", netns, *args], check=check, capture_output=True, text=True)


@pytest.fixture
def parent(netns):
    ip(netns, "link", "add", "seg0", "type", "veth", "peer", "name", "seg1")
    ip(netns, "link", "set", "seg0", "up")
    ip(netns, "link", "set", "seg1", "up")
    return "seg0"


def test_macvlan_created_then_unchanged_and_an_incompatible_one_recreated(links, netns, parent):
    spec = MacvlanSpec(name="pnm0123456789ab", parent=parent, mac="02:11:22:33:44:55", up=True)
    assert links.ensure_macvlan(spec) is True
    shown = ip(netns, "-d", "link", "show", spec.name).stdout
    assert "macvlan mode bridge" in shown and "02:11:22:33:44:55" in shown and links.get(spec.name).up
    assert links.ensure_macvlan(spec) is False
    assert links.ensure_macvlan(MacvlanSpec(spec.name, parent, "02:11:22:33:44:66", up=True)) is True  # other MAC
    assert "02:11:22:33:44:66" in ip(netns, "link", "show", spec.name).stdout


def test_missing_parent_is_named(links, parent):
    with pytest.raises(KernelError, match="parent 'nope0' does not exist"):
        links.ensure_macvlan(MacvlanSpec("pnc0123456789ab", "nope0", "02:11:22:33:44:55"))


def test_host_route_and_pinned_neighbour_are_really_deleted(links, netns, parent):
    """The finding: a route delete without the route's scope is "no such route" in the kernel, which
    delete treats as success -- the route stayed behind after every DeleteEndpoint."""
    ip(netns, "addr", "add", "192.0.2.1/24", "dev", parent)
    links.ensure_macvlan(MacvlanSpec("pnm0123456789ab", parent, "02:11:22:33:44:55", up=True))
    route = HostRoute(dev="pnm0123456789ab", ip="192.0.2.130", mac="02:42:c0:00:02:82", src="192.0.2.1")
    links.ensure_host_route(route)
    links.ensure_host_route(route)  # replace: idempotent
    assert "192.0.2.130 proto static scope link src 192.0.2.1" in ip(netns, "route", "show", "dev", route.dev).stdout
    assert "02:42:c0:00:02:82 PERMANENT" in ip(netns, "neigh", "show", "dev", route.dev).stdout
    links.delete_host_route(route.dev, route.ip)
    assert "192.0.2.130" not in ip(netns, "route", "show", "dev", route.dev).stdout
    assert "192.0.2.130" not in ip(netns, "neigh", "show", "dev", route.dev).stdout
    links.delete_host_route(route.dev, route.ip)  # absence is success
    links.delete_host_route("gone0", route.ip)


def test_only_a_marked_sub_interface_is_deleted(links, netns):
    # No 802.1Q in this kernel: the ownership rule is checked on links named like sub-interfaces.
    ip(netns, "link", "add", "usr0.5", "type", "veth", "peer", "name", "usr1")
    assert links.delete_vlan("usr0.5") is False and "usr0.5" in ip(netns, "link").stdout
    ip(netns, "link", "set", "usr0.5", "alias", OWNER_ALIAS)
    assert links.delete_vlan("usr0.5") is True and "usr0.5" not in ip(netns, "link").stdout
    assert links.delete_vlan("usr0.5") is False


def test_ensure_vlan_adopts_an_existing_link_and_names_missing_support(links, netns, parent):
    ip(netns, "link", "add", "usr0.7", "type", "veth", "peer", "name", "usr2")
    assert links.ensure_vlan("usr0.7", parent, 7) is False  # the user's: used as it is, never marked
    assert OWNER_ALIAS not in ip(netns, "-d", "link", "show", "usr0.7").stdout
    created = None
    try:
        created = links.ensure_vlan(f"{parent}.5", parent, 5)
    except KernelError as exc:
        assert "802.1Q" in str(exc)
    if created:
        assert OWNER_ALIAS in ip(netns, "-d", "link", "show", f"{parent}.5").stdout
        assert links.delete_vlan(f"{parent}.5") is True


def test_isolated_parent_has_carrier(links, netns):
    assert links.ensure_isolated("pnd0123456789ab", "pne0123456789ab", 1500) is True
    assert links.ensure_isolated("pnd0123456789ab", "pne0123456789ab", 1500) is False
    assert "LOWER_UP" in ip(netns, "link", "show", "pnd0123456789ab").stdout
    assert links.delete("pnd0123456789ab") and "pne0123456789ab" not in ip(netns, "link").stdout
