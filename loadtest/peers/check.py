"""Checks a running peer against onnxruntime run directly, and times one connection.

    .venv-<peer>/bin/python loadtest/peers/check.py PEER MODEL.onnx HTTP_PORT GRPC_PORT [N]

Reads the peer's row from peers.tsv, sends the first rows of models/census/test.json in its
protocol (1 row, then 3 rows in one request), compares every output with a local onnxruntime
session (tolerance 1e-5), does the same over gRPC when the peer speaks KServe v2 gRPC (with
tritonclient, i.e. raw tensor contents), then sends N (default 200) one-row requests over one
keep-alive HTTP connection and prints the latency percentiles. Exit status 1 on any mismatch.
"""
from __future__ import annotations

import http.client
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TOL = 1e-5


def peer_row(name: str) -> dict:
    for line in (HERE / "peers.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        cols = line.split("\t")
        if cols[0] == name:
            return dict(zip(["name", "protocol", "predict_path", "ready_path", "grpc_protocol"], cols))
    raise SystemExit(f"peer {name} not in peers.tsv")


def reference(model: str, rows: list[dict]) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.array([r[i.name] for r in rows], dtype=object if i.type == "tensor(string)" else np.int64)
             for i in s.get_inputs()}
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def kserve_body(rows: list[dict], two_d: bool) -> dict:
    shape = [len(rows), 1] if two_d else [len(rows)]
    return {"inputs": [{"name": k, "shape": shape, "datatype": "BYTES" if isinstance(v, str) else "INT64",
                        "data": [r[k] for r in rows]} for k, v in rows[0].items()]}


def http_body(protocol: str, rows: list[dict]) -> bytes:
    if protocol == "cloudml":
        return json.dumps({"instances": rows}).encode()
    return json.dumps(kserve_body(rows, protocol == "kserve-2d")).encode()


def parse(protocol: str, answer: dict, n: int) -> dict[str, np.ndarray]:
    if protocol == "cloudml":
        preds = answer["predictions"]
        assert len(preds) == n, answer
        return {k: np.array([p[k] for p in preds]) for k in preds[0]}
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def compare(label: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> bool:
    ok = True
    for name, w in want.items():
        g = got.get(name)
        if g is None:
            print(f"  {label}: output {name} missing")
            ok = False
            continue
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        diff = float(np.max(np.abs(g - w))) if g.shape == w.shape else float("inf")
        if diff > TOL:
            print(f"  {label}: {name} differs: got {g.tolist()} want {w.tolist()}")
            ok = False
    p1 = np.asarray(got.get("probabilities", [[0, 0]])).reshape(-1, 2)[:, 1].tolist()
    print(f"  {label}: {'MATCH' if ok else 'MISMATCH'} (p1 = {p1})")
    return ok


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> dict:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def grpc_check(protocol: str, port: int, rows: list[dict], want: dict) -> bool:
    import tritonclient.grpc as tc

    client = tc.InferenceServerClient(url=f"127.0.0.1:{port}")
    assert client.is_model_ready("census"), "gRPC ModelReady false"
    inputs = []
    for k, v in rows[0].items():
        shape = [len(rows), 1] if protocol == "kserve-2d" else [len(rows)]
        arr = np.array([r[k] for r in rows], dtype=object if isinstance(v, str) else np.int64).reshape(shape)
        i = tc.InferInput(k, shape, "BYTES" if isinstance(v, str) else "INT64")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    res = client.infer("census", inputs)
    got = {name: res.as_numpy(name) for name in want}
    ok = compare(f"gRPC ModelInfer ({len(rows)} row)", got, want)
    t = []
    for _ in range(200):
        t0 = time.perf_counter()
        client.infer("census", inputs)
        t.append(time.perf_counter() - t0)
    print(f"  gRPC 1 connection, 200 sequential: p50 {statistics.median(t)*1e3:.2f} ms, "
          f"mean {statistics.mean(t)*1e3:.2f} ms")
    return ok


def main() -> None:
    name, model, http_port, grpc_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    peer = peer_row(name)
    protocol = peer["protocol"]
    with open(ROOT / "models/census/test.json") as f:
        rows = [json.loads(next(f)) for _ in range(3)]
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    ok = True
    for batch in (rows[:1], rows):
        got = parse(protocol, post(conn, peer["predict_path"], http_body(protocol, batch)), len(batch))
        ok &= compare(f"HTTP {protocol} ({len(batch)} row)", got, reference(model, batch))
    body = http_body(protocol, rows[:1])
    for _ in range(20):
        post(conn, peer["predict_path"], body)
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        post(conn, peer["predict_path"], body)
        t.append(time.perf_counter() - t0)
    t.sort()
    print(f"  HTTP 1 connection, {n} sequential: p50 {statistics.median(t)*1e3:.2f} ms, "
          f"p90 {t[int(0.9*n)]*1e3:.2f} ms, mean {statistics.mean(t)*1e3:.2f} ms")
    if peer["grpc_protocol"] != "-":
        ok &= grpc_check(peer["grpc_protocol"], grpc_port, rows[:1], reference(model, rows[:1]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
