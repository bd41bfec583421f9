#!/usr/bin/env bash
# Serving benchmark: mlengine serve against the HTTP floor (a minimal axum server answering a fixed
# prediction) and the peer servers of loadtest/peers/, one server at a time on this machine, each
# loaded by `loadgen` (loadtest/, Rust) with real rows of adult.test. Not part of CI.
#
# Per server: start it in its own process group, time readiness (wait-ready), record idle RSS,
# run the scenarios, stop the whole group. Scenarios (DURATION s measured after WARMUP s):
#   http-c32  HTTP JSON, one instance per request, 32 connections, closed loop
#   http-c1   the same with one connection
#   grpc-c32  gRPC KServe v2 and TF Serving (mlengine), gRPC KServe (peers that have it)
#   open-80   open loop at 80% of mlengine's http-c32 Cloud ML throughput (peers: PEER_OPEN=1)
#   open-200  open loop at 2x that: rejection speed, accepted p99, peak RSS
#   idle-rss  RSS after start, before load, with the readiness time
# Results: loadtest/results/serving/*.json and *.svg, report loadtest/results/serving-benchmark.md.
#
#   DURATION=10 WARMUP=2   seconds per run          QUICK=1       3 s runs, 1 s warm-up (smoke)
#   PEERS="a b"            peers to run (default: every peer in loadtest/peers/peers.tsv; PEERS= for none)
#   PEER_OPEN=1            also run open-80 against each peer at 80% of its own http-c32 throughput
#   MLENGINE_ARGS="..."    extra flags for `mlengine serve` (e.g. batching flags)
#   OPEN_LOW=0.8 OPEN_HIGH=2.0  open-80 / open-200 rates as fractions of mlengine's http-c32 throughput
#   OPEN_CONNECTIONS=512   connection pool of the open-loop runs (must exceed the server's queue
#                          for rejection to show); LOADGEN_THREADS=1 generator threads
#   KEEP_LOGS=1            keep the servers' logs (printed path) even on success
#   SKIP_BUILD=1           use the binaries already in target/release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
if [[ "${QUICK:-}" == 1 ]]; then
  duration=3
  warmup=1
fi
open_connections="${OPEN_CONNECTIONS:-512}"
threads="${LOADGEN_THREADS:-1}"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
results="$root/loadtest/results/serving"
model_base=models/census/export/Servo
peers_dir="$root/loadtest/peers"
read -r -a mlengine_args <<< "${MLENGINE_ARGS:-}"

