"""The markdown report (bench/results/latest.md) built from the results dict of bench/run.py."""

from __future__ import annotations

from bench.stats import ratio

CALL_ROWS = ("RequestAddress", "CreateEndpoint", "Join", "Leave", "DeleteEndpoint", "ReleaseAddress", "Cycle")


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return f"{'≥' if higher_is_better else '≤'} {target:.2f} {'met' if ok else '**missed**'}"


def _docker_table(d: dict) -> list[str]:
    run, ipf, net = d["docker_run_s"], d["iperf_gbit_s"], d["network_create_rm_s"]
    n_run, n_ipf, n_net = run["pynet"]["n"], ipf["pynet"]["n"], net["pynet"]["total"]["n"]
    secs = ipf["pynet"]["seconds_per_round"]
    r_run = ratio(run["pynet"]["median"], run["bridge"]["median"])
    r_ipf = ratio(ipf["pynet"]["median"], ipf["bridge"]["median"])
    r_net = ratio(net["pynet"]["total"]["median"], net["bridge"]["total"]["median"])

    def run_cell(k):
        return f"{run[k]['median']:.3f} s (p90 {run[k]['p90']:.3f})"

    def ipf_cell(k):
        return f"{ipf[k]['median']:.2f} Gbit/s ({ipf[k]['min']:.1f}–{ipf[k]['max']:.1f})"

    def net_cell(k):
        n = net[k]
        return f"{n['total']['median']:.3f} s ({n['create']['median']:.3f} + {n['rm']['median']:.3f})"

    return [
        "| measure | Docker bridge | pynet | pynet / bridge | target |",
        "|---|---:|---:|---:|---|",
        f"| `docker run --rm --network N busybox true`, median of {n_run} | {run_cell('bridge')} | "
        f"{run_cell('pynet')} | {r_run:.3f} | {_verdict(r_run, 1.05, False)} |",
        f"| iperf3 TCP container → container, median (range) of {n_ipf} × {secs} s | {ipf_cell('bridge')} | "
        f"{ipf_cell('pynet')} | {r_ipf:.3f} | {_verdict(r_ipf, 0.97, True)} |",
        f"| `docker network create` + `rm`, median of {n_net} | {net_cell('bridge')} | {net_cell('pynet')} | "
        f"{r_net:.2f} | — |",
    ]


def _paired_note(d: dict) -> list[str]:
    diff, bridge = d["docker_run_paired_diff_s"], d["docker_run_s"]["bridge"]["median"]
    return [f"`docker run`, paired: median of (pynet run i − bridge run i) over the {diff['n']} interleaved pairs "
            f"= {diff['median'] * 1e3:+.1f} ms ({diff['median'] / bridge * 100:+.1f} % of bridge's median), "
            "less sensitive to the machine's drift than the ratio of medians."]


