#!/usr/bin/env bash
# Chooses mlengine's serving defaults by measurement: the same census load (HTTP JSON, one
# instance per request, Cloud ML API) against `mlengine serve` under several settings of dynamic
# batching, session workers and HTTP threads, 32 connections and 1 connection, closed loop.
# Not part of CI. Writes loadtest/results/sweep/*.json and loadtest/results/serving-sweep.md.
#
#   DURATION=5 WARMUP=1    seconds per run
#   CONFIGS="name=flags;..." override the list below (flags space-separated)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

duration="${DURATION:-5}"
warmup="${WARMUP:-1}"
threads="${LOADGEN_THREADS:-1}"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
results="$root/loadtest/results/sweep"
[[ -f "$data" ]] || { echo "error: census data not found: $data (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }
status=1
source "$here/lib.sh"

build_release

default_configs="unbatched=--max-batch-size 1;\
batch8=--max-batch-size 8;\
batch32=--max-batch-size 32;\
batch64=--max-batch-size 64;\
batch64-wait200us=--max-batch-size 64 --batch-timeout-micros 200;\
batch64-wait1ms=--max-batch-size 64 --batch-timeout-micros 1000;\
batch64-2workers=--max-batch-size 64 --workers 2;\
batch64-2http=--max-batch-size 64 --http-threads 2;\
unbatched-2workers=--max-batch-size 1 --workers 2"
IFS=';' read -r -a configs <<< "${CONFIGS:-$default_configs}"

mkdir -p "$results"
rm -f "$results"/*.json "$results"/*.svg
for config in "${configs[@]}"; do
  name="${config%%=*}"
  read -r -a flags <<< "${config#*=}"
  mapfile -t ports < <(free_ports 2)
  rest="http://127.0.0.1:${ports[0]}"
  start_server "$name" "$rest/v2/health/ready" "$mlengine" serve \
    --model-base-path models/census/export/Servo --rest-port "${ports[0]}" \
    --grpc-port "${ports[1]}" --file-system-poll-wait-seconds 0 "${flags[@]}"
  load sweep-c32 cloudml "$rest" --connections 32
  load sweep-c1 cloudml "$rest" --connections 1
  stop_server
done
"$loadgen" report --results "$results" --out loadtest/results/serving-sweep.md --svg-dir "$results"
status=0
