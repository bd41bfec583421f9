#!/usr/bin/env bash
# On a lent machine (see pack.sh): serving throughput against usable cores (1, 2, 4, 8, 16), the
# thread defaults under each scheduling policy of the workers beside the fixed 1/1/1, with the kit
# pack.sh made. Writes cores.md, cores.json and machine.txt into $OUT (the device tool's folder
# that comes back), else loadtest/results/cores/device. About five minutes on 16 cores with the
# defaults below.
#
#   DURATION=4 WARMUP=1 ROUNDS=1 CORES=1,2,4,8,16 CONFIGS=batch,normal,fixed-1
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[[ -f .device/kit.tar.xz ]] || { echo "error: .device/kit.tar.xz missing: run loadtest/device/pack.sh and carry .device" >&2; exit 1; }
kit="$(mktemp -d)"
tar -C "$kit" -xJf .device/kit.tar.xz
export PATH="$kit/bin:$PATH" LD_LIBRARY_PATH="$kit/lib" ORT_DYLIB_PATH="$kit/lib/libonnxruntime.so"
out="${OUT:-$root/loadtest/results/cores/device}"
mkdir -p "$out"
{
  echo "nproc: $(nproc); affinity: $(taskset -pc $$ | cut -d: -f2)"
  grep -m1 'model name' /proc/cpuinfo || true
  cat /sys/fs/cgroup/cpu.max 2>/dev/null || true
  nvidia-smi -L 2>&1 || true
  python3 -c 'import onnxruntime as o; print("python onnxruntime", o.__version__, o.get_available_providers())' 2>&1 || true
} > "$out/machine.txt"
cat "$out/machine.txt"
work="$(mktemp -d)"
python3 loadtest/serving_benchmark/cores.py --mlengine "$kit/bin/mlengine" \
  --model-base models/census/export/Servo --bodies "$kit/bodies" --work "$work" --out "$out" \
  --cores "${CORES:-1,2,4,8,16}" --configs "${CONFIGS:-batch,normal,fixed-1}" \
  --seconds "${DURATION:-4}" --warmup "${WARMUP:-1}" --rounds "${ROUNDS:-1}" \
  --machine "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
