"""``pynet doctor [--json]``: every check, PASS or FAIL with what to do; the exit status is the number of
failures.

The running pynet does the checks only it can (``POST /Pynet.Doctor``, plugin/ops_service.py: firewall,
sysctls, store, loops, Docker API, the UDP 4789 and path MTU probes to every peer, the kernel tables against
the cluster view).  One check is the CLI's own, because it is about the host, not pynet: dockerd's
daemon.json must name the cluster resolver in ``dns`` when pynet serves cluster DNS, or containers never
ask it.  An unreachable pynet is one failure (and the other checks cannot run).
"""

from __future__ import annotations

import json
import sys

from pynet.plugin.ops_client import CliError, call, find_socket

DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"


def daemon_dns_check(path: str, resolver: str) -> dict:
    """The daemon.json check, pure but for reading ``path``."""
    fix = (f'add "dns": ["{resolver}"] to {path} (after it, the host\'s own resolvers are forwarded to) and '
           "restart dockerd")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return _check("daemon.json dns", False, f"{path} does not exist", fix)
    except (OSError, ValueError) as e:
        return _check("daemon.json dns", False, f"{path} cannot be read: {e}", fix)
    dns = doc.get("dns") if isinstance(doc, dict) else None
    if isinstance(dns, list) and dns and dns[0] == resolver:
        return _check("daemon.json dns", True, f"{path} names {resolver} first in \"dns\"")
    return _check("daemon.json dns", False,
                  f"{path} has \"dns\": {json.dumps(dns)}, not {resolver} first (containers do not ask the "
                  "cluster resolver)", fix)


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"Name": name, "OK": ok, "Detail": detail, "Fix": "" if ok else fix}


def render(checks: list[dict]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{'PASS' if c['OK'] else 'FAIL'}  {c['Name']}: {c['Detail']}")
        if not c["OK"] and c.get("Fix"):
            lines.append(f"      fix: {c['Fix']}")
    failed = sum(1 for c in checks if not c["OK"])
    lines.append(f"{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def main(args) -> int:
    try:
        socket_path = find_socket(args.socket)
        checks = call(socket_path, "/Pynet.Doctor").get("Checks", [])
        status = call(socket_path, "/Pynet.Status")
    except CliError as e:
        checks = [_check("pynet", False, str(e), "start pynet (`pynet serve`, or `docker plugin enable`)")]
        status = {}
    resolver = status.get("DNS", {}).get("Address")
    if resolver:
        checks.append(daemon_dns_check(args.daemon_json or DEFAULT_DAEMON_JSON, resolver))
    sys.stdout.write(json.dumps(checks, indent=2) + "\n" if args.json else render(checks))
    return min(sum(1 for c in checks if not c["OK"]), 125)  # exit codes above 125 mean other things
