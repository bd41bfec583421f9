#!/usr/bin/env bash
# Distributed training benchmark (run by hand): one epoch of adult.data repeated to about a
# million rows, on 1 and 2 ranks (`mpirun -np N mlengine train`, the `mpi` feature), at global
# batch sizes 40 and 512, each pair run ROUNDS times alternating. Writes
#   loadtest/results/distributed-training.md
# with wall time, steps/s, accuracy and the mean time of one gradient exchange (measured by the
# trainer around its MPI call, so it includes waiting for the other rank).
#
# Environment: MLENGINE_CENSUS_DATA (default ../shared/data/census), ROUNDS (default 3),
# REPEAT (copies of adult.data, default 31: 1,009,391 rows).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="$(cd "${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}" && pwd)"
rounds="${ROUNDS:-3}"
repeat="${REPEAT:-31}"
cd "$root"
cargo build --release --locked --features mpi --bin mlengine >&2
bin="$root/target/release/mlengine"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$repeat"); do cat "$data/adult.data"; done >"$work/big.data"
rows="$(grep -c , "$work/big.data")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
results="$work/results.tsv"
for round in $(seq "$rounds"); do
  for batch in 40 512; do
    for ranks in 1 2; do
      job="$work/job-$round-$batch-$ranks"
      log="$work/log-$round-$batch-$ranks"
      start="$(date +%s.%N)"
      mpirun --oversubscribe -np "$ranks" "$bin" train --train-files "$work/big.data" \
        --eval-files "$data/adult.test" --job-dir "$job" --num-epochs 1 \
        --train-batch-size "$batch" --eval-delay-secs 1000000 --save-checkpoints-steps 1000000 \
        >"$log" 2>&1
      end="$(date +%s.%N)"
      steps="$(python3 -c "import json; print(json.load(open('$job/eval_metrics.json'))['global_step'])")"
      acc="$(python3 -c "import json; print(json.load(open('$job/eval_metrics.json'))['accuracy'])")"
      exch="$(sed -n 's/.*mean_exchange_us=\([0-9.]*\).*/\1/p' "$log" | sort -n | tail -1)"
      # The training loop's own time: from the first "training the census" line to the last
      # "training finished" line (reading the CSV, evaluating and exporting excluded).
      loop="$(python3 - "$log" <<'PY'
import datetime, sys
ts = lambda l: datetime.datetime.fromisoformat(l.split()[0].replace("Z", "+00:00")).timestamp()
lines = open(sys.argv[1]).read().splitlines()
start = min(ts(l) for l in lines if "training the census" in l)
end = max(ts(l) for l in lines if "training finished" in l)
print(end - start)
PY
)"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$batch" "$ranks" \
        "$(python3 -c "print($end - $start)")" "$loop" "$steps" "$acc" "${exch:-}" >>"$results"
      echo "round $round batch $batch ranks $ranks: $(tail -1 "$results")" >&2
    done
  done
done
python3 - "$results" "$rows" "$root/loadtest/results/distributed-training.md" <<'EOF'
import statistics, sys
path, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = [l.rstrip("\n").split("\t") for l in open(path)]
by = {}
for r, batch, ranks, wall, loop, steps, acc, exch in runs:
    by.setdefault((int(batch), int(ranks)), []).append(
        (float(wall), float(loop), int(steps), float(acc), float(exch) if exch else None))
lines = [
    "# Distributed training: 1 and 2 ranks",
    "",
    f"`loadtest/train_benchmark/distributed.sh`: one epoch of adult.data repeated to {rows:,} rows, "
    "evaluated once on adult.test at the end; `mpirun -np N mlengine train` (OpenMPI 4.1.4, the "
    "`mpi` feature); one thread per rank; the global batch is split between the ranks. Machine: "
    "2 cores (AMD EPYC, KVM), shared. Wall time includes reading the CSV, the final evaluation and "
    "the export. Medians of the rounds; each round ran the four cases one after the other.",
    "",
    "| global batch | ranks | steps | wall (s) | training loop (s) | steps/s (loop) | accuracy | gradient exchange (µs, mean) | loop speed-up |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for batch in (40, 512):
    base = statistics.median(l for _, l, *_ in by[(batch, 1)])
    for ranks in (1, 2):
        rs = by[(batch, ranks)]
        wall = statistics.median(w for w, *_ in rs)
        loop = statistics.median(l for _, l, *_ in rs)
        steps = rs[0][2]
        acc = statistics.median(r[3] for r in rs)
        ex = [r[4] for r in rs if r[4] is not None]
        exs = f"{statistics.median(ex):.0f}" if ex else ""
        lines.append(f"| {batch} | {ranks} | {steps} | {wall:.2f} | {loop:.2f} | {steps / loop:.0f} | {acc:.4f} | {exs} | {base / loop:.2f}x |")
lines += ["", "Every run (round, batch, ranks, wall s, loop s, steps, accuracy, exchange µs):", "", "```"]
lines += ["\t".join(r) for r in runs]
lines += ["```", ""]
open(out, "w").write("\n".join(lines))
print(out)
EOF
