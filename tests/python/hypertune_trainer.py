"""A trainer for the tuner's tests. It takes the parameters as --name=value flags (argparse, as
Cloud ML trainers did), writes what it got to <job-dir>/trial.json, and reports its objective
through the real cloudml-hypertune package.

    --mode quadratic   one report at step 100: -(x - 0.3)^2 - (n - 4)^2 / 100 (+0.1 if act=tanh)
    --mode curve       --curve good1|good2|good3|bad: reports at steps 100..500; "bad" reports a
                       poor value at step 100, then waits (until the tuner stops it)
    --mode fail        exits 3 with a message when n is odd, else as quadratic
    --mode diverge     when n is odd, a good value at step 100, then NaN at step 200 (exits 0);
                       else as quadratic
    --mode hang        as quadratic, but n == 2 waits forever after reporting nothing
    --mode hang-all    every trial waits forever after writing trial.json
"""
import argparse
import json
import os
import sys
import time

import hypertune

CURVES = {
    "good1": [0.50, 0.60, 0.70, 0.75, 0.80],
    "good2": [0.55, 0.65, 0.72, 0.78, 0.82],
    "good3": [0.45, 0.62, 0.68, 0.74, 0.79],
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--job-dir", required=True)
    p.add_argument("--mode", default="quadratic")
    p.add_argument("--x", type=float, default=0.5)
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--act", default="relu")
    p.add_argument("--curve", default="good1")
    args = p.parse_args()
    os.makedirs(args.job_dir, exist_ok=True)
    with open(os.path.join(args.job_dir, "trial.json"), "w") as f:
        json.dump(
            {
                "pid": os.getpid(),
                "argv": sys.argv[1:],
                "env": {
                    k: os.environ.get(k)
                    for k in [
                        "TF_CONFIG",
                        "CLOUD_ML_TRIAL_ID",
                        "CLOUD_ML_HP_METRIC_TAG",
                        "CLOUD_ML_HP_METRIC_FILE",
                        "OMP_NUM_THREADS",
                    ]
                },
            },
            f,
        )
    tag = os.environ.get("CLOUD_ML_HP_METRIC_TAG", "objective")
    hpt = hypertune.HyperTune()
    if args.mode == "fail" and args.n % 2 == 1:
        print(f"cannot train with n={args.n}: odd sizes are not supported", file=sys.stderr)
        return 3
    if args.mode == "diverge" and args.n % 2 == 1:
        hpt.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=tag, metric_value=10.0, global_step=100
        )
        hpt.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=tag, metric_value=float("nan"), global_step=200
        )
        return 0
    if args.mode == "hang-all" or (args.mode == "hang" and args.n == 2):
        while True:
            time.sleep(1)
    if args.mode == "curve":
        if args.curve == "bad":
            hpt.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=tag, metric_value=0.2, global_step=100
            )
            # Nothing more to report: a trial that never improves waits to be stopped.
            time.sleep(120)
            return 0
        for i, v in enumerate(CURVES[args.curve]):
            hpt.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=tag, metric_value=v, global_step=100 * (i + 1)
            )
        return 0
    value = -((args.x - 0.3) ** 2) - (args.n - 4) ** 2 / 100 + (0.1 if args.act == "tanh" else 0)
    hpt.report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=tag, metric_value=value, global_step=100
    )
    print(f"{tag}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
