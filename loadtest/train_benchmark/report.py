#!/usr/bin/env python3
"""Turns the raw outputs of run.sh (in --work) into train-benchmark.md and .json. Stdlib only."""

import argparse
import datetime as dt
import json
import os
import re
import statistics
from pathlib import Path


def parse_time_v(path):
    """Fields of GNU time -v: wall seconds, user/sys seconds, max RSS (MiB), CPU percent."""
    text = Path(path).read_text()

    def field(label):
        m = re.search(r"^\s*" + re.escape(label) + r":\s*(.+)$", text, re.M)
        return m.group(1).strip() if m else None

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return {
        "wall_seconds": round(secs, 2),
        "user_seconds": float(field("User time (seconds)")),
        "system_seconds": float(field("System time (seconds)")),
        "max_rss_mib": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
        "cpu_percent": int(field("Percent of CPU this job got").rstrip("%")),
        "exit_status": int(field("Exit status")),
    }


def other_cpu_seconds(work, name, run):
    """CPU seconds the rest of the machine used while the run ran (machine busy minus the run's)."""
    ticks = [int(x) for x in (work / f"{name}.busy").read_text().split()]
    busy = (ticks[1] - ticks[0]) / os.sysconf("SC_CLK_TCK")
    return round(max(busy - run["user_seconds"] - run["system_seconds"], 0.0), 1)


def tracing_time(line):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return dt.datetime.fromisoformat(m.group(1)) if m else None


def mlengine_run(work):
    out = parse_time_v(work / "mlengine.time")
    metrics = json.loads((work / "mlengine-eval_metrics.json").read_text())
    stderr = (work / "mlengine.stderr").read_text().splitlines()
    start = next((tracing_time(l) for l in stderr if "training the census" in l), None)
    end = next((tracing_time(l) for l in stderr if "training finished" in l), None)
    rates = [float(m.group(1)) for l in stderr
             if (m := re.search(r"\(([\d.]+) steps/s\)", l))]
    out.update({
        "tool": "mlengine",
        "accuracy": round(metrics["accuracy"], 6),
        "auc": round(metrics["auc"], 6),
        "average_loss": round(metrics["average_loss"], 6),
        "steps": metrics["global_step"],
        "train_loop_seconds": round((end - start).total_seconds(), 2) if start and end else None,
        "median_logged_steps_per_second": round(statistics.median(rates), 1) if rates else None,
        "load_average_before": (work / "mlengine.load").read_text().strip(),
        "other_cpu_seconds": other_cpu_seconds(work, "mlengine", out),
        "attempts": int((work / "mlengine.attempts").read_text()),
        "kept_attempt": int((work / "mlengine.attempt").read_text()),
        "version": (work / "mlengine-version.txt").read_text().strip(),
    })
    return out


def keras_run(work, name):
    lines = [l for l in (work / f"{name}.stdout").read_text().splitlines() if l.startswith("{")]
    out = json.loads(lines[-1])
    tv = parse_time_v(work / f"{name}.time")
    out["process_wall_seconds"] = tv["wall_seconds"]
    out.update({k: v for k, v in tv.items() if k != "wall_seconds"})
    out["load_average_before"] = (work / f"{name}.load").read_text().strip()
    out["other_cpu_seconds"] = other_cpu_seconds(work, name, out)
    out["attempts"] = int((work / f"{name}.attempts").read_text())
    out["kept_attempt"] = int((work / f"{name}.attempt").read_text())
    return out


def machine(work):
    text = (work / "machine.txt").read_text()

    def lscpu(key):
        m = re.search(r"^" + re.escape(key) + r":\s*(.+)$", text, re.M)
        return m.group(1).strip() if m else None

    nproc = re.search(r"## nproc\n(\d+)", text)
    mem = re.search(r"^Mem:\s+(\d+)", text, re.M)
    uname = re.search(r"## uname -srm\n(.+)", text)
    return {
        "cpu_model": lscpu("Model name"),
        "architecture": lscpu("Architecture"),
        "cpus": lscpu("CPU(s)"),
        "threads_per_core": lscpu("Thread(s) per core"),
        "hypervisor": lscpu("Hypervisor vendor"),
        "nproc": int(nproc.group(1)) if nproc else None,
        "memory_gib": int(mem.group(1)) if mem else None,
        "kernel": uname.group(1).strip() if uname else None,
    }


