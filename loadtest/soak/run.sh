#!/usr/bin/env bash
# Soak (by hand, not in CI): `mlengine serve` on a watched base path under steady mixed load for
# 30 minutes — REST (Cloud ML :predict) and gRPC (TF Serving Predict), good requests and bad
# ones — while a new version of the census model is published into the base path every minute
# (the first after half a minute, so that the first swap is part of the warm-up minute).
# Records the server's resident memory every 5 s, p50/p99/max per minute, and every wrong answer.
# Report: loadtest/results/soak.md with its plots (soak-memory.svg, soak-p99.svg) and soak.json.
# Goals: memory grows < 5% after the first minute; no good request fails.
#
#   DURATION=30m PUBLISH_EVERY=60s CONNECTIONS=4   the run
#   SKIP_BUILD=1                                   use the binaries already in target/release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

duration="${DURATION:-30m}"
publish_every="${PUBLISH_EVERY:-60s}"
connections="${CONNECTIONS:-4}"
census="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}"
data="$census/adult.test"
results="$root/loadtest/results"
[[ -f "$data" ]] || { echo "error: $data not found (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }

source "$root/loadtest/serving_benchmark/lib.sh"
build_release

# The served base path starts with one copy of the bundled version; the soak adds the others.
version="$(ls -d models/census/export/Servo/*/ | sort | tail -n 1)"
base="$work/census"
mkdir -p "$base"
cp -r "$version" "$base/1"

mapfile -t ports < <(free_ports 2)
rest="http://127.0.0.1:${ports[0]}"
log="$work/mlengine.log"
setsid "$mlengine" serve --model-name census --model-base-path "$base" \
  --rest-port "${ports[0]}" --grpc-port "${ports[1]}" --file-system-poll-wait-seconds 2 \
  > "$log" 2>&1 < /dev/null &
server_pid=$!
groups+=("$server_pid")
"$loadgen" wait-ready --url "$rest/v2/health/ready" --timeout 120s >/dev/null || {
  tail -n 30 "$log" >&2
  exit 1
}
machine="$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), \
$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); mlengine $(git rev-parse --short HEAD); \
load generator on the same machine ($(date -u +%Y-%m-%d))."
echo "== soak for $duration (server pid $server_pid, log $log)"
"$loadgen" soak --rest "$rest" --grpc "127.0.0.1:${ports[1]}" --data "$data" \
  --duration "$duration" --connections "$connections" --publish-every "$publish_every" \
  --publish-from "$version" --publish-to "$base" --pid "$server_pid" --machine "$machine" \
  --out "$results"
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "error: the server died during the soak; its log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
status=0
echo "== report: loadtest/results/soak.md"
