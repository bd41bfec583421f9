#!/usr/bin/env bash
# Serving while a training job runs: `mlengine serve --state-dir` with the bundled model deployed
# as census/v1, measured idle and while a census training job (submitted through the management
# API, so it runs as the server runs jobs: a child process at SCHED_IDLE) trains on adult.data.
# Rounds alternate idle and training so drift in the shared machine hits both. Per phase:
#   c1   one connection, closed loop: p50 latency       (loadgen and wrk)
#   c32  32 connections, closed loop: throughput        (loadgen and wrk)
# Report: loadtest/results/serving-during-training.md (+ JSON in results/during-training/).
# Not part of CI.
#
#   ROUNDS=3 DURATION=10 WARMUP=2   rounds of (idle, training); seconds per run
#   SKIP_BUILD=1                    use the binaries already in target/release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
threads=1
census="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}"
data="$census/adult.test"
results="$root/loadtest/results/during-training"
report="$root/loadtest/results/serving-during-training.md"
model_base=models/census/export/Servo
[[ -f "$data" && -f "$census/adult.data" ]] || {
  echo "error: census data not found in $census (set MLENGINE_CENSUS_DATA)" >&2
  exit 1
}
census="$(cd "$census" && pwd)"

source "$here/lib.sh"

build_release
if ! command -v wrk >/dev/null; then
  echo "== installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

mkdir -p "$results"
rm -f "$results"/*.json "$results"/*.txt
instance='{"age": 25, "workclass": " Private", "education": " 11th", "education_num": 7, "marital_status": " Never-married", "occupation": " Machine-op-inspct", "relationship": " Own-child", "race": " Black", "gender": " Male", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": " United-States"}'
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances": [$instance]}'
LUA

mapfile -t ports < <(free_ports 2)
rest="http://127.0.0.1:${ports[0]}"
start_server mlengine "$rest/v2/health/ready" "$mlengine" serve --state-dir "$work/state" \
  --bootstrap-model "census=$root/$model_base" --allowed-storage-roots "$work,$census" \
  --rest-port "${ports[0]}" --grpc-port "${ports[1]}" --file-system-poll-wait-seconds 0
cli() { # group args...: the flags go before a `--` the args may hold
  local group="$1"
  shift
  "$mlengine" "$group" --url "$rest" --project bench "$@"
}
predict_path=/v1/projects/bench/models/census:predict

wrk_run() { # name connections
  wrk -t1 -c"$2" -d"${duration}s" --latency -s "$work/post.lua" "$rest$predict_path" \
    > "$results/$1.wrk.txt" 2>&1 || echo "warning: wrk $1 failed" >&2
}

phase() { # name: both clients, both loads
  local name="$1"
  load "$name-c1" cloudml "$rest" --connections 1
  load "$name-c32" cloudml "$rest" --connections 32
  wrk_run "$name-c1" 1
  wrk_run "$name-c32" 32
}

job_state() { cli jobs describe "$1" | sed -n 's/^state: //p'; }
# The trainer's latest logged global step (it logs every 100 steps).
job_step() { grep -o 'step = [0-9]*' "$work/state/jobs/$1/log" | tail -n 1 | grep -o '[0-9]*' || echo 0; }

for round in $(seq "$rounds"); do
  echo "== round $round: idle"
  phase "r$round-idle"
  echo "== round $round: training"
  job="bench_r$round"
  cli jobs submit training "$job" --job-dir "$work/job_$round" -- \
    --train-files "$census/adult.data" --eval-files "$census/adult.test" \
    --train-steps 1000000000 >/dev/null
  # Load only once the trainer is stepping (its first log line after the data is read).
  for _ in $(seq 600); do
    [[ "$(job_state "$job")" == RUNNING ]] && grep -q "loss = " "$work/state/jobs/$job/log" 2>/dev/null && break
    sleep 0.2
  done
  first="$(job_step "$job")"
  since="$(date +%s.%N)"
  phase "r$round-training"
  state="$(job_state "$job")"
  echo "$state $(( $(job_step "$job") - first )) $(awk -v now="$(date +%s.%N)" -v since="$since" 'BEGIN { print now - since }')" \
    > "$results/r$round-training.job-state.txt"
  [[ "$state" == RUNNING ]] || echo "warning: the job was $state by the end of the training phase" >&2
  cli jobs cancel "$job" >/dev/null
  for _ in $(seq 600); do
    [[ "$(job_state "$job")" == CANCELLED ]] && break
    sleep 0.2
  done
done
stop_server
status=0

python3 - "$results" "$rounds" "$report" "$duration" "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import json, re, statistics, sys
results, rounds, report, duration, nproc, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

def loadgen(name):
    d = json.load(open(f"{results}/{name}--mlengine--cloudml.json"))
    return d["latency"]["p50_us"], d["throughput_rps"], d["errors"] + d["transport_errors"]

def wrk(name):
    text = open(f"{results}/{name}.wrk.txt").read()
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", text).group(1))
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
    p50 = float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
    return p50, rps

rows, ratios = [], {"p50 loadgen": [], "p50 wrk": [], "rps loadgen": [], "rps wrk": []}
for r in range(1, rounds + 1):
    state, steps, seconds = open(f"{results}/r{r}-training.job-state.txt").read().split()
    state = f"{state}, {float(steps) / float(seconds):.0f} steps/s"
    for phase in ("idle", "training"):
        p50, _, e1 = loadgen(f"r{r}-{phase}-c1")
        _, rps, e32 = loadgen(f"r{r}-{phase}-c32")
        wp50, _ = wrk(f"r{r}-{phase}-c1")
        _, wrps = wrk(f"r{r}-{phase}-c32")
        rows.append((r, phase, p50, wp50, rps, wrps, e1 + e32))
    idle, train = rows[-2], rows[-1]
    ratios["p50 loadgen"].append(train[2] / idle[2])
    ratios["p50 wrk"].append(train[3] / idle[3])
    ratios["rps loadgen"].append(train[4] / idle[4])
    ratios["rps wrk"].append(train[5] / idle[5])
    rows[-1] = rows[-1] + (state,)

with open(report, "w") as f:
    f.write("# Serving while a training job runs\n\n")
    f.write(f"`loadtest/serving_benchmark/during_training.sh`: {rounds} rounds of (idle, training), {duration} s per run, "
            f"one census instance per Cloud ML `:predict` request; machine: {nproc} cores, {cpu}. The training job is "
            "the census trainer on adult.data submitted through the management API (a child process at SCHED_IDLE, "
            "stepping and evaluating throughout its phase; its steps/s under load in the last column); the server runs its defaults (1 HTTP thread, 1 session worker).\n\n")
    f.write("| round | phase | c1 p50 loadgen (µs) | c1 p50 wrk (µs) | c32 req/s loadgen | c32 req/s wrk | errors | job: state at the end, steps/s during the phase |\n")
    f.write("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
    for row in rows:
        state = row[7] if len(row) > 7 else ""
        f.write(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.0f} | {row[4]:.0f} | {row[5]:.0f} | {row[6]} | {state} |\n")
    f.write("\nTraining over idle, median of the rounds (each round's ratio in brackets):\n\n")
    for k, v in ratios.items():
        f.write(f"- {k}: {statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})\n")
    notes = f"{results}/../serving-during-training-notes.md"
    import os
    if os.path.exists(notes):
        f.write("\n" + open(notes).read())
print(open(report).read())
PY
