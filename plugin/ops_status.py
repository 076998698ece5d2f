"""``pynet status [--json]``: this host, its store, the background loops, networks, overlays, hosts.

All of it comes from the running pynet (``POST /Pynet.Status``, plugin/ops_service.py); this module only
prints it.
"""

from __future__ import annotations

import json
import sys
import time

from pynet.plugin.ops_client import CliError, ago, call, find_socket, table


def render(doc: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    h, s = doc.get("Host", {}), doc.get("Store", {})
    out = [f"host     {h.get('ID') or '-'}  VTEP {h.get('VTEP') or '-'}  pynet {h.get('Version') or '?'}  "
           f"{h.get('Mode', '')}",
           f"store    {s.get('Kind')} {s.get('Where')}: " +
           (f"reachable, {s.get('LatencyMs')} ms" if s.get("Reachable") else f"UNREACHABLE: {s.get('Error')}")]
    if "MemberSet" in doc:
        m = doc["MemberSet"]
        vteps = m.get("VTEPs")
        out.append(f"members  {'not loaded yet' if vteps is None else ', '.join(vteps) or 'none'}  "
                   f"(VXLAN filter {'armed' if m.get('FilterArmed') else 'not armed'})")
        dns = doc.get("DNS", {}).get("Address")
        out.append(f"dns      {dns or 'off'}")
    st = doc.get("Settings", {})
    out.append(f"settings lease-ttl {st.get('LeaseTTL')}s  grace-period {st.get('GracePeriod')}s  "
               f"gc-interval {st.get('GCInterval')}s")
    loops = doc.get("Health", {}).get("loops", {})
    out.append("\nbackground loops")
    out.append(table(("LOOP", "STATE", "LAST OK", "FAILURES", "RESTARTS", "LAST ERROR"), [
        (n, ("failing" if l["consecutive_failures"] else "running" if l["running"] else "done"),
         ago(now - l["last_ok"]) if l.get("last_ok") else "never", l["failures"], l["restarts"],
         (l["last_error"] + (f" ({ago(now - l['last_error_at'])})" if l.get("last_error_at") else ""))
         if l["last_error"] else "") for n, l in sorted(loops.items())]).rstrip())
    rejected = doc.get("Health", {}).get("rejected", {})
    if rejected:
        out.append("refused records: " + ", ".join(f"{k} {v['count']}" for k, v in sorted(rejected.items())))
    out.append("\nnetworks")
    rows = []
    for n in doc.get("Networks", []):
        where = n["Overlay"] and f"overlay {n['Overlay']} vni {n['VNI']}" or n["Bridge"]
        rows.append((n["ID"][:12], n["Mode"], where, ",".join(n["Subnets"]), n["MTU"], len(n["Endpoints"])))
        for ep in n["Endpoints"]:
            rows.append(("  " + ep["ID"][:12], "endpoint", ep["MAC"], ep["Address"] or ep["AddressV6"], "",
                         "joined" if ep["Joined"] else "created"))
    out.append(table(("NETWORK", "MODE", "BRIDGE/OVERLAY", "SUBNETS", "MTU", "ENDPOINTS"), rows).rstrip())
    if "Overlays" in doc:
        out.append("\noverlays")
        rows = []
        for o in doc["Overlays"]:
            members = " ".join(f"{m['ID']}({m['State']},{m['Endpoints']}ep,{ago(m['LastSeen'])})"
                               for m in o["Members"])
            rows.append((o["Name"], o["VNI"], o["State"], ",".join(o["Subnets"]), members or "none"))
        out.append(table(("OVERLAY", "VNI", "STATE", "SUBNETS", "MEMBERS (state, endpoints, lease seen)"),
                         rows).rstrip())
    if "Hosts" in doc:
        from pynet.plugin.ops_hosts import render as hosts_table

        out.append("\nhosts")
        out.append(hosts_table(doc["Hosts"]).rstrip())
    return "\n".join(out) + "\n"


def main(args) -> int:
    try:
        doc = call(find_socket(args.socket), "/Pynet.Status")
    except CliError as e:
        print(f"pynet status: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else render(doc))
    return 0
