"""pynet/parsing.py and its users: what is refused, what is accepted and comes back canonical."""

from __future__ import annotations

import ipaddress

import pytest

from pynet import parsing
from pynet.driver import names, options
from pynet.driver.models import IPAMData
from pynet.driver.ports import parse_requests
from pynet.errors import BadRequest

NID = "2f234f73" + "0" * 55 + "1"


@pytest.mark.parametrize("text, why", [
    ("fe80::1%eth0", "IPv6 scope"),  # ipaddress accepts it since 3.9
    ("fe80::1%25eth0", "IPv6 scope"),
    (" 10.0.0.1", "whitespace"),
    ("10.0.0.1\n", "whitespace"),
    ("10.0.0.1\x00", "control"),
    ("010.0.0.1", "Leading zeros"),  # octal to inet_aton
    ("::ffff:10.0.0.1", "IPv4-mapped"),  # Go's net.IP reads it as 10.0.0.1
    ("::ffff:a00:1", "IPv4-mapped"),
    ("10.0.0.1/32", "without a prefix length"),
    ("１０.0.0.1", "ASCII"),
    ("", "a value is required"),
    ("10.0.0", "not an IP address"),
    (10, "expected a string"),
    (None, "expected a string"),
])
def test_bare_ip_refusals_name_the_field(text, why):
    with pytest.raises(BadRequest) as err:
        parsing.parse_ip(text, "Address")
    assert why in str(err.value) and "Address" in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.1", "10.0.0.1"),
    ("FD00::1", "fd00::1"),
    ("2001:0db8:0000::0001", "2001:db8::1"),  # IPv6 spellings are unambiguous: accepted, made canonical
])
def test_bare_ip_accepted(text, expected):
    assert str(parsing.parse_ip(text, "Address")) == expected


def test_family_is_checked():
    with pytest.raises(BadRequest, match="expected an IPv4 address"):
        parsing.parse_ip("fd00::1", "HostIP", version=4)
    with pytest.raises(BadRequest, match="not an IPv4 address"):
        parsing.parse_ip("nope", "HostIP", version=4)


@pytest.mark.parametrize("text, why", [
    ("10.1.1.1/24", "host bits set (the network is 10.1.1.0/24)"),
    ("fd00::1/64", "host bits set"),
    ("10.1.0.0", "expected CIDR notation"),
    ("10.1.0.0/024", "plain decimal"),
    ("10.1.0.0/+24", "plain decimal"),
    ("10.1.0.0/ 24", "whitespace"),
    ("10.1.0.0/33", "longer than 32"),
    ("fe80::%eth0/64", "IPv6 scope"),
    ("::ffff:10.1.0.0/120", "IPv4-mapped"),
    ("10.1.0.0/16/8", "plain decimal"),
])
def test_network_refusals(text, why):
    with pytest.raises(BadRequest, match="pool") as err:
        parsing.parse_network(text, "pool")
    assert why in str(err.value)


def test_network_accepts_any_ipv6_spelling_and_answers_canonical():
    assert parsing.parse_network("2001:DB8::/64", "pool") == ipaddress.ip_network("2001:db8::/64")
    assert str(parsing.parse_network("2001:0DB8:0:0::/48", "pool")) == "2001:db8::/48"


def test_interface_keeps_host_bits():
    assert str(parsing.parse_interface("10.1.0.2/24", "Interface.Address", 4)) == "10.1.0.2/24"
    with pytest.raises(BadRequest, match="expected an IPv6 address"):
        parsing.parse_interface("10.1.0.2/24", "Interface.AddressIPv6", 6)


@pytest.mark.parametrize("value", ["a" * 11, "A" * 64, "a" * 65, "0123456789ab\n", "0123456789ab/x",
                                   "0123456789a%", 123, None, ["0123456789ab"]])
def test_docker_ids(value):
    with pytest.raises(BadRequest, match="not a Docker ID"):
        parsing.parse_docker_id(value, "NetworkID")
    assert parsing.parse_docker_id("0123456789ab", "NetworkID") == "0123456789ab"


def test_names_for_store_keys():
    assert parsing.parse_name("pynet-local", "address space") == "pynet-local"
    for bad in ["", "a/b", "x\n", "-a", "é", "a" * 64, 5]:
        with pytest.raises(BadRequest, match="address space"):
            parsing.parse_name(bad, "address space")


# -- users: driver/options.py and driver/ports.py ----------------------------------------------------


