"""Records read from etcd: every field validated, hostile and malformed ones refused by name."""

from __future__ import annotations

import re

import pytest

from pynet.cluster import records
from pynet.cluster.docker_network import ORIGIN_LABEL, DockerNetwork
from pynet.cluster.models import Advert, Host, Overlay, OverlayPool
from pynet.cluster.records import InvalidRecord
from pynet.store._common import decode

H = "a1a1a1a1a1a1"
EID = "e" * 64
POOLS = (OverlayPool("10.10.0.0/24", "10.10.0.1/24"),)
GOOD_ADVERT = Advert("demo", H, EID, "02:42:0a:0a:00:02", "192.0.2.1", ("10.10.0.2", "fd00::2")).to_dict()
INSPECTED = {  # GET /networks/{id} of the origin's network, as dockerd answers it
    "Name": "demo", "Id": "n" * 64, "Driver": "pynet", "EnableIPv6": False, "Internal": False,
    "IPAM": {"Driver": "pynet", "Options": {}, "Config": [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]},
    "Options": {"pynet.mode": "overlay", "pynet.overlay": "demo", "com.docker.network.driver.mtu": "1400"},
    "Labels": {"owner": "alice"}, "Containers": {},
}


def test_good_records_decode():
    assert records.host(H, Host(H, "192.0.2.1").to_dict()) == Host(H, "192.0.2.1")
    assert records.advert(("demo", H, EID), GOOD_ADVERT).ips == ("10.10.0.2", "fd00::2")
    rec = Overlay("demo", 4242, ipv4=POOLS, origin=H, origin_network="a" * 64)
    assert records.overlay("demo", rec.to_dict()) == rec


@pytest.mark.parametrize("change, reason", [
    ({"mac": "01:00:5e:00:00:01"}, "not a unicast MAC"),
    ({"mac": "02:42:0A:0A:00:02"}, "advert MAC '02:42:0A:0A:00:02' is not valid"),
    ({"vtep": "fe80::1%eth0"}, "advert VTEP 'fe80::1%eth0' carries an IPv6 scope"),
    ({"vtep": "192.0.2.01"}, "not an IP address"),
    ({"ips": ["10.10.0.2/24"]}, "advert address '10.10.0.2/24' is not an IP address"),
    ({"ips": ["FD00::2"]}, "not in canonical form (fd00::2)"),
    ({"ips": "10.10.0.2"}, "not a list"),
    ({"ips": ["10.0.0.1"] * 17}, "at most 16"),
    ({"endpoint": "f" * 64}, "does not match its key"),
    ({"host": "$(reboot)"}, "advert host '$(reboot)' is not valid"),
    ({"overlay": "demo; rm -rf /"}, "is not valid"),
    ({"mac": 42}, "advert MAC is not a string"),
    ({"overlay": "demo\n"}, "is not valid"),  # "$" matches before a final newline: fullmatch does not
    ({"mac": "02:42:0a:0a:00:02\n"}, "is not valid"),
])
def test_hostile_adverts_are_refused_by_field(change, reason):
    with pytest.raises(InvalidRecord, match=re.escape(reason)):
        records.advert(("demo", H, EID), {**GOOD_ADVERT, **change})


