#!/usr/bin/env bash
# The serving benchmark with standard clients beside loadgen: wrk (HTTP/1.1 JSON) and h2load
# (gRPC, a prebuilt request body from `loadgen body`), against mlengine, the HTTP floor and two
# gRPC floors, with the server's CPU per request. Report: loadtest/results/standard-clients.md (and .json).
# Installs Debian's wrk and nghttp2-client (h2load) when missing. Not part of CI.
#
#   DURATION=10 WARMUP=2      seconds per run
#   ROUNDS=3                  rounds of every scenario; the report gives medians
#   MLENGINE_ARGS="..."       extra flags for `mlengine serve`
#   TASKSET=0                 pin the server to these CPUs (taskset -c), e.g. to measure one core
#   SKIP_BUILD=1              use the binaries already in target/release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
results="$root/loadtest/results"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
[[ -f "$data" ]] || { echo "error: census data not found: $data (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }
source "$here/lib.sh"
build_release
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
pin=()
[[ -z "${TASKSET:-}" ]] || pin=(taskset -c "$TASKSET")
# The wrapper pins the server; its CPU is read from the pinned process itself (exec).
cat > "$work/mlengine" <<SH
#!/bin/sh
exec ${pin[*]} "$mlengine" "\$@"
SH
chmod +x "$work/mlengine"
python3 "$here/standard_clients.py" --mlengine "$work/mlengine" --floor "$root/target/release/floor" \
  --loadgen "$loadgen" --data "$data" --work "$work" --out "$results" \
  --seconds "${DURATION:-10}" --warmup "${WARMUP:-2}" --rounds "${ROUNDS:-3}" \
  --server-args "${MLENGINE_ARGS:-}"
status=0