def test_ipam_data_is_checked_and_canonical():
    data = options.parse_ipam_data("IPv6Data[0]", IPAMData(pool="2001:db8::/64", gateway="2001:DB8::1/64",
                                                           aux_addresses={"a": "2001:db8::5/64"}), 6)
    assert (data.pool, data.gateway, data.aux_addresses) == ("2001:db8::/64", "2001:db8::1/64", {"a": "2001:db8::5/64"})
    for bad, why in [(IPAMData(pool="10.1.0.0/16"), "expected an IPv6"),
                     (IPAMData(pool="fd00::/64", gateway="fd01::1/64"), "not inside pool"),
                     (IPAMData(pool="fd00::/64", aux_addresses={"a": "fd00::5%lo/64"}), r"AuxAddresses\['a'\]"),
                     # found by the fuzz test: the kernel refuses these on the bridge (a 500 before)
                     (IPAMData(pool="::1/128", gateway="::1/128"), "loopback or multicast"),
                     (IPAMData(pool="ff02::/16", gateway="ff02::1/16"), "loopback or multicast"),
                     (IPAMData(pool="::/0", gateway="::/0"), "not an address a bridge can hold")]:
        with pytest.raises(BadRequest, match=why):
            options.parse_ipam_data("IPv6Data[0]", bad, 6)


def test_v4_edge_pools():
    for bad, why in [(IPAMData(pool="127.0.0.0/8", gateway="127.0.0.1/8"), "loopback or multicast"),
                     (IPAMData(pool="224.0.0.0/4", gateway="224.0.0.1/4"), "loopback or multicast"),
                     (IPAMData(pool="0.0.0.0/0", gateway="0.0.0.0/0"), "not an address a bridge can hold")]:
        with pytest.raises(BadRequest, match=why):
            options.parse_ipam_data("IPv4Data[0]", bad, 4)
    assert options.parse_ipam_data("IPv4Data[0]", IPAMData(pool="0.0.0.0/0"), 4).pool == "0.0.0.0/0"  # null IPAM


def test_nil_aux_address_from_dockerd_is_dropped():
    data = options.parse_ipam_data("IPv4Data[0]", IPAMData(pool="10.1.0.0/24", aux_addresses={"a": "<nil>"}), 4)
    assert data.aux_addresses == {}


def test_published_host_ip_is_parsed():
    assert parse_requests([{"Proto": 6, "Port": 80, "HostIP": "::FFFF", "HostPort": 8080}])[0].host_ip == "::ffff"
    for bad, why in [("::ffff:127.0.0.1", "IPv4-mapped"), ("fe80::1%eth0", "IPv6 scope"), ("127.0.0.1/8", "prefix")]:
        with pytest.raises(BadRequest, match=why):
            parse_requests([{"Proto": 6, "Port": 80, "HostIP": bad, "HostPort": 8080}])


def test_host_binding_option_is_a_canonical_ipv4():
    generic = {"com.docker.network.generic": {options.HOST_BINDING: "::ffff:127.0.0.1"}}
    with pytest.raises(BadRequest, match="IPv4-mapped"):
        options.parse_network_options(NID, generic)


@pytest.mark.parametrize("name, why", [
    ("docker0", "Docker's own"), ("docker_gwbridge", "Docker's own"), ("br-0123456789ab", "Docker's own"),
    ("pnh0123456789ab", "pynet's own"), ("pnv0123456789ab", "pynet's own"), ("pn-aaaaaaaaaaaa", "pynet's own"),
    (".", "not a valid"), ("..", "not a valid"), ("a/b", "not a valid"), ("a:1", "not a valid"),
    ("br 0", "not a valid"), ("br0\n", "not a valid"), ("x" * 16, "not a valid"), ("", "not a valid"),
    ("br+", "not a valid"), ("!br", "not a valid"), ("-br", "not a valid"), ("brà", "not a valid"), (5, "not a valid"),
])
def test_bridge_name_refusals(name, why):
    with pytest.raises(BadRequest, match="pynet.bridge_name") as err:
        options.parse_network_options(NID, {"com.docker.network.generic": {options.BRIDGE_NAME: name}})
    assert why in str(err.value)


def test_bridge_name_accepted():
    for name in ("br0", "br-lan", "vmbr_1.100", "x" * 15, names.bridge_name(NID)):
        cfg = options.parse_network_options(NID, {"com.docker.network.generic": {options.BRIDGE_NAME: name}})
        assert cfg.bridge == name and cfg.bridge_given


def test_overlay_name_with_a_trailing_newline_is_refused():
    generic = {"com.docker.network.generic": {options.MODE: "overlay", options.OVERLAY: "demo\n"}}
    with pytest.raises(BadRequest, match="pynet.overlay"):
        options.parse_network_options(NID, generic, multi_host=True)


@pytest.mark.parametrize("mac, why", [("zz:zz:zz:zz:zz:zz", "not a MAC"), ("01:00:5e:00:00:01", "unicast"),
                                      ("ff:ff:ff:ff:ff:ff", "unicast"), ("00:00:00:00:00:00", "unicast"),
                                      ("AQBeAAAB", "unicast")])  # base64 of 01:00:5e:00:00:01
def test_macs_the_kernel_would_refuse_are_bad_requests(mac, why):
    with pytest.raises(BadRequest, match=why):
        options.parse_endpoint_options({options.MAC_OPTION: mac})
    with pytest.raises(BadRequest, match=why if ":" in mac else "MAC"):
        options.validate_mac(mac)
