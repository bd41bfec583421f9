#!/usr/bin/env bash
# The main job: set everything up on a fresh machine and serve the bundled census model
# (models/census/export/Servo) on REST port 8080. Extra arguments go to `mlengine serve`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-onnxruntime.sh
cargo build --release --locked --quiet
exec target/release/mlengine serve --model-base-path models/census/export/Servo "$@"
