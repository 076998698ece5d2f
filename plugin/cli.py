"""The ``pynet`` command."""

from __future__ import annotations

import argparse
import sys

from pynet.plugin import settings as settings_mod


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pynet", description="pynet: a Docker network and IPAM plugin")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the plugin on its unix socket")
    serve.add_argument("--socket", help="unix socket dockerd finds the plugin on "
                                        "[PYNET_SOCKET, default /run/docker/plugins/pynet.sock]")
    serve.add_argument("--state-dir", dest="state_dir", help="where state is kept [PYNET_STATE_DIR, default /var/lib/pynet]")
    serve.add_argument("--etcd", help="comma-separated etcd client URLs [PYNET_ETCD_ENDPOINTS]")
    serve.add_argument("--vtep-address", dest="vtep_address", help="this host's VXLAN underlay address [PYNET_VTEP_ADDRESS]")
    serve.add_argument("--log-level", dest="log_level", help="debug, info, warning, error [PYNET_LOG_LEVEL, default info]")
    serve.add_argument("--default-pools", dest="default_pools",
                       help="pools used without --subnet, 'CIDR:SIZE,...' [PYNET_DEFAULT_POOLS]")
    serve.add_argument("--threads", type=int, help="request threads [PYNET_THREADS, default 16]")
    serve.add_argument("--docker-host", dest="docker_host",
                       help="Docker API of this host's dockerd, used in the background to create overlay "
                            "networks [PYNET_DOCKER_HOST or DOCKER_HOST, default unix:///var/run/docker.sock]")
    serve.add_argument("--lease-ttl", dest="lease_ttl", type=int,
                       help="seconds before a vanished host's containers leave the other hosts' tables "
                            "[PYNET_LEASE_TTL, default 15]")
    serve.add_argument("--etcd-ca", dest="etcd_ca", help="CA file that etcd's server certificate must be "
                                                         "signed by [PYNET_ETCD_CA, default the system's]")
    serve.add_argument("--etcd-cert", dest="etcd_cert", help="client certificate for etcd [PYNET_ETCD_CERT]")
    serve.add_argument("--etcd-key", dest="etcd_key", help="key of --etcd-cert [PYNET_ETCD_KEY]")
    serve.add_argument("--etcd-user", dest="etcd_user", help="etcd user (etcd authentication) [PYNET_ETCD_USER]")
    serve.add_argument("--etcd-password-file", dest="etcd_password_file",
                       help="file holding --etcd-user's password [PYNET_ETCD_PASSWORD_FILE]")
    serve.add_argument("--gc-interval", dest="gc_interval", type=int,
                       help="seconds between looks for records dockerd no longer knows, which are then "
                            "removed; 0 turns it off [PYNET_GC_INTERVAL, default 60]")
    serve.add_argument("--grace-period", dest="grace_period", type=int,
                       help="seconds the other hosts keep the containers of a host that lost etcd before "
                            "removing them; longer than --lease-ttl [PYNET_GRACE_PERIOD, default 60]")
    serve.add_argument("--dns-address", dest="dns_address",
                       help="address of the cluster resolver for overlay names, 'off' for none; daemon.json's "
                            "\"dns\" points at it [PYNET_DNS_ADDRESS, default 169.254.53.53]")
    serve.add_argument("--dns-resolv-conf", dest="dns_resolv_conf",
                       help="resolv.conf naming the resolvers that other names are forwarded to "
                            "[PYNET_DNS_RESOLV_CONF, default /etc/resolv.conf]")
    ports = sub.add_parser("ports", help="show published ports (docker port cannot show a plugin's)")
    ports.add_argument("target", nargs="?", help="a container or network (name or ID prefix)")
    ports.add_argument("--socket", default=None, help="the plugin's socket [PYNET_SOCKET]")
    ports.add_argument("--docker-host", dest="docker_host", default=None,
                       help="Docker API socket [DOCKER_HOST, default unix:///var/run/docker.sock]")
    ports.add_argument("--json", action="store_true", help="print JSON")
    _ops_parsers(sub)
    sub.add_parser("version", help="print pynet's version")
    return parser


def _ops_parsers(sub) -> None:
    """status, hosts [rm], doctor: each asks the running pynet through its socket (plugin/ops_*.py)."""
    def common(p, default=None):
        p.add_argument("--socket", default=default, help="the plugin's socket [PYNET_SOCKET; default the "
                                                         "legacy socket, else the managed plugin's]")
        p.add_argument("--json", action="store_true", default=default or False, help="print JSON")
        return p

    common(sub.add_parser("status", help="this host, its store, background loops, networks, overlays, hosts"))
    hosts = common(sub.add_parser("hosts", help="the cluster's hosts; `hosts rm HOST` evicts a dead one"))
    hosts_sub = hosts.add_subparsers(dest="hosts_command", metavar="rm")
    # SUPPRESS: `hosts --json rm X` and `hosts rm X --json` both work (a sub-parser's default would win)
    rm = common(hosts_sub.add_parser("rm", help="remove a dead host's adverts, memberships and addresses"),
                argparse.SUPPRESS)
    rm.add_argument("host", help="the host's id (as `pynet hosts` shows it)")
    rm.add_argument("--force", action="store_true", help="also a host whose lease is still in etcd")
    doctor = common(sub.add_parser("doctor", help="check everything pynet needs; exit status = failures"))
    doctor.add_argument("--daemon-json", dest="daemon_json", default=None,
                        help="dockerd's daemon.json, checked for the cluster resolver [/etc/docker/daemon.json]")


OPS_COMMANDS = {"status": "ops_status", "hosts": "ops_hosts", "doctor": "ops_doctor"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        from importlib.metadata import version

        print(version("pynet-plugin"))
        return 0
    if args.command == "ports":
        from pynet.plugin import ports_cli

        return ports_cli.main(args)  # it resolves --socket / --docker-host defaults itself
    if args.command in OPS_COMMANDS:
        import importlib

        return importlib.import_module(f"pynet.plugin.{OPS_COMMANDS[args.command]}").main(args)
    if args.command != "serve":
        parser.print_help()
        return 2
    try:
        settings = settings_mod.resolve(vars(args))
    except ValueError as exc:
        raise SystemExit(f"pynet: {exc}") from None
    from pynet.plugin.server import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
