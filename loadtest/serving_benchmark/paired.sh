#!/usr/bin/env bash
# Two mlengine binaries, A and B, in alternating rounds (A B, B A, A B, ...): per round and binary
# one server, then Cloud ML REST (`wrk -t1 -c32`), KServe `ModelInfer` and TF Serving `Predict`
# (`h2load -c32 -m1 -t1`), KServe again as 32 streams on one connection (`-c1 -m32`), with the
# server's CPU per request from /proc. Prints every run and the medians, with B against A and
# gRPC against REST.
#
# On a shared machine the same run can differ by 2x from one minute to the next; alternating
# rounds spread that over both binaries, so their ratio means something where a report from
# another day's run does not. Not part of CI.
#
#   paired.sh A B [ROUNDS] [SECONDS]      e.g. paired.sh /tmp/mlengine-main target/release/mlengine 4 6
#
# Needs wrk, h2load and the load generator (target/release/loadgen, for the request bodies).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
a="$(realpath "$1")" b="$(realpath "$2")" rounds="${3:-4}" secs="${4:-6}"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
model="$root/models/census/export/Servo"
loadgen="$root/target/release/loadgen"
for tool in wrk h2load "$loadgen"; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
"$root/scripts/install-onnxruntime.sh" >/dev/null
# Both binaries use the same ONNX Runtime, wherever they lie.
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.ort/cpu/lib/libonnxruntime.so}"
work="$(mktemp -d "${TMPDIR:-/tmp}/paired.XXXXXX")"
pid=
trap '[[ -z "$pid" ]] || kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for protocol in cloudml grpc-kserve grpc-tfserving; do
  "$loadgen" body --protocol "$protocol" --data "$data" --out "$work/$protocol.body"
done
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "r")
wrk.body = f:read("*a")
LUA
tick="$(getconf CLK_TCK)"
cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One load run against $pid: prints "label scenario req/s cpu-µs-per-request".
measure() {
  local label=$1 scenario=$2 out ok c0 c1
  shift 2
  "$@" 2 >/dev/null # warm-up
  c0="$(cpu "$pid")"
  out="$("$@" "$secs")"
  c1="$(cpu "$pid")"
  case "$scenario" in
    rest) ok="$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")"
          ! grep -q "Non-2xx" <<<"$out" || { echo "error: failed requests: $out" >&2; exit 1; } ;;
    *) ok="$(sed -n 's/.* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' <<<"$out")"
       [[ "$(cut -d' ' -f2- <<<"$ok")" == "0 0" ]] || { echo "error: failed requests: $out" >&2; exit 1; }
       ok="${ok%% *}" ;;
  esac
  awk -v l="$label" -v s="$scenario" -v n="$ok" -v d="$secs" -v c0="$c0" -v c1="$c1" \
    'BEGIN { printf "%s %s %.0f %.1f\n", l, s, n / d, (c1 - c0) / n * 1e6 }' | tee -a "$work/runs"
}
wrk_rest() { BODY="$work/cloudml.body" wrk -t1 -c32 "-d$3s" -s "$work/post.lua" "http://127.0.0.1:$1$2"; }
# gRPC as the issue measured it (a connection per call, -c32 -m1) and as a gRPC client sends
# concurrent calls (streams on one channel's connection, -c1 -m32).
h2() { h2load -c32 -m1 -t1 "-D$4" -d "$work/$3.body" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1$2"; }
h2m() { h2load -c1 -m32 -t1 "-D$4" -d "$work/$3.body" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1$2"; }

round() {
  local label=$1 binary=$2 rest grpc
  rest="$(free_port)" grpc="$(free_port)"
  "$binary" serve --model-base-path "$model" --host 127.0.0.1 --rest-port "$rest" --grpc-port "$grpc" \
    --file-system-poll-wait-seconds 0 >"$work/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$rest/v2/health/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$rest/v2/health/ready" >/dev/null || { cat "$work/$label.log" >&2; exit 1; }
  measure "$label" rest wrk_rest "$rest" /v1/models/census:predict
  measure "$label" kserve-grpc h2 "$grpc" /inference.GRPCInferenceService/ModelInfer grpc-kserve
  measure "$label" tfserving-grpc h2 "$grpc" /tensorflow.serving.PredictionService/Predict grpc-tfserving
  measure "$label" kserve-grpc-m32 h2m "$grpc" /inference.GRPCInferenceService/ModelInfer grpc-kserve
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

echo "A: $a"
echo "B: $b"
echo "binary scenario req/s cpu_us_per_request"
for i in $(seq "$rounds"); do
  if ((i % 2)); then round A "$a"; round B "$b"; else round B "$b"; round A "$a"; fi
done
# Medians rather than means: one round disturbed by the host (a run at a third of the others'
# rate happens on these VMs) would move a mean by more than the difference being measured.
python3 - "$work/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, scenario, rps, cpu = line.split()
    runs.setdefault((label, scenario), []).append((float(rps), float(cpu)))
med = lambda key, i: statistics.median(r[i] for r in runs[key])
print(f"\nmedians over {len(runs[('A', 'rest')])} rounds")
print(f"{'scenario':16} {'A req/s':>10} {'A cpu':>8} {'B req/s':>10} {'B cpu':>8} {'B/A req':>9} "
      f"{'B/A cpu':>9} {'A of REST':>10} {'B of REST':>10}")
for s in ("rest", "kserve-grpc", "tfserving-grpc", "kserve-grpc-m32"):
    ra, ca, rb, cb = med(("A", s), 0), med(("A", s), 1), med(("B", s), 0), med(("B", s), 1)
    print(f"{s:16} {ra:10.0f} {ca:8.1f} {rb:10.0f} {cb:8.1f} {rb / ra:9.3f} {cb / ca:9.3f} "
          f"{ra / med(('A', 'rest'), 0):10.2f} {rb / med(('B', 'rest'), 0):10.2f}")
PY
