"""A hung iptables reaches dockerd as the plugin's error envelope, naming what hung, and leaves nothing."""

from __future__ import annotations

from pynet.driver.firewall import FirewallTimeout
from tests.contract.conftest import post
from tests.contract.test_protocol import EID, NID, create_network, portmap, start_endpoint


def test_a_firewall_timeout_fails_the_request_with_503_naming_the_command(world, client):
    _, _, pool = create_network(client)
    start_endpoint(client, pool["PoolID"])
    real = world.firewall.sync

    def hung(networks, endpoints=()):
        if any(e.published for e in endpoints):
            raise FirewallTimeout("iptables-restore -w 5 --noflush did not finish within 10 s (killed; is another "
                                  "process holding the xtables lock?)")
        real(networks, endpoints)

    world.firewall.sync = hung
    status, err = post(client, "NetworkDriver.ProgramExternalConnectivity",
                       {"NetworkID": NID, "EndpointID": EID, "Options": portmap((6, 80, "", 18080, 18080))})
    assert status == 503 and err["Err"] == err["Error"]
    assert "iptables-restore -w 5 --noflush did not finish within 10 s" in err["Err"]
    assert world.services.network.repo.endpoint(NID, EID).published == []  # the port is free again
    world.firewall.sync = real
    status, _ = post(client, "NetworkDriver.ProgramExternalConnectivity",
                     {"NetworkID": NID, "EndpointID": EID, "Options": portmap((6, 80, "", 18080, 18080))})
    assert status == 200


def test_a_bridge_name_iptables_would_read_as_a_wildcard_is_refused_and_leaves_nothing(world, client):
    """``pn+`` is a valid Linux name, but in a rule it would match every pynet interface."""
    for i, bridge in enumerate(("pn+", "-ijunk")):
        status, body, _ = create_network(client, subnet=f"192.168.{i}.0/24", generic={"pynet.bridge_name": bridge})
        assert status == 400 and "bridge" in body["Err"] and repr(bridge) in body["Err"], body
        assert world.services.network.repo.network(NID) is None and bridge not in world.links.links
        assert world.firewall.synced == []  # refused before any rule was written
