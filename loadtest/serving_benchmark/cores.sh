#!/usr/bin/env bash
# Serving throughput against the cores the server may use (cores.py): the thread defaults under
# each scheduling policy of the workers beside the fixed 1/1/1, at 1, 2, 4, 8 and 16 cores where
# this machine has them. Not part of CI. On a machine of more cores lent for a session,
# loadtest/device/ runs the same measurement.
# Report: loadtest/results/cores/<MACHINE_TAG>/cores.md (and .json).
#
#   DURATION=4 WARMUP=1 ROUNDS=2     seconds per run, rounds
#   CORES=1,2,4,8,16                 core counts (those above the usable ones are skipped)
#   CONFIGS=batch,normal,fixed-1     of those, default and half
#   MACHINE_TAG=local                the report's folder
#   SKIP_BUILD=1                     use the binaries already in target/release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
[[ -f "$data" ]] || { echo "error: census data not found: $data (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }
source "$here/lib.sh"
build_release
for tool in wrk:wrk h2load:nghttp2-client; do
  command -v "${tool%%:*}" >/dev/null && continue
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null
done
for protocol in cloudml grpc-kserve; do
  "$loadgen" body --protocol "$protocol" --data "$data" --out "$work/$protocol.body"
done
out="$root/loadtest/results/cores/${MACHINE_TAG:-local}"
mkdir -p "$out"
python3 "$here/cores.py" --mlengine "$mlengine" --model-base models/census/export/Servo \
  --bodies "$work" --work "$work" --out "$out" --cores "${CORES:-1,2,4,8,16}" \
  --configs "${CONFIGS:-batch,normal,fixed-1}" --seconds "${DURATION:-4}" --warmup "${WARMUP:-1}" \
  --rounds "${ROUNDS:-2}" --machine "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
status=0
