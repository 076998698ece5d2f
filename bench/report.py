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
