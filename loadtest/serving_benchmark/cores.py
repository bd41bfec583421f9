"""Serving throughput against the cores the server may use: the thread defaults (derived from the
affinity mask, src/server/threads.rs) beside the same with the workers' default scheduling policy
(`--worker-scheduling normal`) and the fixed 1/1/1 of a 2-core machine, at 1, 2, 4, 8 and 16
cores where the machine has them. Run by cores.sh here and by loadtest/device/cores.sh on
a bigger machine; not part of CI.

The server is started under `taskset` on the first n usable cores, so that its own count of
usable cores (the `mlengine_threads{kind="cores"}` gauge, read back) is n. The clients (wrk for
Cloud ML REST, h2load for KServe gRPC) run on the cores left over when there are any, else on the
same cores (the report says which). A sandbox may accept an affinity mask without enforcing it;
the busy cores column (server CPU seconds over wall seconds) shows whether the server stayed
within n.

Writes cores.json and cores.md into --out.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standard_clients as sc  # noqa: E402

SCENARIOS = [
    # name, protocol body, connections
    ("rest-c32", "cloudml", 32),
    ("rest-c256", "cloudml", 256),
    ("grpc-c32", "grpc-kserve", 32),
    ("grpc-c256", "grpc-kserve", 256),
]


def thread_gauges(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return {m.group(1): int(float(m.group(2)))
            for m in re.finditer(r'^mlengine_threads\{kind="(\w+)"\} (\S+)$', text, re.M)}


def configs_for(n, names):
    """(label, extra server flags) for n cores; the fixed split only where it differs from the
    default."""
    out = []
    for name in names:
        if name == "default":
            out.append(("default", []))
        elif name == "fixed-1" and n > 2:
            out.append(("fixed-1", ["--http-threads", "1", "--workers", "1",
                                    "--intra-op-threads", "1"]))
        elif name in ("batch", "normal"):
            # The default thread counts under one policy each; serve's default is one of the two
            # (batch where http + workers x intra-op outnumber the cores).
            out.append((name, ["--worker-scheduling", name]))
        elif name == "half" and n >= 4:
            out.append(("half", ["--http-threads", str(n // 2), "--workers", str(n - n // 2)]))
    return out


def run_one(a, n, label, flags, server_cpus, client_cpus, shared, bodies, round_):
    rest, grpc = sc.free_port(), sc.free_port()
    cpus = ",".join(map(str, server_cpus))
    server = sc.Server(f"mlengine-{n}-{label}",
                       ["taskset", "-c", cpus, a.mlengine, "serve", "--model-base-path",
                        a.model_base, "--host", "127.0.0.1", "--rest-port", str(rest),
                        "--grpc-port", str(grpc), "--file-system-poll-wait-seconds", "0", *flags],
                       f"http://127.0.0.1:{rest}/v2/health/ready",
                       os.path.join(a.work, f"mlengine-{n}-{label}.log"))
    metrics = f"http://127.0.0.1:{rest}/metrics"
    prefix = ("taskset", "-c", ",".join(map(str, client_cpus)))
    # One client thread per client core, up to 8. Sharing the server's cores, one per four cores:
    # one on two cores, as the 2-core benchmark runs them, and enough to load sixteen.
    threads = max(1, len(client_cpus) // 4) if shared else max(1, min(len(client_cpus), 8))
    results = []
    try:
        gauges = thread_gauges(metrics)
        for name, body, connections in SCENARIOS:
            t = min(threads, connections)
            try:
                r = scenario(a, server, name, body, connections, t, rest, grpc, prefix, bodies,
                             metrics)
            except subprocess.TimeoutExpired:
                # A client that overruns its time is left out (h2load once kept a warm-up
                # going for minutes); the rest of the sweep still runs.
                print(f"  {server.label} {name}: the client overran its time; left out", flush=True)
                continue
            r["busy_cores"] = r["server_cpu_s"] / (r["duration_us"] / 1e6)
            r.update({"cores": n, "config": label, "threads": gauges, "client_threads": t,
                      "client_cpus": len(client_cpus), "shared": shared, "round": round_})
            results.append(r)
    finally:
        server.stop()
    return results


def scenario(a, server, name, body, connections, t, rest, grpc, prefix, bodies, metrics):
    if body.startswith("grpc"):
        url = f"http://127.0.0.1:{grpc}/inference.GRPCInferenceService/ModelInfer"
        run = lambda s: sc.h2load(url, bodies[body], connections, t, s, prefix)  # noqa: E731
        return sc.measure(server, name, "h2load", run, a.seconds, a.warmup, metrics)
    url = f"http://127.0.0.1:{rest}/v1/models/census:predict"
    run = lambda s: sc.wrk(url, bodies[body], connections, t, s, prefix)  # noqa: E731
    return sc.measure(server, name, "wrk", run, a.seconds, a.warmup)


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def report(a, results, usable):
    groups = {}
    for r in results:
        groups.setdefault((r["cores"], r["config"]), {}).setdefault(r["scenario"], []).append(r)
    lines = [
        "# Serving throughput against usable cores",
        "",
        f"Machine: {a.machine or 'not given'}; {len(usable)} usable cores. The server on the first "
        "n cores (`taskset`), Cloud ML REST with `wrk`, KServe gRPC with `h2load -m1`, one "
        f"instance per request; medians of {a.rounds} round(s) of {a.seconds} s. "
        "`threads` is http / session workers / intra-op as the server reported them "
        "(`mlengine_threads`); `busy` is the server's CPU seconds per wall second during REST at "
        "256 connections (at most n if the affinity mask holds). `batch` and `normal` are the "
        "default thread counts with session workers under `SCHED_BATCH` or the default policy; "
        "serve's default is `batch` where http + workers x intra-op outnumber the cores, "
        "`normal` elsewhere.",
        "",
        "| cores | config | threads | clients | REST c32 | REST c256 | gRPC c32 | gRPC c256 "
        "| CPU µs/req (REST c256) | busy | failed |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (n, config), by in sorted(groups.items()):
        first = next(iter(by.values()))[0]
        g = first["threads"]
        threads = f"{g.get('http', '?')} / {g.get('session_workers', '?')} / {g.get('intra_op', '?')}"
        clients = ("same cores" if first["shared"] else f"{first['client_cpus']} other cores") + \
            f", {first['client_threads']} thread(s)"
        rps = {s: median([r["rps"] for r in runs]) for s, runs in by.items()}
        big = by.get("rest-c256", [])
        cpu = median([r["cpu_us_per_request"] for r in big if r["cpu_us_per_request"]]) if big else 0
        busy = median([r["busy_cores"] for r in big]) if big else 0
        failed = sum(r["failed"] for runs in by.values() for r in runs)
        lines.append(f"| {n} | {config} | {threads} | {clients} | "
                     + " | ".join(f"{rps.get(s, 0):,.0f}" for s, _, _ in SCENARIOS)
                     + f" | {cpu:.1f} | {busy:.2f} | {failed} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "cores.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "cores.json"), "w") as f:
        json.dump({"usable_cores": len(usable), "machine": a.machine, "seconds": a.seconds,
                   "rounds": a.rounds, "results": results}, f, indent=1)
    print(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mlengine", required=True)
    p.add_argument("--model-base", required=True)
    p.add_argument("--bodies", required=True, help="folder with cloudml.body and grpc-kserve.body")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cores", default="1,2,4,8,16", help="core counts, those above the usable skipped")
    p.add_argument("--configs", default="batch,normal,fixed-1",
                   help="of default, batch, normal, fixed-1, half")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default="")
    a = p.parse_args()

    sc.LUA_PATH = os.path.join(a.work, "post.lua")
    with open(sc.LUA_PATH, "w") as f:
        f.write(sc.LUA)
    bodies = {b: os.path.join(a.bodies, f"{b}.body") for b in ("cloudml", "grpc-kserve")}
    usable = sorted(os.sched_getaffinity(0))
    counts = [n for n in map(int, a.cores.split(",")) if n <= len(usable)]
    results = []
    for round_ in range(1, a.rounds + 1):
        print(f"round {round_} of {a.rounds}", flush=True)
        for n in counts:
            server_cpus, rest = usable[:n], usable[n:]
            shared = not rest
            client_cpus = usable if shared else rest
            for label, flags in configs_for(n, a.configs.split(",")):
                results += run_one(a, n, label, flags, server_cpus, client_cpus, shared, bodies,
                                   round_)
    report(a, results, usable)


if __name__ == "__main__":
    main()