def _latency_table(p: dict) -> list[str]:
    c1, c8 = p["latency"]["c1"], p["latency"]["c8"]
    rows = [
        "| call (ms) | c=1 p50 | c=1 p99 | c=8 p50 | c=8 p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in CALL_ROWS:
        a, b = c1["calls"][name], c8["calls"][name]
        label = "**whole cycle**" if name == "Cycle" else name
        rows.append(f"| {label} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} |")
    rows.append(f"| **cycles / s** | {c1['cycles_per_s']:.1f} | ({c1['cycles']} cycles) | "
                f"{c8['cycles_per_s']:.1f} | ({c8['cycles']} cycles) |")
    return rows


def _memory_table(fresh: dict, mem: list[dict]) -> list[str]:
    rows = ["| pynet RSS (MiB) | endpoint cycles done | worker | arbiter | total |", "|---|---:|---:|---:|---:|"]
    for m in [fresh, *mem]:
        rows.append(f"| {m['label']} | {m['cycles_done']:,} | {m['worker_kib'] / 1024:.1f} | "
                    f"{m['arbiter_kib'] / 1024:.1f} | {m['total_kib'] / 1024:.1f} |")
    batches = [m for m in mem if m["cycles_done"]]
    growth = [f"{b['label']}: {b['total_kib'] - a['total_kib']:+,} KiB over {b['cycles_done'] - a['cycles_done']:,} cycles"
              for a, b in zip(batches, batches[1:])]
    same_pid = len({m["worker_pid"] for m in [fresh, *mem]}) == 1
    rows += ["", f"Growth after batch 1 (a leak shows here): {'; '.join(growth)}. "
                 f"Same worker process throughout: {'yes' if same_pid else '**no**'}."]
    return rows


def _profile_table(prof: dict) -> list[str]:
    by = sorted(prof["by_call"].items(), key=lambda kv: -kv[1]["ms_per_run"])
    n = len(prof["runs"])
    total = sum(v["ms_per_run"] for _, v in by)
    wall = sorted(r["wall_s"] for r in prof["runs"])[n // 2] * 1e3
    rows = [f"| call dockerd → pynet, per `docker run` ({n} runs) | calls / run | median ms / call | ms / run |",
            "|---|---:|---:|---:|"]
    rows += [f"| {path} | {v['calls_per_run']:.1f} | {v['median_ms']:.2f} | {v['ms_per_run']:.1f} |" for path, v in by]
    rows.append(f"| **total in pynet** (docker run median through the relay: {wall:.0f} ms) | "
                f"{sum(v['calls_per_run'] for _, v in by):.1f} | | **{total:.1f}** |")
    return rows


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        "## Benchmarks",
        "",
        f"{m['date_utc']} · {m['nproc']} cores · kernel {m['kernel']} · dockerd {m['dockerd']} "
        f"({m['storage_driver']}) · Python {m['python']} · pynet {m.get('pynet_source', '?')} `{m['pynet_args']}` · "
        f"load average {m['loadavg_start']:.2f} → {m.get('loadavg_end', float('nan')):.2f} · "
        f"`bench/run.py{' --quick' if m['mode'] == 'quick' else ''}` in {r.get('elapsed_s', 0):.0f} s",
        "",
        *_docker_table(r["docker"]),
        "",
        *_paired_note(r["docker"]),
        "",
        f"pynet alone on its socket (no dockerd), endpoint cycle RequestAddress → CreateEndpoint → Join → "
        f"Leave → DeleteEndpoint → ReleaseAddress on a {r['plugin']['subnet']} pool, one keep-alive "
        "connection per client thread:",
        "",
        *_latency_table(r["plugin"]),
        "",
        *_memory_table(r["memory_fresh"], r["plugin"]["memory"]),
        "",
        "Where pynet's share of a `docker run` goes (pynet behind a timing relay; times are pynet's round trip):",
        "",
        *_profile_table(r["profile"]),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ overlay
OVERLAY_LABELS = (("swarm", "Docker swarm overlay"), ("pynet", "pynet overlay"))


def _ms(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x * 1e3:.0f} ms"


def render_overlay(o: dict, machine: dict | None = None) -> str:
    """The "Multi-host overlay" section (bench/overlay.py's results); ``machine`` adds a header line
    when the section was run on its own (``python -m bench.overlay``)."""
    cols = [(k, title) for k, title in OVERLAY_LABELS if k in o.get("networks", {})]
    tp, conv, plan = o["throughput"], o["convergence"], o["plan"]
    both = len(cols) == 2
    lines = ["### Multi-host overlay", ""]
    if machine:
        lines += [f"{machine['date_utc']} · {machine['nproc']} cores · kernel {machine['kernel']} · "
                  f"dockerd {machine.get('dockerd', '?')} · Python {machine['python']} · pynet "
                  f"{machine.get('pynet_source', '?')} `{machine['pynet_args']}` · load average "
                  f"{machine['loadavg_start']:.2f} → {machine.get('loadavg_end', float('nan')):.2f} · "
                  f"`python -m bench.overlay{' --quick' if machine['mode'] == 'quick' else ''}` in "
                  f"{o.get('elapsed_s', 0):.0f} s", ""]
    ul = o["underlay"]
    lines += [f"Two Docker hosts on one machine (netns each, underlay {ul['a']} / {ul['b']}, MTU {ul['mtu']}, "
              f"etcd at {ul['etcd']}); both overlays on the same two dockerds, measured in one run, "
              f"interleaved; {o.get('elapsed_s', 0):.0f} s, load average "
              f"{o.get('loadavg_start', float('nan')):.2f} → {o.get('loadavg_end', float('nan')):.2f}.", ""]
    head = "| measure | " + " | ".join(t for _, t in cols) + (" | pynet / swarm | target |" if both else " |")
    lines += [head, "|---|" + "---:|" * len(cols) + ("---:|---|" if both else "")]

    def row(label: str, cells: list[str], rat: str = "", target: str = "") -> str:
        return f"| {label} | " + " | ".join(cells) + (f" | {rat} | {target} |" if both else " |")

    r_tp = ratio(tp["pynet"]["median"], tp["swarm"]["median"]) if both else float("nan")
    lines.append(row(f"iperf3 TCP, container on B → container on A, median (range) of {tp[cols[0][0]]['n']} × "
                     f"{plan['iperf_seconds']} s",
                     [f"{tp[k]['median']:.2f} Gbit/s ({tp[k]['min']:.1f}–{tp[k]['max']:.1f})" for k, _ in cols],
                     f"{r_tp:.3f}", _verdict(r_tp, 1.0, True)))
    lines.append(row("TCP retransmits per round, median",
                     [f"{_median_or_dash(tp[k]['retransmits'])}" for k, _ in cols]))
    lines.append(row("container MTU (eth0, A / B)",
                     [f"{tp[k]['mtu_server_a']} / {tp[k]['mtu_client_b']}" for k, _ in cols]))
    n = plan["containers"]

    def conv_cell(k: str) -> str:
        r, c = conv[k]["reply_s"], conv[k]
        miss = f", **{c['unreached']} unreached**" if c["unreached"] else ""
        return f"{_ms(r['median'])} / {_ms(r['p99'])} / {_ms(r['max'])}{miss}"

    p99 = conv["pynet"]["reply_s"]["p99"] if "pynet" in conv else float("nan")
    ok = p99 < 1.0 and not conv.get("pynet", {}).get("unreached")
    lines.append(row(f"`docker run -d` on A → first ping reply on B, p50 / p99 / max of {n}",
                     [conv_cell(k) for k, _ in cols], "",
                     f"pynet p99 < 1 s {'met' if ok else '**missed**'}"))
    lines.append(row("… of which `docker run -d` on A itself, median",
                     [_ms(conv[k]["run_s"]["median"]) for k, _ in cols]))
    if "reply_after_started_s" in conv[cols[0][0]]:
        lines.append(row("… first reply after dockerd's `State.StartedAt` of the container, median (max)",
                         [f"{_ms(conv[k]['reply_after_started_s']['median'])} "
                          f"({_ms(conv[k]['reply_after_started_s']['max'])})" for k, _ in cols]))
    lines.append(row("… first reply after `docker run -d` returned, median (max)",
                     [f"{_ms(conv[k]['reply_after_run_s']['median'])} ({_ms(conv[k]['reply_after_run_s']['max'])})"
                      for k, _ in cols]))
    lines.append("")
    notes = []
    cr = o.get("create", {}).get("pynet")
    if cr:
        notes.append("pynet's `pbench`, created on A, was created on B by hand (it did not appear within 15 s)"
                     if cr.get("created_by_hand_on_b") else
                     f"pynet's `pbench`, created on A, was listed by `docker network ls` on B "
                     f"{cr['appeared_on_b_s']:.2f} s later (pynet creates it there)")
    if "swarm" in o:
        notes.append(f"swarm init + join + worker Ready took {o['swarm']['both_ready_s']:.1f} s")
    prober = next(iter(conv.values()))["prober"]
    notes.append(f"the prober pings every 20 ms with its ARP retransmit timer at {prober['retrans_time_ms']} ms "
                 f"(default {prober['retrans_time_ms_default']} ms, which would quantise the figure to ~1 s)")
    lines += ["Notes: " + "; ".join(notes) + ". Method: bench/README.md, \"Multi-host overlay\".", ""]
    if o.get("cleanup_left"):
        lines += [f"**Left behind before the cluster was stopped:** {', '.join(o['cleanup_left'])}", ""]
    return "\n".join(lines)


def _median_or_dash(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    xs.sort()
    m = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    return f"{m:g}"


DNS_KINDS = (("cross_host_via_docker", "name of a container on host A, asked on B through Docker's resolver "
                                       "(forwarded to pynet)"),
             ("local_via_docker", "name of a container on B, asked on B: Docker's embedded resolver alone"),
             ("cross_host_direct", "name on host A, asked of pynet's resolver (169.254.53.53) directly"))


def render_dns(d: dict) -> str:
    """The "Cluster DNS" section (bench/dns.py's results)."""
    lat, plan = d["latency"], d["plan"]
    lines = ["### Cluster DNS", "",
             f"Two hosts, dockerd {d.get('dockerd', '?')} with `\"dns\": [\"169.254.53.53\"]`; a probe in a "
             f"container's network namespace, one query at a time, {plan['rounds']} interleaved rounds of "
             f"{plan['per_round']} lookups per kind; {d.get('elapsed_s', 0):.0f} s, load average "
             f"{d.get('loadavg_start', float('nan')):.2f} → {d.get('loadavg_end', float('nan')):.2f}.", "",
             "| lookup | p50 | p99 | max | failures |", "|---|---:|---:|---:|---:|"]
    for key, title in DNS_KINDS:
        v = lat[key]
        lines.append(f"| {title} | {v['median']:.3f} ms | {v['p99']:.3f} ms | {v['max']:.1f} ms | "
                     f"{v['failures']} of {v['n'] + v['failures']} |")
    lines += ["", "| pynet's resolver, one name, queries in flight | answered/s | sent | answered |",
              "|---|---:|---:|---:|"]
    for window, q in d["qps"].items():
        lines.append(f"| {window} for {q['seconds']:.0f} s | {q['qps']:.0f} | {q['sent']} | {q['answered']} |")
    lines += ["", f"`target`'s name was answered on host B {d['target_resolvable_after_s']:.2f} s after its `docker run` "
                  "and two `docker inspect`s had returned (the time those took is not in the figure).", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ macvlan
def render_macvlan(m: dict, machine: dict | None = None) -> str:
    """The "Multi-host macvlan" section (bench/macvlan.py's results): pynet's vs Docker's macvlan."""
    tp, rtt, plan = m["throughput"], m["rtt"], m["plan"]
    cols = (("docker-macvlan", "Docker macvlan"), ("pynet-macvlan", "pynet macvlan"))
    lines = ["### Multi-host macvlan", ""]
    if machine:
        lines += [f"{machine['date_utc']} · {machine['nproc']} cores · kernel {machine['kernel']} · "
                  f"dockerd {machine.get('dockerd', '?')} · pynet {machine.get('pynet_source', '?')} · "
                  f"`python -m bench.macvlan{' --quick' if machine['mode'] == 'quick' else ''}` in "
                  f"{m.get('elapsed_s', 0):.0f} s", ""]
    ul = m["underlay"]
    lines += [f"Two Docker hosts on one underlay bridge ({ul['a']} / {ul['b']}, MTU {ul['mtu']}), parent "
              f"`{ul['parent']}` on both; both drivers on the same two dockerds, measured in one run, interleaved; "
              f"{m.get('elapsed_s', 0):.0f} s, load average {m.get('loadavg_start', float('nan')):.2f} → "
              f"{m.get('loadavg_end', float('nan')):.2f}.", "",
              "| measure | Docker macvlan | pynet macvlan | pynet / Docker |", "|---|---:|---:|---:|"]

    def rtts(k: str) -> list[float]:
        return [r["median"] for r in rtt[k]]

    r_tp = ratio(tp["pynet-macvlan"]["median"], tp["docker-macvlan"]["median"])
    lines.append(f"| iperf3 TCP, container on B → container on A, median (range) of {tp['pynet-macvlan']['n']} × "
                 f"{plan['iperf_seconds']} s | " + " | ".join(
                     f"{tp[k]['median']:.2f} Gbit/s ({tp[k]['min']:.1f}–{tp[k]['max']:.1f})" for k, _ in cols)
                 + f" | {r_tp:.3f} |")
    med = {k: sorted(rtts(k))[len(rtts(k)) // 2] for k, _ in cols}
    p99 = {k: max(r["p99"] for r in rtt[k]) for k, _ in cols}
    lines.append(f"| ping RTT B → A, median / worst p99 of {len(rtt['pynet-macvlan'])} × 100 | " + " | ".join(
        f"{med[k] * 1e3:.3f} / {p99[k] * 1e3:.3f} ms" for k, _ in cols)
        + f" | {ratio(med['pynet-macvlan'], med['docker-macvlan']):.3f} |")
    lines.append("| container MTU (A / B) | " + " | ".join(
        f"{tp[k]['mtu_server_a']} / {tp[k]['mtu_client_b']}" for k, _ in cols) + " | |")
    own = m["host_reaches_own"]
    lines.append("| host A pings its own container | " + " | ".join(
        "yes" if own[k] else "no" for k, _ in cols) + " | |")
    dup = m["duplicates"]
    lines.append(f"| addresses handed out on both hosts, {dup['pynet-macvlan']['per_host']} containers per host, "
                 f"one subnet and no split range | {dup['docker-naive']['duplicates']} | "
                 f"{dup['pynet-macvlan']['duplicates']} | |")
    cr = m["create"]["pynet-macvlan"]
    appeared = ("created on B by hand (did not appear within 15 s)" if cr.get("created_by_hand_on_b")
                else f"listed on B {cr['appeared_on_b_s']:.2f} s after its creation on A")
    lines += ["", f"Notes: Docker's `dmv` was created on each host by hand with the range split "
              f"({m['create']['docker-macvlan']['ip_ranges']['a']} / {m['create']['docker-macvlan']['ip_ranges']['b']}); "
              f"pynet's `pmv` was created once, on A, and {appeared}. Both put the container's interface straight "
              "on the parent (bridge-mode macvlan), so the data path is the same kernel code; the figures "
              "show that pynet adds nothing to it.", ""]
    if m.get("cleanup_left"):
        lines += [f"**Left behind before the cluster was stopped:** {', '.join(m['cleanup_left'])}", ""]
    return "\n".join(lines)
