#!/usr/bin/env bash
# Pictures of TensorBoard on mlengine's event files, for the README (run by hand, not in CI):
# trains the census model and runs the sample tuning job on ../shared/data/census, starts
# TensorBoard (the test venv's, tests/python/requirements-tensorboard.txt) on each job-dir, and
# screenshots the scalars and HParams dashboards with headless Chromium (Debian's `chromium`).
#
#   scripts/tensorboard-screenshot.sh [OUT_DIR]     (default docs/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$(realpath -m "${1:-docs}")"
mkdir -p "$out"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}"
command -v chromium >/dev/null || {
  echo "tensorboard-screenshot: needs chromium (apt-get install chromium)" >&2
  exit 2
}
python="$(scripts/python-env.sh tensorboard tests/python/requirements-tensorboard.txt)"
bin="$root/target/release/mlengine"
[ -x "$bin" ] || cargo build --release --locked --bin mlengine
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" train --train-files "$data/adult.data" --eval-files "$data/adult.test" \
  --job-dir "$work/census" --train-steps 8000 --eval-delay-secs 0 >/dev/null
"$bin" tune --config models/census/hptuning_config.yaml --job-dir "$work/tuning" --seed 1 -- \
  --train-files "$data/adult.data" --eval-files "$data/adult.test" --train-steps 2000 >/dev/null

shoot() { # job-dir, dashboard, picture
  local port
  port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$python" -m tensorboard.main --logdir "$1" --host 127.0.0.1 --port "$port" >"$work/tb.log" 2>&1 &
  local tb=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null && break
    sleep 0.5
  done
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/chromium" --window-size=1600,1000 --virtual-time-budget=20000 \
    --screenshot="$3" "http://127.0.0.1:$port/#$2" >/dev/null 2>&1
  kill "$tb"
  wait "$tb" 2>/dev/null || true
  echo "tensorboard-screenshot: $3"
}
shoot "$work/census" scalars "$out/tensorboard-scalars.png"
shoot "$work/tuning" hparams "$out/tensorboard-hparams.png"
