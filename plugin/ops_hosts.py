"""``pynet hosts [--json]`` and ``pynet hosts rm HOST [--force]``: the cluster's hosts, and the eviction
of a dead one (the server does it: plugin/ops_service.py, cluster/hosts.py)."""

from __future__ import annotations

import json
import sys

from pynet.plugin.ops_client import CliError, ago, call, find_socket, table


def render(hosts: list[dict]) -> str:
    rows = []
    for h in hosts:
        state = h["State"] + (f" ({h['GraceLeft']:.0f}s grace left)" if h.get("GraceLeft") is not None else "")
        rows.append((h["ID"], h["VTEP"], h["Version"], state, ago(h["LastSeen"]), h["Endpoints"],
                     ",".join(h["Overlays"])))
    return table(("HOST", "VTEP", "VERSION", "STATE", "LAST SEEN", "ENDPOINTS", "OVERLAYS"), rows)


def render_eviction(doc: dict) -> str:
    return (f"removed host {doc['Host']}{' (forced)' if doc.get('Forced') else ''}: "
            f"{doc['Adverts']} adverts, memberships {', '.join(doc['Memberships']) or 'none'}, "
            f"pool holds {', '.join(doc['Pools']) or 'none'}, addresses {', '.join(doc['Addresses']) or 'none'}"
            + (", registration" if doc.get("Registration") else "")
            + (f"; overlays removed: {', '.join(doc['OverlaysRemoved'])}" if doc.get("OverlaysRemoved") else "")
            + "\n")


def main(args) -> int:
    try:
        socket_path = find_socket(args.socket)
        if getattr(args, "hosts_command", None) == "rm":
            doc = call(socket_path, "/Pynet.HostsRemove", {"Host": args.host, "Force": bool(args.force)})
            sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else render_eviction(doc))
            return 0
        doc = call(socket_path, "/Pynet.Hosts")
    except CliError as e:
        print(f"pynet hosts: {e}", file=sys.stderr)
        return 1
    if doc.get("Mode") == "single-host" and not args.json:
        print("pynet runs single-host (no --etcd): no cluster hosts")
        return 0
    sys.stdout.write(json.dumps(doc["Hosts"], indent=2) + "\n" if args.json else render(doc["Hosts"]))
    return 0
