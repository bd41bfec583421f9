#!/usr/bin/env bash
# The main job: set everything up on a fresh machine and predict with the bundled census model.
# (When the server lands, this serves models/census instead.) Extra arguments go to mlengine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-onnxruntime.sh
cargo build --release --locked --quiet
exec target/release/mlengine predict \
  --model-dir models/census/export/Servo \
  --json-instances models/census/test.json "$@"
