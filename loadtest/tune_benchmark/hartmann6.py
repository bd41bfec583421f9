"""Hartmann-6 as a Cloud ML trainer: takes --x1 ... --x6 in [0, 1], reports `objective` (the
function's positive form, maximum 3.32237 at x* = (0.20169, 0.150011, 0.476874, 0.275332,
0.311652, 0.6573)) through cloudml-hypertune, as a tuned trainer does. Imported by bench.py for
Optuna's objective, so both tuners see the same function."""

import argparse
import math

ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]
OPTIMUM = 3.32237


def hartmann6(x):
    return sum(
        ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
        for i in range(4)
    )


def main():
    parser = argparse.ArgumentParser()
    for j in range(1, 7):
        parser.add_argument(f"--x{j}", type=float, required=True)
    parser.add_argument("--job-dir")
    args, _ = parser.parse_known_args()
    import hypertune

    value = hartmann6([getattr(args, f"x{j}") for j in range(1, 7)])
    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="objective", metric_value=value, global_step=1
    )


if __name__ == "__main__":
    main()
