#!/usr/bin/env bash
# Every test of the project, with all set-up on a fresh machine: ONNX Runtime's library, the
# Python reference environment, formatting and lint gates, then the Rust unit and integration
# tests (release build: the training tests train real models).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-onnxruntime.sh
scripts/python-env.sh onnx tests/python/requirements-onnx.txt >/dev/null
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked "$@"