[[ -f "$data" ]] || { echo "error: census data not found: $data (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }

source "$here/lib.sh"

build_release
floor="$root/target/release/floor"
model_onnx="$(ls -d "$model_base"/*/model.onnx | tail -n 1)"

# Peers: name protocol predict_path ready_path grpc_protocol (tab-separated, # comments).
peer_lines=()
if [[ -f "$peers_dir/peers.tsv" && -x "$peers_dir/start.sh" ]]; then
  while IFS=$'\t' read -r name protocol predict ready grpc; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    if [[ -n "${PEERS+set}" ]]; then
      [[ " $PEERS " == *" $name "* ]] || continue
    fi
    peer_lines+=("$name"$'\t'"$protocol"$'\t'"$predict"$'\t'"$ready"$'\t'"${grpc:--}")
  done < "$peers_dir/peers.tsv"
elif [[ -n "${PEERS:-}" ]]; then
  echo "error: PEERS=$PEERS but loadtest/peers/peers.tsv or start.sh is missing" >&2
  exit 1
fi
if ((${#peer_lines[@]})); then
  names=()
  for line in "${peer_lines[@]}"; do names+=("${line%%$'\t'*}"); done
  echo "== setting up peers: ${names[*]}"
  "$peers_dir/setup.sh" "${names[@]}"
fi

mkdir -p "$results"
rm -f "$results"/*.json "$results"/*.svg
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "run: DURATION=${duration}s WARMUP=${warmup}s, open-loop pool ${open_connections} connections, loadgen threads ${threads}"
  echo "mlengine serve flags: --model-base-path $model_base --file-system-poll-wait-seconds 0 ${MLENGINE_ARGS:-}"
  echo "uname: $(uname -a)"
  echo "nproc: $(nproc)"
  echo
  lscpu 2>/dev/null | grep -E '^(Architecture|CPU\(s\)|Model name|Thread|Core|Socket|CPU max MHz|L2|L3|Hypervisor)' || true
  echo
  free -m
} > "$results/machine.txt"

if "$mlengine" bench-ort --help >/dev/null 2>&1; then
  echo "== bench-ort"
  "$mlengine" bench-ort --model-dir "$model_base" --batch-sizes 1,8,32,64 --json > "$results/ort-bench.json" \
    || { echo "warning: bench-ort failed" >&2; rm -f "$results/ort-bench.json"; }
fi

# --- mlengine ---------------------------------------------------------------------------------
mapfile -t ports < <(free_ports 2)
rest="http://127.0.0.1:${ports[0]}"
grpc="http://127.0.0.1:${ports[1]}"
start_server mlengine "$rest/v2/health/ready" "$mlengine" serve --model-base-path "$model_base" \
  --rest-port "${ports[0]}" --grpc-port "${ports[1]}" --file-system-poll-wait-seconds 0 \
  "${mlengine_args[@]}"
for protocol in cloudml tfserving kserve; do load http-c32 "$protocol" "$rest" --connections 32; done
for protocol in cloudml tfserving kserve; do load http-c1 "$protocol" "$rest" --connections 1; done
for protocol in grpc-kserve grpc-tfserving; do load grpc-c32 "$protocol" "$grpc" --connections 32; done
max="$(throughput "$results/http-c32--mlengine--cloudml.json")"
if [[ "$max" != 0 ]]; then
  load open-80 cloudml "$rest" --rate "$(rate_of "$max" "${OPEN_LOW:-0.8}")" --connections 64
  load open-200 cloudml "$rest" --rate "$(rate_of "$max" "${OPEN_HIGH:-2.0}")" --connections "$open_connections"
else
  echo "warning: no mlengine http-c32 throughput; skipping the open-loop scenarios" >&2
fi
stop_server

# --- floor ------------------------------------------------------------------------------------
mapfile -t ports < <(free_ports 1)
rest="http://127.0.0.1:${ports[0]}"
start_server floor "$rest/v2/health/ready" "$floor" --port "${ports[0]}" --threads 1
load http-c32 cloudml "$rest" --connections 32
load http-c1 cloudml "$rest" --connections 1
stop_server

# --- peers ------------------------------------------------------------------------------------
for line in "${peer_lines[@]}"; do
  IFS=$'\t' read -r name protocol predict ready grpc_protocol <<< "$line"
  mapfile -t ports < <(free_ports 2)
  rest="http://127.0.0.1:${ports[0]}"
  if ! start_server "$name" "$rest$ready" "$peers_dir/start.sh" "$name" "$root/$model_onnx" \
    "${ports[0]}" "${ports[1]}"; then
    stop_server
    continue
  fi
  load http-c32 "$protocol" "$rest" --connections 32 --path "$predict"
  load http-c1 "$protocol" "$rest" --connections 1 --path "$predict"
  if [[ "$grpc_protocol" != - ]]; then # kserve or kserve-2d
    load grpc-c32 "grpc-$grpc_protocol" "http://127.0.0.1:${ports[1]}" --connections 32
  fi
  if [[ "${PEER_OPEN:-}" == 1 ]]; then
    peer_max="$(throughput "$results/http-c32--$name--$protocol.json")"
    [[ "$peer_max" == 0 ]] || load open-80 "$protocol" "$rest" --path "$predict" \
      --rate "$(rate_of "$peer_max" 0.8)" --connections 64
  fi
  stop_server
done

echo "== report"
"$loadgen" report --results loadtest/results/serving --out loadtest/results/serving-benchmark.md \
  --svg-dir loadtest/results/serving
status=0
