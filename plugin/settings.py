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
    # A secured etcd (README "Secure cluster"): TLS files, and an etcd user whose password is in a file.
    etcd_ca: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""
    etcd_user: str = ""
    etcd_password_file: str = ""
    gc_interval: int = 60  # seconds between orphan collections (driver/gc.py); 0 = off
    grace_period: int = 60  # multi-host: peers keep a host that lost etcd this long (> lease_ttl)
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
    "etcd_ca": "PYNET_ETCD_CA",
    "etcd_cert": "PYNET_ETCD_CERT",
    "etcd_key": "PYNET_ETCD_KEY",
    "etcd_user": "PYNET_ETCD_USER",
    "etcd_password_file": "PYNET_ETCD_PASSWORD_FILE",
    "gc_interval": "PYNET_GC_INTERVAL",
    "grace_period": "PYNET_GRACE_PERIOD",
    "dns_address": "PYNET_DNS_ADDRESS",
    "dns_resolv_conf": "PYNET_DNS_RESOLV_CONF",
}
INTEGERS = {"threads", "lease_ttl", "gc_interval", "grace_period"}


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
            values[name] = _integer(name, value) if name in INTEGERS else value
    return check(Settings(**values))


def _integer(name: str, value) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} {value!r} is not a whole number") from None


def check(s: Settings) -> Settings:
    """Refuse settings that cannot work together (ValueError naming them)."""
    if s.gc_interval < 0:
        raise ValueError(f"--gc-interval {s.gc_interval}: must be 0 (off) or a number of seconds")
    if not s.etcd:
        return s  # lease and grace mean something only in a cluster: a single host is not refused over them
    if s.lease_ttl < 1:
        raise ValueError(f"--lease-ttl {s.lease_ttl}: must be at least 1 second")
    if s.grace_period <= s.lease_ttl:
        # Peers see a silent host only when its lease ends; a grace no longer than the lease would
        # drop its containers the moment they learn of it.
        raise ValueError(f"--grace-period {s.grace_period} must be longer than --lease-ttl {s.lease_ttl}")
    return s
