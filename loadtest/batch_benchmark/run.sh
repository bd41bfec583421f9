#!/usr/bin/env bash
# Batch prediction benchmark: `mlengine batch-predict` against a Python scorer (json + numpy +
# onnxruntime, same batch size) on adult.test repeated to about 1 million lines, and both again
# on a tenth of that to show how peak RSS grows with the input. Sequential runs on this machine;
# writes loadtest/results/batch-benchmark.md.
#   MLENGINE_CENSUS_DATA  folder with adult.test (default ../shared/data/census)
#   REPEAT                copies of adult.test in the large input (default 62: 1,009,422 lines)
#   BATCH_SIZE            default 64 (Cloud ML's default)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}"
repeat="${REPEAT:-62}"
batch="${BATCH_SIZE:-64}"
cd "$root"
scripts/install-onnxruntime.sh
python="$(scripts/python-env.sh onnx tests/python/requirements-onnx.txt)"
[[ -x target/release/mlengine ]] || cargo build --release
model_dir=models/census/export/Servo
model="$(ls -d $model_dir/*/model.onnx | tail -n 1)"
work="$(mktemp -d "${TMPDIR:-/tmp}/batch-benchmark.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# adult.test as JSON instances (the census sample's test.json form).
"$python" - "$data/adult.test" "$work/one.jsonl" <<'PY'
import json, sys
cols = "age workclass fnlwgt education education_num marital_status occupation relationship race gender capital_gain capital_loss hours_per_week native_country income".split()
ints = "age education_num capital_gain capital_loss hours_per_week".split()
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        if not line.strip() or line.startswith("|"):
            continue
        d = dict(zip(cols, [" " + x.strip() for x in line.split(",")]))
        d.pop("fnlwgt"); d.pop("income")
        for k in ints:
            d[k] = int(d[k])
        out.write(json.dumps(d) + "\n")
PY
for ((i = 0; i < repeat; i++)); do cat "$work/one.jsonl"; done > "$work/large.jsonl"
head -n "$(( $(wc -l < "$work/large.jsonl") / 10 ))" "$work/large.jsonl" > "$work/small.jsonl"

measure() { # name input command...
  local name="$1" input="$2"; shift 2
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err"
  read -r wall rss < "$work/$name.time"
  local lines; lines=$(wc -l < "$input")
  echo "$name $lines $wall $rss"
}
# ROUNDS rounds, the two scorers alternating within each, so that a noisy neighbour weighs on
# both; the report takes each run's median.
results=()
for ((round = 1; round <= ${ROUNDS:-3}; round++)); do
  for size in small large; do
    results+=("$(measure "mlengine-$size" "$work/$size.jsonl" target/release/mlengine batch-predict \
      --model-dir "$model_dir" --input-paths "$work/$size.jsonl" --output-path "$work/out-$size" \
      --batch-size "$batch" --max-worker-count "$(nproc)")")
    results+=("$(measure "python-$size" "$work/$size.jsonl" "$python" "$here/python_scorer.py" \
      "$model" "$work/$size.jsonl" "$work/python-$size.jsonl" "$batch")")
  done
done
cmp <(head -n 1000 "$work/out-large/prediction.results-00000-of-00001" | "$python" -c "import sys,json; [print(json.loads(l)['classes']) for l in sys.stdin]") \
    <(head -n 1000 "$work/python-large.jsonl" | "$python" -c "import sys,json; [print(json.loads(l)['classes']) for l in sys.stdin]") \
  && same="yes" || same="NO"

"$python" - "$root/loadtest/results/batch-benchmark.md" "$batch" "$same" "${results[@]}" <<'PY'
import platform, subprocess, sys, datetime, statistics
out, batch, same, *rows = sys.argv[1:]
runs = {}
for row in rows:
    name, lines, wall, rss = row.split()
    runs.setdefault(name, []).append((int(lines), float(wall), int(rss) / 1024))
# Per scorer: the median wall time, the largest peak RSS.
r = {
    name: (v[0][0], statistics.median(w for _, w, _ in v), max(m for _, _, m in v))
    for name, v in runs.items()
}
rounds = len(runs["mlengine-large"])
per_round = [
    (py[1] / ml[1]) for ml, py in zip(runs["mlengine-large"], runs["python-large"])
]
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Batch prediction benchmark: mlengine batch-predict vs a Python scorer",
    "",
    f"Generated {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} by `loadtest/batch_benchmark/run.sh`, runs one after the other on one machine ({cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores), {rounds} rounds with the scorers alternating; the table gives each run's median wall time.",
    "",
    f"Input: `adult.test` as JSON instances, repeated (large) and its first tenth (small); batch size {batch}. The Python scorer is json + numpy + onnxruntime 1.31.1 (the same model file, `python_scorer.py`); mlengine runs `batch-predict` with `--max-worker-count` = cores. Wall time and peak RSS from `/usr/bin/time`, whole process (start, model load, read, score, write).",
    "",
    "| run | lines | wall | rows/s | peak RSS |",
    "|---|---:|---:|---:|---:|",
]
for name in ["mlengine-small", "python-small", "mlengine-large", "python-large"]:
    n, wall, rss = r[name]
    lines.append(f"| {name} | {n:,} | {wall:.2f} s | {n / wall:,.0f} | {rss:.0f} MiB |")
ml, py = r["mlengine-large"], r["python-large"]
lines += [
    "",
    f"- **rows/s, mlengine / Python on the large input: {(ml[0] / ml[1]) / (py[0] / py[1]):.1f}x** (medians; per round: {', '.join(f'{x:.1f}x' for x in per_round)})",
    f"- peak RSS when the input grows 10x: mlengine {r['mlengine-small'][2]:.0f} -> {ml[2]:.0f} MiB, Python {r['python-small'][2]:.0f} -> {py[2]:.0f} MiB",
    f"- classes of the first 1,000 predictions identical between the two: {same}",
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