@pytest.mark.parametrize("value, reason", [
    ('["not", "an", "object"]', "is a JSON list, not an object"),
    ("{not json", "is not JSON"),
])
def test_values_that_are_not_json_objects_are_refused_not_crashed_on(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        records.advert(("demo", H, EID), decode(value))


@pytest.mark.parametrize("change, reason", [
    ({"vni": 0}, "VNI 0 is not an integer in 1..16777215"),
    ({"vni": True}, "VNI True"),
    ({"vni": "4242"}, "VNI '4242'"),
    ({"ipv4": [{"pool": "10.10.0.1/24"}]}, "not a network in CIDR form"),
    ({"ipv4": [{"pool": "10.10.0.0/24", "gateway": "10.20.0.1/24"}]}, "is not an address of 10.10.0.0/24"),
    ({"ipv4": [{"pool": "fd00::/64"}]}, "is not IPv4"),
    ({"state": "exploded"}, "overlay state 'exploded'"),
    ({"name": "other"}, "does not match its key"),
    ({"origin": "../../etc"}, "origin host '../../etc' is not valid"),
])
def test_malformed_overlays_are_refused_by_field(change, reason):
    good = Overlay("demo", 4242, ipv4=POOLS, origin=H).to_dict()
    with pytest.raises(InvalidRecord, match=reason):
        records.overlay("demo", {**good, **change})


def test_the_docker_body_is_rebuilt_from_validated_fields_only():
    described = DockerNetwork.describe(INSPECTED, "demo")
    body = described.request("demo", H)
    assert body == {
        "Name": "demo", "CheckDuplicate": True, "Driver": "pynet", "Internal": False, "EnableIPv6": False,
        "Attachable": False,
        "IPAM": {"Driver": "pynet", "Options": {}, "Config": [{"Subnet": "10.10.0.0/24", "Gateway": "10.10.0.1"}]},
        "Options": {"com.docker.network.driver.mtu": "1400", "pynet.mode": "overlay", "pynet.overlay": "demo"},
        "Labels": {ORIGIN_LABEL: H},  # the user's labels stay on the origin
    }
    rec = Overlay("demo", 4242, ipv4=POOLS, origin=H, docker=described)
    assert records.overlay("demo", rec.to_dict()).docker == described


@pytest.mark.parametrize("change, reason", [
    ({"labels": {"x": "y"}}, "fields pynet does not write: labels"),
    ({"config_from": "other"}, "fields pynet does not write: config_from"),
    ({"options": {"com.docker.network.bridge.name": "docker0"}}, "is not one pynet replicates"),
    ({"options": {"pynet.bridge_name": "a b"}}, "option pynet.bridge_name 'a b' is not valid"),
    ({"driver": "bridge -o x"}, "network driver 'bridge -o x' is not valid"),
    ({"name": "-rf"}, "Docker network name '-rf' is not valid"),
    ({"pools": [{"subnet": "10.99.0.0/24"}]}, "are not the overlay's"),
    ({"pools": [{"subnet": "10.10.0.0/24", "gateway": "10.99.0.1"}]}, "is not inside 10.10.0.0/24"),
    ({"pools": [{"subnet": "10.10.0.0/24", "aux": {"a": "10.10.0.9"}}]}, "pool has fields pynet does not write: aux"),
    ({"internal": True}, "--internal differs"),
])
def test_a_docker_body_with_anything_else_is_refused(change, reason):
    described = DockerNetwork.describe(INSPECTED, "demo").to_dict()
    rec = Overlay("demo", 4242, ipv4=POOLS, origin=H).to_dict()
    with pytest.raises(InvalidRecord, match=reason):
        records.overlay("demo", {**rec, "docker": {**described, **change}})


def test_advert_names_decode_and_default_to_none():
    named = {**GOOD_ADVERT, "names": ["api", "backend", "api.demo", "my_svc-1"]}
    assert records.advert(("demo", H, EID), named).names == ("api", "backend", "api.demo", "my_svc-1")
    older = {k: v for k, v in GOOD_ADVERT.items() if k != "names"}  # an advert of a pynet without DNS
    assert records.advert(("demo", H, EID), older).names == ()


@pytest.mark.parametrize("names, reason", [
    ("api", "not a list"),
    (["x"] * 33, "at most 32"),
    (["API"], "'API' is not a lower-case DNS name"),
    (["api."], "is not a lower-case DNS name"),
    ([""], "is not a lower-case DNS name"),
    (["a" * 64], "is not a lower-case DNS name"),
    (["-api"], "is not a lower-case DNS name"),
    (["api\x00.evil"], "is not a lower-case DNS name"),
    (["a b"], "is not a lower-case DNS name"),
    ([".".join(["a" * 60] * 5)], "is not a lower-case DNS name"),  # 304 > 253 characters
    ([7], "advert name is not a string"),
    (["*"], "is not a lower-case DNS name"),
    (["api\n"], "is not a lower-case DNS name"),  # a regex "$" alone would let the newline through
    (["evil\n.example"], "is not a lower-case DNS name"),
])
def test_hostile_advert_names_are_refused(names, reason):
    with pytest.raises(InvalidRecord, match=re.escape(reason)):
        records.advert(("demo", H, EID), {**GOOD_ADVERT, "names": names})