def variant_name(k):
    return (f"Keras, XLA {'on' if k['jit_compile'] else 'off'}, "
            f"steps_per_execution={k['steps_per_execution']}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--keras-runs", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--train-file", required=True)
    p.add_argument("--eval-file", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    work = Path(a.work)

    ml = mlengine_run(work)
    keras = [keras_run(work, f"keras-{i}") for i in range(1, a.keras_runs + 1)]
    for k in keras:
        k["variant"] = variant_name(k)
    best = min(keras, key=lambda k: k["train_seconds"])
    mach = machine(work)
    git = (work / "git.txt").read_text().split()
    ratios = {
        "keras_process_wall_over_mlengine_wall": round(best["process_wall_seconds"] / ml["wall_seconds"], 2),
        "keras_fit_over_mlengine_wall": round(best["train_seconds"] / ml["wall_seconds"], 2),
        "keras_fit_over_mlengine_train_loop": (
            round(best["train_seconds"] / ml["train_loop_seconds"], 2)
            if ml["train_loop_seconds"] else None),
    }
    report = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": mach,
        "versions": {
            "mlengine": ml["version"],
            "git_commit": git[0] if git else None,
            "git_dirty_files": int(git[1]) if len(git) > 1 else None,
            "rustc": (work / "rustc.txt").read_text().strip(),
            **best["versions"],
        },
        "data": {"train_file": a.train_file, "eval_file": a.eval_file,
                 "train_rows": best["train_rows"], "eval_rows": best["eval_rows"]},
        "epochs": a.epochs,
        "mlengine": ml,
        "keras": keras,
        "keras_best_variant": best["variant"],
        "ratios": ratios,
    }

    def f(x, nd=2):
        return "n/a" if x is None else f"{x:.{nd}f}"

    rows = [
        "| | wall (process) | training | accuracy | AUC | peak RSS | steps | other CPU during run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| mlengine train (reference command) | {f(ml['wall_seconds'])} s | "
        f"{f(ml['train_loop_seconds'])} s (loop) | {f(ml['accuracy'], 4)} | {f(ml['auc'], 4)} | "
        f"{f(ml['max_rss_mib'], 0)} MiB | {ml['steps']} | {f(ml['other_cpu_seconds'], 1)} s |",
    ]
    for k in keras:
        mark = " **(fastest)**" if k is best else ""
        rows.append(
            f"| {k['variant']}{mark} | {f(k['process_wall_seconds'])} s | "
            f"{f(k['train_seconds'])} s (fit) | {f(k['accuracy'], 4)} | {f(k['auc'], 4)} | "
            f"{f(k['max_rss_mib'], 0)} MiB | {k['steps']} | {f(k['other_cpu_seconds'], 1)} s |")

    details = [
        "| | user CPU | system CPU | CPU % | TF import | preprocessing | fit | eval |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| mlengine | {f(ml['user_seconds'])} s | {f(ml['system_seconds'])} s | "
        f"{ml['cpu_percent']}% | – | (in wall) | {f(ml['train_loop_seconds'])} s (loop) | (in wall) |",
    ]
    for k in keras:
        details.append(
            f"| {k['variant']} | {f(k['user_seconds'])} s | {f(k['system_seconds'])} s | "
            f"{k['cpu_percent']}% | {f(k['import_seconds'])} s | {f(k['preprocess_seconds'])} s | "
            f"{f(k['train_seconds'])} s | {f(k['eval_seconds'])} s |")

    runs = [ml] + keras
    noisy = [r for r in runs
             if r["other_cpu_seconds"] > 0.1 * r.get("wall_seconds", r.get("process_wall_seconds"))]
    quiet_note = (
        "**Warning:** other processes used more than 10% of a core during "
        + ", ".join(r.get("variant", "mlengine") for r in noisy)
        + "; those times are inflated. Rerun on an otherwise idle machine."
        if noisy else
        "No other process used more than 10% of a core during any run.")
    quiet_note += (
        " \"Other CPU during run\" is the machine's busy CPU time minus the run's own; run.sh "
        "waits (a while) for an idle machine before each run, repeats a disturbed run and keeps "
        f"the least disturbed attempt (attempts: mlengine {ml['attempts']}, Keras "
        + ", ".join(str(k["attempts"]) for k in keras) + ").")
    report["other_load_note"] = quiet_note
    Path(a.json).write_text(json.dumps(report, indent=2) + "\n")

    v = report["versions"]
    md = f"""# Training benchmark: mlengine vs Keras (tensorflow-cpu)

Generated {report['generated_at']} by `loadtest/train_benchmark/run.sh`. Both tools ran
sequentially on the same machine, each under `/usr/bin/time -v`.

## Machine

- CPU: {mach['cpu_model']} ({mach['architecture']}), {mach['cpus']} CPUs
  (threads per core: {mach['threads_per_core']}), `nproc` = {mach['nproc']}{', hypervisor: ' + mach['hypervisor'] if mach['hypervisor'] else ''}
- Memory: {mach['memory_gib']} GiB (`free -g`), kernel {mach['kernel']}

## Versions

- {v['mlengine']} (release build, git {v['git_commit']}, {v['git_dirty_files']} uncommitted files), {v['rustc']}
- Python {v['python']}, tensorflow-cpu {v['tensorflow']}, keras {v['keras']}, numpy {v['numpy']}

## Workload

Census Wide & Deep, {a.epochs} epochs of `{Path(a.train_file).name}` ({best['train_rows']} rows, batch 40,
partial last batch dropped: {ml['steps']} steps), evaluated on `{Path(a.eval_file).name}` ({best['eval_rows']} rows).
mlengine runs its reference command

    mlengine train --train-files adult.data --eval-files adult.test --job-dir <tmp> --num-epochs {a.epochs} --l2 0.0001

Its wall time is the whole process: parsing, encoding, training, the evaluations it runs every
1000 steps during training, checkpoints, the final evaluation and the ONNX export. "loop" is the
time between its `training the census Wide & Deep model` and `training finished` log lines
(training with its in-training evaluations and checkpoints). Keras' "fit" is `model.fit` alone;
its process wall time adds interpreter start, the TensorFlow import, preprocessing in numpy,
model construction and the final evaluation.

## Results

{chr(10).join(rows)}

{quiet_note}

Ratios against the fastest Keras variant ({best['variant']}):

- **Keras process wall / mlengine wall = {f(ratios['keras_process_wall_over_mlengine_wall'])}**
- Keras `model.fit` alone / mlengine wall = {f(ratios['keras_fit_over_mlengine_wall'])}
- Keras `model.fit` alone / mlengine training loop = {f(ratios['keras_fit_over_mlengine_train_loop'])}

mlengine's median logged throughput: {f(ml['median_logged_steps_per_second'], 1)} steps/s.

### Time breakdown

{chr(10).join(details)}

Keras per-epoch seconds (fastest variant): {', '.join(f(s) for s in best['epoch_seconds'])}.

## The Keras model

`keras_wide_deep.py` rebuilds mlengine's model: the same vocabularies (sorted training values,
id 0 out of vocabulary), the same wide ids (one-hot columns, 11 age buckets, exact crosses
education x occupation, age_bucket x race x occupation, native_country x occupation) held in a
zero-initialised `Embedding(·, 1)` whose rows are summed, 8-dim embeddings (truncated normal,
stddev 1/sqrt(8)) with 5 standardised numerics (ln(1+x) for the capital columns), Dense
100-70-49-34 ReLU (Glorot uniform) and Dense(1), logit = wide + deep, sigmoid cross-entropy,
Adagrad (lr 0.05, initial accumulator 0.1, epsilon 0), batch 40 from a cached, per-epoch
reshuffled `tf.data` pipeline with `drop_remainder=True`. mlengine's `--l2 1e-4` (1e-4 * w added to
every weight's gradient) is realised as `regularizers.L2(0.5e-4)` on every embedding table,
kernel and bias: Keras adds 0.5e-4 * sum(w^2) to the loss, whose gradient is 1e-4 * w. Accuracy
is at probability 0.5 (logit > 0) and AUC is the exact rank statistic (ties half), as mlengine
computes them. Initial weights and shuffling orders differ from mlengine's (different RNGs), so
accuracy and AUC agree only to run-to-run noise.
"""
    Path(a.md).write_text(md)


if __name__ == "__main__":
    main()
