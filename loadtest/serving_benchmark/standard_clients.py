"""The serving benchmark with standard clients: wrk (HTTP/1.1) and h2load (HTTP/2, gRPC with a
prebuilt request body), beside loadgen's own numbers, so that no ratio rests on one client's
cost. Run by standard_clients.sh (which builds and sets up); not part of CI.

Each scenario runs against one server process: a warm-up, then the measured run, with the
server's CPU time (utime + stime of all its threads, from /proc/<pid>/stat) read before and after,
so CPU per request is server-side only. gRPC answers carry their status in trailers that h2load
does not read, so every gRPC run is checked against the server's own request counter by code
(`mlengine_requests_total` by status): a run with any answer but 200 (OK) is reported as failed.

The floors run after mlengine: the HTTP floor (axum) with the gRPC floor on tonic beside it, then
the gRPC floor on hyper's HTTP/2 alone, then on h2 without hyper, each answering a fixed census
prediction. The whole set runs `--rounds` times, each round on fresh servers, and the report
gives each figure's median: on a shared VM one run can differ from the next by half, so a single
pass of the scenarios in a row compares moments as much as servers. Ratios are also taken within each round (the servers a
few minutes apart rather than the length of the benchmark) and reported with their range.

One connection is measured three ways: on both cores, with server and client on one core, and
(as root) with every idle CPU polling rather than sleeping (Linux's PM QoS bound of 0 µs, held
by this script for the servers and the client alike), which takes the cost of waking an idle
virtual CPU out of the latency; bench-ort's raw run is timed hot and after 100 µs of sleep.

Writes loadtest/results/standard-clients.md and standard-clients.json.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")

LUA = r"""
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    def __init__(self, label, argv, ready_url, log):
        self.label = label
        self.log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(ready_url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{label} did not become ready (see {log})")
            time.sleep(0.1)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def grpc_non_ok(metrics_url):
    """Requests the server answered with a code other than OK, by its own counter."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    bad = 0.0
    for line in text.splitlines():
        if line.startswith("mlengine_requests_total{") and 'status="200"' not in line:
            bad += float(line.rsplit(" ", 1)[1])
    return bad


def inference_seconds(metrics_url):
    """The server's own time in ONNX Runtime (and its queue): sum and count of
    mlengine_inference_duration_seconds, over every version."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for key in total:
            if line.startswith(f"mlengine_inference_duration_seconds_{key}{{"):
                total[key] += float(line.rsplit(" ", 1)[1])
    return total


def wrk(url, body, connections, threads, seconds, prefix=()):
    out = subprocess.run(
        [*prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         LUA_PATH, url],
        capture_output=True, text=True, env={**os.environ, "BODY": body}, check=True,
        timeout=seconds + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["ok"] = r["requests"] - r["non2xx"]
    r["rps"] = r["ok"] / (r["duration_us"] / 1e6)
    r["failed"] = r["non2xx"] + r["socket_errors"]
    return r


def h2load(url, body, connections, threads, seconds, streams=1, prefix=()):
    out = subprocess.run(
        [*prefix, "h2load", f"-c{connections}", f"-m{streams}", f"-t{threads}", f"-D{seconds}",
         "-d", body,
         "-H", "content-type: application/grpc", "-H", "te: trailers", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored", out)
    secs = re.search(r"finished in ([\d.]+)s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    r = {"requests": int(done.group(1)), "ok": int(done.group(2)),
         "failed": int(done.group(3)) + int(done.group(4)), "duration_us": float(secs.group(1)) * 1e6}
    r["rps"] = r["ok"] / float(secs.group(1))
    r["mean"] = mean.group(1) if mean else None
    return r


def measure(server, name, client, run, seconds, warmup, metrics_url=None):
    run(warmup)
    before_bad = grpc_non_ok(metrics_url) if metrics_url else 0
    cpu0 = cpu_seconds(server.proc.pid)
    r = run(seconds)
    cpu1 = cpu_seconds(server.proc.pid)
    if metrics_url:
        r["grpc_non_ok"] = grpc_non_ok(metrics_url) - before_bad
        r["failed"] += int(r["grpc_non_ok"])
    r["server_cpu_s"] = cpu1 - cpu0
    r["cpu_us_per_request"] = (cpu1 - cpu0) / r["ok"] * 1e6 if r["ok"] else None
    r.update({"server": server.label, "scenario": name, "client": client})
    print(f"  {server.label:9} {name:22} {client:7} {r['rps']:>10.0f} req/s"
          f"  cpu {r['cpu_us_per_request'] or 0:6.1f} us/req  failed {r['failed']}"
          + (f"  p50 {r['p50_us']} us" if "p50_us" in r else ""), flush=True)
    return r


ONE_CORE = "-one-core"
POLLING = "-cpus-polling"
CPU_LATENCY = "/dev/cpu_dma_latency"


@contextlib.contextmanager
def cpus_polling():
    """Holds Linux's PM QoS bound of 0 µs while open: idle CPUs poll instead of sleeping, so a
    request finds its core awake (what `mlengine serve --cpu-latency-us 0` asks for, here held
    by the benchmark so the floor and the client get it too). Only where `can_poll()`."""
    fd = os.open(CPU_LATENCY, os.O_WRONLY)
    try:
        os.write(fd, (0).to_bytes(4, sys.byteorder, signed=True))
        yield
    finally:
        os.close(fd)


def can_poll():
    return os.access(CPU_LATENCY, os.W_OK)


def measure_one_connection(server, name, run, a, metrics):
    """One connection, with the server's mean run time during the measured run beside its p50:
    the raw run timed in the same process at the same moment (bench-ort's, timed minutes apart,
    drifts on a shared VM)."""
    before = inference_seconds(metrics) if metrics else None
    r = measure(server, name, "wrk", run, a.seconds, a.warmup)
    if before:
        after = inference_seconds(metrics)
        n = after["count"] - before["count"]
        r["server_run_mean_us"] = (after["sum"] - before["sum"]) / n * 1e6 if n else None
    return r


def pin(pid, cpus):
    """Sets the CPU affinity of every thread of `pid`."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=True)


def run_all(a, server, scenarios, bodies, metrics):
    out = []
    for name, url, body, connections, threads, *streams in scenarios:
        if body.startswith("grpc"):
            run = lambda s: h2load(url, bodies[body], connections, threads, s,  # noqa: E731
                                   streams=streams[0] if streams else 1)
            out.append(measure(server, name, "h2load", run, a.seconds, a.warmup, metrics))
        elif name.endswith(POLLING):
            run = lambda s: wrk(url, bodies[body], connections, threads, s)  # noqa: E731
            with cpus_polling():
                out.append(measure_one_connection(server, name, run, a, metrics))
        elif name.endswith(ONE_CORE):
            # Server and client on core 0: no idle virtual CPU to wake between them, which on a
            # VM can cost more than the request itself.
            everywhere = ",".join(str(c) for c in sorted(os.sched_getaffinity(server.proc.pid)))
            pin(server.proc.pid, "0")
            try:
                run = lambda s: wrk(url, bodies[body], connections, threads, s,  # noqa: E731
                                    prefix=("taskset", "-c", "0"))
                out.append(measure_one_connection(server, name, run, a, metrics))
            finally:
                pin(server.proc.pid, everywhere)
        elif connections == 1:
            run = lambda s: wrk(url, bodies[body], connections, threads, s)  # noqa: E731
            out.append(measure_one_connection(server, name, run, a, metrics))
        else:
            run = lambda s: wrk(url, bodies[body], connections, threads, s)  # noqa: E731
            out.append(measure(server, name, "wrk", run, a.seconds, a.warmup))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mlengine", required=True)
    p.add_argument("--floor", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--model-base", default="models/census/export/Servo")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--server-args", default="")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()

    global LUA_PATH
    LUA_PATH = os.path.join(a.work, "post.lua")
    with open(LUA_PATH, "w") as f:
        f.write(LUA)
    bodies = {}
    for protocol in ("cloudml", "kserve", "grpc-kserve", "grpc-tfserving"):
        bodies[protocol] = os.path.join(a.work, f"{protocol}.body")
        subprocess.run([a.loadgen, "body", "--protocol", protocol, "--data", a.data,
                        "--out", bodies[protocol]], check=True)

    bench_ort = [a.mlengine, "bench-ort", "--model-dir", a.model_base, "--batch-sizes", "1",
                 "--json", "--seconds", "3"]
    # The raw run is timed before and after the servers: on a shared VM it drifts within the hour.
    raw_runs = {"raw": [], "one_core": [], "after_idle": [], "after_idle_polling": []}
    # A run after 100 µs of sleep, as a lone client's requests find the server: on a VM without
    # guest halt polling the wake-up cools what a hot loop keeps warm.
    after_idle = [*bench_ort, "--pause-us", "100"]

    def time_raw_runs():
        for key, argv, prefix in (("raw", bench_ort, []),
                                  ("one_core", bench_ort, ["taskset", "-c", "0"]),
                                  ("after_idle", after_idle, []),
                                  ("after_idle_polling", after_idle, [])):
            if key.endswith("polling") and not can_poll():
                continue
            with cpus_polling() if key.endswith("polling") else contextlib.nullcontext():
                out = subprocess.run([*prefix, *argv], capture_output=True, text=True,
                                     check=True).stdout
            raw_runs[key].append(json.loads(out))

    time_raw_runs()

    results = []
    for round_ in range(1, a.rounds + 1):
        print(f"round {round_} of {a.rounds}", flush=True)
        results += [{**r, "round": round_} for r in run_round(a, bodies)]

    time_raw_runs()
    report(a, results, raw_runs)


def run_round(a, bodies):
    """mlengine's scenarios, then the floors', each server started afresh."""
    results = []
    rest, grpc = free_port(), free_port()
    ml = Server("mlengine", [a.mlengine, "serve", "--model-base-path", a.model_base,
                             "--host", "127.0.0.1", "--rest-port", str(rest),
                             "--grpc-port", str(grpc), "--file-system-poll-wait-seconds", "0",
                             *a.server_args.split()],
                f"http://127.0.0.1:{rest}/v2/health/ready", os.path.join(a.work, "mlengine.log"))
    base = f"http://127.0.0.1:{rest}"
    metrics = f"{base}/metrics"
    # (scenario, url, body, connections, client threads[, streams per connection]); gRPC paths
    # go to h2load. `-c32 -m1` gives each call its own connection, as the issue measured it;
    # `-c1 -m32` is how a gRPC client sends concurrent calls (grpcio, tritonclient and TF
    # Serving's clients multiplex them as streams on one channel's HTTP/2 connection).
    cloudml = f"{base}/v1/models/census:predict"
    grpc_base = f"http://127.0.0.1:{grpc}"
    kserve_grpc = f"{grpc_base}/inference.GRPCInferenceService/ModelInfer"
    tfserving_grpc = f"{grpc_base}/tensorflow.serving.PredictionService/Predict"
    scenarios = [
        ("cloudml-rest-c32", cloudml, "cloudml", 32, 1),
        ("cloudml-rest-c32-t2", cloudml, "cloudml", 32, 2),
        ("kserve-rest-c32", f"{base}/v2/models/census/infer", "kserve", 32, 1),
        ("kserve-grpc-c32", kserve_grpc, "grpc-kserve", 32, 1),
        ("tfserving-grpc-c32", tfserving_grpc, "grpc-tfserving", 32, 1),
        ("kserve-grpc-m32", kserve_grpc, "grpc-kserve", 1, 1, 32),
        ("tfserving-grpc-m32", tfserving_grpc, "grpc-tfserving", 1, 1, 32),
        ("cloudml-rest-c1", cloudml, "cloudml", 1, 1),
        ("cloudml-rest-c1" + ONE_CORE, cloudml, "cloudml", 1, 1),
    ]
    if can_poll():
        scenarios.append(("cloudml-rest-c1" + POLLING, cloudml, "cloudml", 1, 1))
    try:
        results += run_all(a, ml, scenarios, bodies, metrics)
    finally:
        ml.stop()

    # The floors: HTTP (axum) with the gRPC floor on tonic beside it, then the gRPC floor on
    # hyper's HTTP/2 alone, then on h2 without hyper.
    for label, stack in (("floor", "tonic"), ("floor-hyper", "hyper"), ("floor-h2", "h2")):
        port, gport = free_port(), free_port()
        floor = Server(label, [a.floor, "--port", str(port), "--threads", "1",
                               "--grpc-port", str(gport), "--grpc-stack", stack],
                       f"http://127.0.0.1:{port}/v2/health/ready",
                       os.path.join(a.work, f"{label}.log"))
        url = f"http://127.0.0.1:{port}/v1/models/census:predict"
        grpc_url = f"http://127.0.0.1:{gport}/inference.GRPCInferenceService/ModelInfer"
        http = [(name, url, "cloudml", c, t) for name, _, _, c, t, *_ in scenarios
                if name.startswith("cloudml")] if stack == "tonic" else []
        grpc_runs = [("kserve-grpc-c32", grpc_url, "grpc-kserve", 32, 1)]
        if stack in ("hyper", "h2"):
            grpc_runs.append(("kserve-grpc-m32", grpc_url, "grpc-kserve", 1, 1, 32))
        try:
            results += run_all(a, floor, http + grpc_runs, bodies, None)
        finally:
            floor.stop()

    return results


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def medians(results):
    """One result per (server, scenario): the median of each figure over the rounds, failures
    summed, the req/s of each round kept."""
    groups = {}
    for r in results:
        groups.setdefault((r["server"], r["scenario"]), []).append(r)
    by = {}
    for key, runs in groups.items():
        m = dict(runs[0])
        for field in ("rps", "cpu_us_per_request", "p50_us", "p99_us", "server_run_mean_us"):
            values = [r[field] for r in runs if r.get(field) is not None]
            if values:
                m[field] = median(values)
        m["failed"] = sum(r["failed"] for r in runs)
        m["rps_rounds"] = [r["rps"] for r in runs]
        by[key] = m
    return by


def round_ratios(results, top, bottom):
    """`top` over `bottom` (each a (server, scenario) pair), req/s within each round."""
    rps = {(r["round"], r["server"], r["scenario"]): r["rps"] for r in results}
    rounds = sorted({r["round"] for r in results})
    return [rps[(n, *top)] / rps[(n, *bottom)] for n in rounds
            if (n, *top) in rps and (n, *bottom) in rps and rps[(n, *bottom)]]


def report(a, results, raw_runs):
    by = medians(results)
    p50s = {k: [run["results"][0]["p50_us"] for run in runs] for k, runs in raw_runs.items()}
    mean = {k: sum(v) / len(v) for k, v in p50s.items() if v}
    raw_us, raw_one_us = mean["raw"], mean["one_core"]
    spread = {k: " and ".join(f"{x:.1f}" for x in v) for k, v in p50s.items()}
    m, f = (lambda s: by[("mlengine", s)]), (lambda s: by[("floor", s)])
    rest = m("cloudml-rest-c32")
    rows = []
    for s in ("cloudml-rest-c32", "kserve-rest-c32", "kserve-grpc-c32", "tfserving-grpc-c32",
              "kserve-grpc-m32", "tfserving-grpc-m32"):
        r = m(s)
        rows.append(f"| {s} | {r['client']} | {r['rps']:,.0f} | {r['rps'] / rest['rps']:.2f} | "
                    f"{r['cpu_us_per_request']:.1f} | {r['cpu_us_per_request'] / rest['cpu_us_per_request']:.2f} | {r['failed']} |")
    floor_ratio = m("cloudml-rest-c32")["rps"] / f("cloudml-rest-c32")["rps"]
    floor_ratio_t2 = m("cloudml-rest-c32-t2")["rps"] / f("cloudml-rest-c32-t2")["rps"]
    p50, floor_p50 = m("cloudml-rest-c1")["p50_us"], f("cloudml-rest-c1")["p50_us"]
    overhead = p50 - floor_p50 - raw_us
    p50_one, floor_p50_one = m("cloudml-rest-c1" + ONE_CORE)["p50_us"], f("cloudml-rest-c1" + ONE_CORE)["p50_us"]
    overhead_one = p50_one - floor_p50_one - raw_one_us
    run_c1 = m("cloudml-rest-c1").get("server_run_mean_us") or 0
    run_one = m("cloudml-rest-c1" + ONE_CORE).get("server_run_mean_us") or 0
    if ("mlengine", "cloudml-rest-c1" + POLLING) in by:
        mp, fp = m("cloudml-rest-c1" + POLLING), f("cloudml-rest-c1" + POLLING)
        run_p = mp.get("server_run_mean_us") or 0
        polling = f"""With every CPU polling when idle (the benchmark holds Linux's PM QoS bound of 0 µs on
`{CPU_LATENCY}` for both servers and the client, as `mlengine serve --cpu-latency-us 0`
would for the server): p50 {mp['p50_us']} µs, floor {fp['p50_us']} µs; server overhead
{mp['p50_us'] - fp['p50_us'] - raw_us:.1f} µs against bench-ort's run, {mp['p50_us'] - fp['p50_us'] - run_p:.1f} µs against the server's own
({run_p:.1f} µs). A raw run after 100 µs of sleep (`bench-ort --pause-us 100`): {mean['after_idle']:.1f} µs
({spread['after_idle']}), with the CPUs polling {mean.get('after_idle_polling', 0):.1f} µs ({spread['after_idle_polling']}).
"""
    else:
        polling = f"""Not measured with idle CPUs polling: `{CPU_LATENCY}` needs root. A raw run after 100 µs
of sleep (`bench-ort --pause-us 100`): {mean['after_idle']:.1f} µs ({spread['after_idle']}).
"""
    g, gt, gh = m("kserve-grpc-c32"), f("kserve-grpc-c32"), by[("floor-hyper", "kserve-grpc-c32")]
    gm, ghm = m("kserve-grpc-m32"), by[("floor-hyper", "kserve-grpc-m32")]
    g2, g2m = by.get(("floor-h2", "kserve-grpc-c32")), by.get(("floor-h2", "kserve-grpc-m32"))
    grpc_rows = "\n".join(
        f"| {what} | {r['rps']:,.0f} | {r['rps'] / rest['rps']:.2f} | {r['cpu_us_per_request']:.1f} | "
        f"{r['cpu_us_per_request'] / rest['cpu_us_per_request']:.2f} |"
        for what, r in (("mlengine (the census model; hot calls on hyper, read in place)", g),
                        ("floor on tonic (fixed answer)", gt),
                        ("floor on hyper's HTTP/2 alone (fixed answer)", gh),
                        ("mlengine, 32 streams on one connection (`-c1 -m32`)", gm),
                        ("floor on hyper's HTTP/2 alone, 32 streams on one connection", ghm),
                        ("floor on h2 without hyper (one task per connection)", g2),
                        ("floor on h2 without hyper, 32 streams on one connection", g2m))
        if r is not None)
    ml, fl, fh = "mlengine", "floor", "floor-hyper"
    pairs = (
        ("KServe gRPC / Cloud ML REST", (ml, "kserve-grpc-c32"), (ml, "cloudml-rest-c32")),
        ("TF Serving gRPC / Cloud ML REST", (ml, "tfserving-grpc-c32"), (ml, "cloudml-rest-c32")),
        ("KServe gRPC, 32 streams on one connection / Cloud ML REST", (ml, "kserve-grpc-m32"),
         (ml, "cloudml-rest-c32")),
        ("TF Serving gRPC, 32 streams on one connection / Cloud ML REST",
         (ml, "tfserving-grpc-m32"), (ml, "cloudml-rest-c32")),
        ("KServe REST / Cloud ML REST", (ml, "kserve-rest-c32"), (ml, "cloudml-rest-c32")),
        ("Cloud ML REST / HTTP floor (`wrk -t1`)", (ml, "cloudml-rest-c32"), (fl, "cloudml-rest-c32")),
        ("KServe gRPC / hyper's HTTP/2 floor", (ml, "kserve-grpc-c32"), (fh, "kserve-grpc-c32")),
        ("KServe gRPC / hyper's HTTP/2 floor, 32 streams on one connection",
         (ml, "kserve-grpc-m32"), (fh, "kserve-grpc-m32")),
    )
    ratio_rows = []
    for what, top, bottom in pairs:
        ratios = round_ratios(results, top, bottom)
        if ratios:
            ratio_rows.append(f"| {what} | {median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |")
    rounds = len({r["round"] for r in results})
    machine = subprocess.run(["sh", "-c", "nproc; sed -n 's/^model name\\s*: //p' /proc/cpuinfo | head -n 1"],
                             capture_output=True, text=True).stdout.split("\n")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    text = f"""# Serving with standard clients (wrk, h2load)

{machine[0]} cores ({machine[1]}); mlengine {commit}; clients on the same cores; {a.seconds} s runs after
{a.warmup} s of warm-up; one census instance per request; server flags: `{a.server_args or '(defaults)'}`.
Each figure is the median of {rounds} rounds (each round: mlengine's scenarios, then the floors,
on fresh servers). Written by `loadtest/serving_benchmark/standard_clients.sh`
({time.strftime('%Y-%m-%d', time.gmtime())}).

## 32 concurrent requests (one client thread)

`-c32` scenarios open 32 connections with one request at a time on each (`wrk -c32`,
`h2load -c32 -m1`); the `-m32` ones send 32 concurrent gRPC calls as streams on one connection
(`h2load -c1 -m32`), which is how grpcio, tritonclient and TF Serving's clients send them on a
channel.

| scenario | client | req/s | of Cloud ML REST | server CPU µs/req | of Cloud ML REST | failed |
|---|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Ratios of req/s taken within each round (servers minutes apart, not the benchmark's length):

| ratio | median | range over the rounds |
|---|---:|---:|
{chr(10).join(ratio_rows)}

## Against the HTTP floor

| | mlengine req/s | floor req/s | ratio |
|---|---:|---:|---:|
| Cloud ML REST, `wrk -t1 -c32` | {m('cloudml-rest-c32')['rps']:,.0f} | {f('cloudml-rest-c32')['rps']:,.0f} | {floor_ratio:.2f} |
| Cloud ML REST, `wrk -t2 -c32` | {m('cloudml-rest-c32-t2')['rps']:,.0f} | {f('cloudml-rest-c32-t2')['rps']:,.0f} | {floor_ratio_t2:.2f} |

## gRPC against its floors (KServe `ModelInfer`, `h2load -c32 -m1 -t1` unless named)

Both floors answer a fixed census prediction without a model; the tonic floor decodes each
request with prost as any tonic service does, the hyper floor only reads the body, and the h2
floor does the same on h2 without hyper: one task per connection accepts its streams and answers
them itself, where hyper runs a task per stream beside the connection's.

| server | req/s | of mlengine's Cloud ML REST | server CPU µs/req | of mlengine's Cloud ML REST |
|---|---:|---:|---:|---:|
{grpc_rows}

One connection (`wrk -t1 -c1`): p50 {p50} µs, floor {floor_p50} µs, raw ONNX Runtime run of one
row {raw_us:.1f} µs (`bench-ort`, the mean of {spread['raw']} µs timed before and after the servers):
server overhead {overhead:.1f} µs. The same with server and client on one core (`taskset -c 0`, so
that no idle virtual CPU is woken between them): p50 {p50_one} µs, floor {floor_p50_one} µs, raw run
{raw_one_us:.1f} µs ({spread['one_core']}): server overhead {overhead_one:.1f} µs.

The raw run as the server itself timed it during those runs (the mean of
`mlengine_inference_duration_seconds`): {run_c1:.1f} µs on both cores, {run_one:.1f} µs on one; the
overhead against it: {p50 - floor_p50 - run_c1:.1f} µs and {p50_one - floor_p50_one - run_one:.1f} µs.

{polling}"""
    with open(os.path.join(a.out, "standard-clients.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(a.out, "standard-clients.json"), "w") as fh:
        json.dump({"results": results, "raw_ort": raw_runs}, fh, indent=1)
    print(text)


if __name__ == "__main__":
    main()
