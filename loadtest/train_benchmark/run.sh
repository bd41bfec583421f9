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
#                         be idle (< 10% of a core over 3 s); default 60, 0 = do not wait
#   ATTEMPTS              runs of each tool at most, when other processes disturb a run (used
#                         more than 10% of a core during it); the least disturbed is reported
#                         (default 2)
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
  local limit="${IDLE_WAIT_SECONDS:-60}" start=$SECONDS said=0 a b
  while (( SECONDS - start < limit )); do
    a="$(cpu_busy)"; sleep 3; b="$(cpu_busy)"
    (( (b - a) * 10 < 3 * tck )) && return 0
    if (( !said )); then echo "waiting for the machine to go idle (other processes busy)" >&2; said=1; fi
    sleep 7
  done
  (( limit == 0 )) || echo "machine still busy after ${limit}s; running anyway" >&2
}

# measure NAME CMD...: runs CMD under /usr/bin/time -v into $work/NAME.{time,stdout,stderr}, with
# the machine's busy CPU ticks around it in NAME.busy. A run during which other processes used
# more than 10% of a core is repeated, up to ATTEMPTS times; the least disturbed one is kept.
measure() {
  local name="$1" attempt other wall best=-1 f
  shift
  for (( attempt = 1; attempt <= ${ATTEMPTS:-2}; attempt++ )); do
    wait_idle
    loadavg > "$work/$name.load"
    cpu_busy > "$work/$name.busy"
    /usr/bin/time -v -o "$work/$name.time" "$@" > "$work/$name.stdout" 2> "$work/$name.stderr" \
      || { echo "$name failed:" >&2; tail -20 "$work/$name.stderr" >&2; return 1; }
    cpu_busy >> "$work/$name.busy"
    # other CPU = busy ticks / CLK_TCK - (user + system seconds of the run), in tenths of a second
    read -r other wall < <(awk -v tck="$tck" '
      FNR == NR { t[FNR] = $1; next }
      /User time \(seconds\)/ || /System time \(seconds\)/ { own += $NF }
      /Elapsed \(wall clock\)/ { n = split($NF, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
      END { o = (t[2] - t[1]) / tck - own; if (o < 0) o = 0; printf "%d %d\n", o * 10, w }' \
      "$work/$name.busy" "$work/$name.time")
    if (( best < 0 || other < best )); then
      best=$other
      echo "$attempt" > "$work/$name.attempt"
      for f in time stdout stderr busy load; do cp "$work/$name.$f" "$work/kept-$name.$f"; done
    fi
    (( other <= wall )) && break   # other CPU <= 10% of the wall time: undisturbed
    echo "  other processes used $((other / 10)).$((other % 10)) CPU s during the run" >&2
  done
  echo "$((attempt > ${ATTEMPTS:-2} ? ${ATTEMPTS:-2} : attempt))" > "$work/$name.attempts"
  for f in time stdout stderr busy load; do mv "$work/kept-$name.$f" "$work/$name.$f"; done
}

# --- mlengine ---------------------------------------------------------------------------------
echo "mlengine train: $epochs epochs" >&2
job="$work/mlengine-job"
measure mlengine bash -c 'rm -rf "$1" && exec "${@:2}"' _ "$job" \
  "$bin" train --train-files "$train_file" --eval-files "$eval_file" \
  --job-dir "$job" --num-epochs "$epochs" --l2 0.0001
cp "$job/eval_metrics.json" "$work/mlengine-eval_metrics.json"
grep 'Saving dict for global step' "$work/mlengine.stdout" | tail -1 >&2

# --- Keras -------------------------------------------------------------------------------------
i=0
for v in $variants; do
  jit="${v%%:*}"
  spe="${v##*:}"
  i=$((i + 1))
  echo "keras: jit_compile=$jit steps_per_execution=$spe ($epochs epochs)" >&2
  measure "keras-$i" "$py" "$here/keras_wide_deep.py" \
    --train-file "$train_file" --eval-file "$eval_file" \
    --num-epochs "$epochs" --jit-compile "$jit" --steps-per-execution "$spe"
  tail -1 "$work/keras-$i.stdout" >&2
done

"$py" "$here/report.py" --work "$work" --keras-runs "$i" --epochs "$epochs" \
  --train-file "$train_file" --eval-file "$eval_file" \
  --md "$results/train-benchmark.md" --json "$results/train-benchmark.json"
echo "wrote $results/train-benchmark.md and $results/train-benchmark.json" >&2
