#!/usr/bin/env bash
# The main job: set everything up on a fresh machine and serve the bundled census model
# (models/census/export/Servo) on REST port 8080 and gRPC port 8500, with the management API
# (`ml` v1: models, versions, jobs, operations) on; its state lives in .mlengine/state, and the
# bundled model is deployed there as model `census`, version `v1`, on the first start. Extra
# arguments go to `mlengine serve`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-onnxruntime.sh
cargo build --release --locked --quiet
exec target/release/mlengine serve \
    --state-dir .mlengine/state \
    --bootstrap-model census=models/census/export/Servo \
    "$@"
