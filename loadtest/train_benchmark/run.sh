#!/usr/bin/env bash
# Training benchmark: `mlengine train` (reference command) against the same Wide & Deep model in
# Keras (tensorflow-cpu), run one after the other on this machine. Writes
#   loadtest/results/train-benchmark.md   and   loadtest/results/train-benchmark.json
#
# Environment:
#   MLENGINE_CENSUS_DATA  folder with adult.data and adult.test (default: ../shared/data/census
#                         relative to the repository root)
#   KERAS_VARIANTS        space-separated "jit:steps_per_execution" pairs to run (default
#                         "false:1 true:1 false:0 true:0"; steps_per_execution 0 = one epoch)
#   NUM_EPOCHS            epochs for both tools (default 10, the reference command's)
#   PYTHON                interpreter used to create the venv (default python3.11, else python3)
#   IDLE_WAIT_SECONDS     before each run, wait up to this long for the rest of the machine to
#                         be idle (< 10% of a core over 3 s); default 900, 0 = do not wait
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}"
data="$(cd "$data" && pwd)"
train_file="$data/adult.data"
eval_file="$data/adult.test"
epochs="${NUM_EPOCHS:-10}"
variants="${KERAS_VARIANTS:-false:1 true:1 false:0 true:0}"
venv="$root/loadtest/.venv-train-benchmark"
req="$here/requirements.txt"
results="$root/loadtest/results"
bin="$root/target/release/mlengine"

for f in "$train_file" "$eval_file"; do
  [[ -f "$f" ]] || { echo "missing $f (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install time)" >&2; exit 1; }

# --- Python environment (rebuilt only when requirements.txt changes) -------------------------
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  python="${PYTHON:-python3.11}"
  command -v "$python" >/dev/null 2>&1 || python=python3
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
py="$venv/bin/python"

# --- mlengine binary (built only when absent) -------------------------------------------------
if [[ ! -x "$bin" ]]; then
  echo "building $bin" >&2
  (cd "$root" && cargo build --release)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/train-benchmark.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$results"

# --- machine -----------------------------------------------------------------------------------
{
  echo "## lscpu"; lscpu
  echo "## nproc"; nproc
  echo "## free -g"; free -g
  echo "## uname -srm"; uname -srm
} > "$work/machine.txt" 2>&1
"$bin" --version > "$work/mlengine-version.txt" 2>&1 || true
(cd "$root" && git rev-parse --short HEAD 2>/dev/null && git status --porcelain 2>/dev/null | wc -l) \
  > "$work/git.txt" || true
rustc --version > "$work/rustc.txt" 2>/dev/null || echo unknown > "$work/rustc.txt"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Busy CPU ticks of the whole machine (user+nice+system+irq+softirq+steal): the report subtracts
# each run's own CPU time to show how much else ran at the same time.
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
tck="$(getconf CLK_TCK)"
wait_idle() {
  local limit="${IDLE_WAIT_SECONDS:-900}" start=$SECONDS said=0 a b
  while (( SECONDS - start < limit )); do
    a="$(cpu_busy)"; sleep 3; b="$(cpu_busy)"
    (( (b - a) * 10 < 3 * tck )) && return 0
    if (( !said )); then echo "waiting for the machine to go idle (other processes busy)" >&2; said=1; fi
    sleep 7
  done
  (( limit == 0 )) || echo "machine still busy after ${limit}s; running anyway" >&2
}

# --- mlengine ---------------------------------------------------------------------------------
echo "mlengine train: $epochs epochs" >&2
wait_idle
loadavg > "$work/mlengine.load"
cpu_busy > "$work/mlengine.busy"
job="$work/mlengine-job"
/usr/bin/time -v -o "$work/mlengine.time" \
  "$bin" train --train-files "$train_file" --eval-files "$eval_file" \
  --job-dir "$job" --num-epochs "$epochs" --l2 0.0001 \
  > "$work/mlengine.stdout" 2> "$work/mlengine.stderr"
cpu_busy >> "$work/mlengine.busy"
cp "$job/eval_metrics.json" "$work/mlengine-eval_metrics.json"
grep 'Saving dict for global step' "$work/mlengine.stdout" | tail -1 >&2

# --- Keras -------------------------------------------------------------------------------------
i=0
for v in $variants; do
  jit="${v%%:*}"
  spe="${v##*:}"
  i=$((i + 1))
  name="keras-$i"
  echo "keras: jit_compile=$jit steps_per_execution=$spe ($epochs epochs)" >&2
  wait_idle
  loadavg > "$work/$name.load"
  cpu_busy > "$work/$name.busy"
  /usr/bin/time -v -o "$work/$name.time" \
    "$py" "$here/keras_wide_deep.py" --train-file "$train_file" --eval-file "$eval_file" \
    --num-epochs "$epochs" --jit-compile "$jit" --steps-per-execution "$spe" \
    > "$work/$name.stdout" 2> "$work/$name.stderr" \
    || { echo "keras variant $v failed:" >&2; tail -20 "$work/$name.stderr" >&2; exit 1; }
  cpu_busy >> "$work/$name.busy"
  tail -1 "$work/$name.stdout" >&2
done

"$py" "$here/report.py" --work "$work" --keras-runs "$i" --epochs "$epochs" \
  --train-file "$train_file" --eval-file "$eval_file" \
  --md "$results/train-benchmark.md" --json "$results/train-benchmark.json"
echo "wrote $results/train-benchmark.md and $results/train-benchmark.json" >&2
