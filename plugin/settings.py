"""Settings: command-line flags over environment variables over defaults (contract.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pynet.ipam.pools import DEFAULT_POOLS


@dataclass(frozen=True)
class Settings:
    socket: str = "/run/docker/plugins/pynet.sock"
    state_dir: str = "/var/lib/pynet"
    etcd: str = ""
    vtep_address: str = ""
    log_level: str = "info"
    default_pools: str = DEFAULT_POOLS
    threads: int = 16
    docker_host: str = "unix:///var/run/docker.sock"
    lease_ttl: int = 15
    dns_address: str = "169.254.53.53"  # the cluster resolver's address (clusterdns/), "off": none
    dns_resolv_conf: str = "/etc/resolv.conf"  # where it finds the host's own resolvers

    @property
    def driver_name(self) -> str:
        """dockerd knows a legacy plugin by its socket's base name."""
        return os.path.splitext(os.path.basename(self.socket))[0]


# flag name -> (environment variable, Settings field)
ENVIRONMENT = {
    "socket": "PYNET_SOCKET",
    "state_dir": "PYNET_STATE_DIR",
    "etcd": "PYNET_ETCD_ENDPOINTS",
    "vtep_address": "PYNET_VTEP_ADDRESS",
    "log_level": "PYNET_LOG_LEVEL",
    "default_pools": "PYNET_DEFAULT_POOLS",
    "threads": "PYNET_THREADS",
    "docker_host": "PYNET_DOCKER_HOST",
    "lease_ttl": "PYNET_LEASE_TTL",
    "dns_address": "PYNET_DNS_ADDRESS",
    "dns_resolv_conf": "PYNET_DNS_RESOLV_CONF",
}
INTEGERS = {"threads", "lease_ttl"}


def resolve(flags: dict, environ=os.environ) -> Settings:
    """Settings from parsed flags (None = not given), then the environment, then defaults."""
    values = {}
    for name, env in ENVIRONMENT.items():
        value = flags.get(name)
        if value is None:
            value = environ.get(env) or None
        if value is None and name == "docker_host":
            value = environ.get("DOCKER_HOST") or None  # the variable every Docker tool reads
        if value is not None:
            values[name] = int(value) if name in INTEGERS else value
    return Settings(**values)
