#!/usr/bin/env bash
# The tuning benchmark (by hand, not in CI): mlengine tune's Bayesian and random search against
# Optuna's TPE on Hartmann-6 and on the census search space. Writes
#   loadtest/results/tune-benchmark.{md,json} and tune-benchmark-{hartmann6,census}.svg
# Environment: MLENGINE_CENSUS_DATA (default ../shared/data/census), SEEDS (10), BUDGET (30),
# CENSUS_SEEDS (10), JOBS (2: seeds at once), RETRAIN_SEEDS (3: training seeds per retrain),
# CENSUS_BUDGET (20), CENSUS_EPOCHS (10 per trial; 0: CENSUS_STEPS, 1000).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="$(cd "${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}" && pwd)"
cd "$root"
cargo build --release --locked --bin mlengine >&2
python="$(scripts/python-env.sh tune-benchmark "$here/requirements.txt")"
"$python" "$here/bench.py" --mlengine "$root/target/release/mlengine" --python "$python" \
  --data "$data" --seeds "${SEEDS:-10}" --budget "${BUDGET:-30}" \
  --census-budget "${CENSUS_BUDGET:-20}" --census-epochs "${CENSUS_EPOCHS:-10}" --census-steps "${CENSUS_STEPS:-1000}" \
  --census-seeds "${CENSUS_SEEDS:-10}" --jobs "${JOBS:-2}" \
  --retrain-seeds "${RETRAIN_SEEDS:-3}" \
  --results "$root/loadtest/results/tune-benchmark"
