"""Pure driver logic: names, MACs, option parsing, wire decoding."""

from __future__ import annotations

import pytest

from pynet.errors import BadRequest
from pynet.driver import names, options
from pynet.plugin.wire import decode, encode
from pynet.plugin.wire_network import CreateEndpointRequest, InterfaceName, JoinResponse

NID = "2f234f73c230" + "a" * 52


def test_names_fit_and_are_recognised():
    assert names.bridge_name(NID) == "pn-2f234f73c230"
    assert names.host_veth("0123456789abcdef") == "pnh0123456789ab"
    assert names.container_veth("0123456789abcdef") == "pnc0123456789ab"
    for n in (names.bridge_name(NID), names.host_veth(NID), names.container_veth(NID)):
        assert len(n) <= 15
    assert names.owner_of("pn-2f234f73c230") == ("network", "2f234f73c230")
    assert names.owner_of("pnh0123456789ab") == ("endpoint", "0123456789ab")
    assert names.owner_of("pn-userbridge") is None and names.owner_of("eth0") is None


def test_mac_like_docker():
    assert names.endpoint_mac("172.17.0.2/16", "x") == "02:42:ac:11:00:02"
    v6_only = names.endpoint_mac("", "abc")
    assert v6_only.startswith("02:42:") and v6_only == names.endpoint_mac("", "abc")
    assert names.bridge_mac(NID) == names.bridge_mac(NID) and names.bridge_mac(NID).startswith("02:")


def test_network_options_defaults_and_values():
    cfg = options.parse_network_options(NID, {"com.docker.network.generic": {}})
    assert (cfg.bridge, cfg.mtu, cfg.masquerade, cfg.icc, cfg.internal) == ("pn-2f234f73c230", 1500, True, True, False)
    cfg = options.parse_network_options(NID, {
        "com.docker.network.internal": True, "com.docker.network.enable_ipv6": True,
        "com.docker.network.generic": {"com.docker.network.driver.mtu": "1400", "pynet.bridge_name": "br-x",
                                       "com.docker.network.bridge.enable_icc": "false"}})
    assert (cfg.mtu, cfg.bridge, cfg.bridge_given, cfg.icc, cfg.internal, cfg.enable_ipv6) == (
        1400, "br-x", True, False, True, True)


def test_null_generic_options_are_empty():
    assert options.parse_network_options(NID, {"com.docker.network.generic": None}).mtu == 1500


def test_mac_option_is_base64_of_six_bytes():
    assert options.decode_mac("yv4AABAC") == "ca:fe:00:00:10:02"
    with pytest.raises(BadRequest, match="6 bytes"):
        options.decode_mac("yv4A")


def test_unknown_driver_opt_on_endpoint_is_refused():
    with pytest.raises(BadRequest, match="unknown endpoint option 'colour'"):
        options.parse_endpoint_options({"colour": "blue"})
    assert options.parse_endpoint_options({"com.docker.network.endpoint.sysctls": "x"}).mac == ""


def test_decode_defaults_and_nested_types():
    ids = {"NetworkID": "a" * 64, "EndpointID": "b" * 64}
    req = decode(CreateEndpointRequest, {**ids, "Interface": None, "Options": None})
    assert req.interface.address == "" and req.options == {}
    with pytest.raises(BadRequest, match=r"Interface.Address must be a string"):
        decode(CreateEndpointRequest, {**ids, "Interface": {"Address": 1}})


def test_encode_leaves_out_none():
    resp = JoinResponse(interface_name=InterfaceName("pncx", "eth"), gateway="10.0.0.1")
    assert encode(resp) == {"InterfaceName": {"SrcName": "pncx", "DstPrefix": "eth"}, "Gateway": "10.0.0.1",
                            "StaticRoutes": []}
