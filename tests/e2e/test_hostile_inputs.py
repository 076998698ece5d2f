"""What dockerd really passes through to pynet, and what pynet refuses by name (issue 11, item 4)."""

from __future__ import annotations

import pytest

from pynet.lab.proc import CommandError
from tests.e2e.helpers import pn_links, run


def create(host, cleanup, name, *args):
    cleanup.network(name)
    host.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", *args, name)
    return name


def test_uppercase_ipv6_subnet_works_and_is_canonical(dockerhost, cleanup):
    """dockerd 20.10 hands --subnet and --gateway to the IPAM driver as typed: 2001:DB8:: must keep working."""
    h = dockerhost
    create(h, cleanup, "v6upper", "--ipv6", "--subnet", "10.36.0.0/24", "--subnet", "2001:DB8:36::/64",
           "--gateway", "2001:DB8:36::1")
    run(h, cleanup, "u1", network="v6upper")
    run(h, cleanup, "u2", network="v6upper")
    v6 = h.docker("inspect", "-f", '{{(index .NetworkSettings.Networks "v6upper").GlobalIPv6Address}}',
                  "u2").stdout.strip()
    assert v6.startswith("2001:db8:36::"), v6
    gw = h.docker("inspect", "-f", '{{(index .NetworkSettings.Networks "v6upper").IPv6Gateway}}', "u2").stdout.strip()
    assert gw == "2001:db8:36::1"
    h.docker("exec", "u1", "ping", "-6", "-c1", "-W2", v6)


@pytest.mark.parametrize("args, message", [
    # pynet's words on dockerd 20.10-28; dockerd 29 refuses it itself before asking pynet ("it should be ...")
    (["--subnet", "10.37.1.1/24"], ("host bits set (the network is 10.37.1.0/24)", "it should be 10.37.1.0/24")),
    (["--subnet", "10.37.0.0/24", "-o", "pynet.bridge_name=docker0"], "one of Docker's own bridges"),
    (["--subnet", "10.37.0.0/24", "-o", "pynet.bridge_name=br-0123456789ab"], "one of Docker's own bridges"),
    (["--subnet", "10.37.0.0/24", "-o", "pynet.bridge_name=br+"], "not a valid interface name"),
    (["--subnet", "10.37.0.0/24", "-o", "pynet.bridge_name=lo"], "is a device, not a bridge"),
    (["--subnet", "10.37.0.0/24", "-o", "com.docker.network.bridge.host_binding_ipv4=::ffff:127.0.0.1"],
     "IPv4-mapped"),
])
def test_hostile_inputs_are_refused_by_name_and_leave_nothing(dockerhost, cleanup, args, message):
    h = dockerhost
    with pytest.raises(CommandError) as err:
        create(h, cleanup, "refused", *args)
    messages = (message,) if isinstance(message, str) else message
    assert any(m in str(err.value) for m in messages), str(err.value)
    assert pn_links(h) == []
    assert "refused" not in h.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
