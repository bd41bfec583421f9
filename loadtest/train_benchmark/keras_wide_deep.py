#!/usr/bin/env python3
"""The census Wide & Deep model of `mlengine train`, rebuilt in Keras (TensorFlow backend).

Replicates src/census/{csv,schema,features}.rs and src/trainer/{network,optimizer}.rs:

* vocabularies = sorted values seen in the training file, id 0 = out of vocabulary;
* wide part: one weight per id (zeros) for gender, native_country, education, occupation,
  workclass, marital_status, relationship, age buckets and the exact crosses
  education x occupation, age_bucket x race x occupation, native_country x occupation;
* deep part: 8-dim embeddings of the 8 categoricals (truncated normal, stddev 1/sqrt(8)) plus
  5 standardised numerics (capital_gain/capital_loss through ln(1+max(x,0))), Dense 100-70-49-34
  ReLU (Glorot uniform, zero bias), Dense(1); logit = wide + deep; sigmoid cross-entropy;
* Adagrad(lr 0.05, initial accumulator 0.1, epsilon 0) with an L2 term of `--l2` * w on every
  weight's gradient, realised as an l2(--l2 / 2) regularizer on every kernel, bias and
  embedding table (Keras' L2 adds l2 * sum(w^2) to the loss, whose gradient is 2 * l2 * w);
* batch 40, reshuffled every epoch, partial last batch dropped, 10 epochs.

Preprocessing runs before the clock starts; `model.fit` is timed on its own, and so is the
evaluation on the eval file (accuracy at p > 0.5, exact ROC AUC with ties counted half, as
src/trainer/metrics.rs computes them). The last stdout line is one JSON object.
"""

import argparse
import json
import os
import platform
import sys
import time

T_PROCESS = time.perf_counter()

CSV_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income_bracket",
]
CATEGORICAL = [
    "workclass", "education", "marital_status", "occupation", "relationship", "race", "gender",
    "native_country",
]
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
LOG_SCALED = [False, False, True, True, False]
AGE_BOUNDARIES = [18, 25, 30, 35, 40, 45, 50, 55, 60, 65]
AGE_BUCKETS = len(AGE_BOUNDARIES) + 1
AGE = "age_bucket"
# Wide columns in mlengine's order (schema.rs WIDE_COLUMNS); a tuple is a cross of its factors.
WIDE_COLUMNS = [
    "gender", "native_country", "education", "occupation", "workclass", "marital_status",
    "relationship", AGE,
    ("education", "occupation"),
    (AGE, "race", "occupation"),
    ("native_country", "occupation"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-file", required=True)
    p.add_argument("--eval-file", required=True)
    p.add_argument("--num-epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--l2", type=float, default=1e-4,
                   help="gradient-side L2 strength (as mlengine --l2); regularizers use half")
    p.add_argument("--embedding-size", type=int, default=8)
    p.add_argument("--hidden-units", default="100,70,49,34")
    p.add_argument("--jit-compile", choices=["true", "false", "auto"], default="false",
                   help="XLA-compile the train step (Keras' 'auto' means true on CPU)")
    p.add_argument("--steps-per-execution", type=int, default=1,
                   help="train steps per tf.function call (Keras option; 1 = one call per batch, "
                        "0 = one call per epoch)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0,
                   help="intra/inter-op threads; 0 = TensorFlow's default (all cores)")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Data (plain Python + numpy, as src/census/csv.rs and features.rs)

def read_census(path):
    """Rows as (categorical dict, numeric list, label); skips blank and `|` lines and a header."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue
            if not rows and line.startswith("age,"):
                continue
            fields = [x.strip() for x in line.split(",")]
            if len(fields) != len(CSV_COLUMNS):
                raise SystemExit(f"{path}:{line_no}: expected {len(CSV_COLUMNS)} fields")
            rec = dict(zip(CSV_COLUMNS, fields))
            label = rec["income_bracket"].rstrip(".")
            if label not in ("<=50K", ">50K"):
                raise SystemExit(f"{path}:{line_no}: bad label {rec['income_bracket']!r}")
            rows.append((
                [rec[c] for c in CATEGORICAL],
                [int(rec[c]) for c in NUMERIC],
                1.0 if label == ">50K" else 0.0,
            ))
    return rows


def age_bucket(age):
    return sum(1 for b in AGE_BOUNDARIES if b <= age)


class FeatureSpec:
    def __init__(self, train_rows):
        self.vocab = []
        for c in range(len(CATEGORICAL)):
            values = sorted({r[0][c] for r in train_rows if not any(ch.isspace() for ch in r[0][c])})
            self.vocab.append({v: i + 1 for i, v in enumerate(values)})
        num = self._scaled(np.array([r[1] for r in train_rows], dtype=np.float32))
        num64 = num.astype(np.float64)
        self.mean = num64.mean(axis=0).astype(np.float32)
        std = num64.std(axis=0)  # population std, as mlengine
        self.std = np.where(std > 1e-6, std, 1.0).astype(np.float32)

    @staticmethod
    def _scaled(num):
        num = num.copy()
        for j, log in enumerate(LOG_SCALED):
            if log:
                num[:, j] = np.log(np.maximum(num[:, j], 0.0) + 1.0)
        return num

    def size(self, base):
        return AGE_BUCKETS if base == AGE else len(self.vocab[CATEGORICAL.index(base)]) + 1

    def wide_sizes(self):
        out = []
        for col in WIDE_COLUMNS:
            if isinstance(col, tuple):
                n = 1
                for f in col:
                    n *= self.size(f)
                out.append(n)
            else:
                out.append(self.size(col))
        return out

    def embedding_sizes(self):
        return [self.size(c) for c in CATEGORICAL]

    def encode(self, rows):
        n = len(rows)
        cat = np.array([[self.vocab[c].get(r[0][c], 0) for c in range(len(CATEGORICAL))]
                        for r in rows], dtype=np.int64)
        raw = np.array([r[1] for r in rows], dtype=np.float32)
        buckets = np.array([age_bucket(a) for a in raw[:, 0]], dtype=np.int64)
        labels = np.array([r[2] for r in rows], dtype=np.float32).reshape(n, 1)

        def base_ids(b):
            return buckets if b == AGE else cat[:, CATEGORICAL.index(b)]

        wide_sizes = self.wide_sizes()
        wide_offsets = np.concatenate([[0], np.cumsum(wide_sizes)[:-1]])
        wide = np.zeros((n, len(WIDE_COLUMNS)), dtype=np.int64)
        for k, col in enumerate(WIDE_COLUMNS):
            if isinstance(col, tuple):
                local = np.zeros(n, dtype=np.int64)
                for f in col:
                    local = local * self.size(f) + base_ids(f)
            else:
                local = base_ids(col)
            wide[:, k] = wide_offsets[k] + local
        emb_offsets = np.concatenate([[0], np.cumsum(self.embedding_sizes())[:-1]])
        emb = cat + emb_offsets[None, :]
        dense = (self._scaled(raw) - self.mean) / self.std
        return {
            "wide_ids": wide.astype(np.int32),
            "embedding_ids": emb.astype(np.int32),
            "dense": dense.astype(np.float32),
        }, labels


def exact_auc(scores, labels):
    """ROC AUC by the rank-sum statistic, ties counted half (as mlengine's metrics.rs)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1) > 0.5
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    pos = labels.sum()
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return 0.0
    return float((r[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


# ---------------------------------------------------------------------------------------------
# Model

def build_model(spec, args):
    from keras import Input, Model, initializers, layers, ops, regularizers

    reg = regularizers.L2(args.l2 / 2.0) if args.l2 > 0 else None
    wide_total = int(sum(spec.wide_sizes()))
    emb_total = int(sum(spec.embedding_sizes()))
    e = args.embedding_size

    wide_in = Input((len(WIDE_COLUMNS),), dtype="int32", name="wide_ids")
    emb_in = Input((len(CATEGORICAL),), dtype="int32", name="embedding_ids")
    dense_in = Input((len(NUMERIC),), dtype="float32", name="dense")

    wide_w = layers.Embedding(wide_total, 1, embeddings_initializer="zeros",
                              embeddings_regularizer=reg, name="wide")(wide_in)
    wide_logit = layers.Lambda(lambda t: ops.sum(t, axis=1), name="wide_sum")(wide_w)

    emb = layers.Embedding(
        emb_total, e,
        embeddings_initializer=initializers.TruncatedNormal(stddev=1.0 / np.sqrt(e),
                                                           seed=args.seed),
        embeddings_regularizer=reg, name="embeddings")(emb_in)
    x = layers.Concatenate()([layers.Reshape((len(CATEGORICAL) * e,))(emb), dense_in])
    for i, units in enumerate(int(u) for u in args.hidden_units.split(",")):
        x = layers.Dense(units, activation="relu", kernel_initializer="glorot_uniform",
                         bias_initializer="zeros", kernel_regularizer=reg,
                         bias_regularizer=reg, name=f"hidden_{i}")(x)
    deep_logit = layers.Dense(1, kernel_regularizer=reg, bias_regularizer=reg, name="logit")(x)
    logit = layers.Add(name="wide_plus_deep")([wide_logit, deep_logit])
    return Model({"wide_ids": wide_in, "embedding_ids": emb_in, "dense": dense_in}, logit)


def main():
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    t = time.perf_counter()
    global np
    import numpy as np
    import tensorflow as tf
    import keras
    import_seconds = time.perf_counter() - t

    if args.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)

    t = time.perf_counter()
    train_rows = read_census(args.train_file)
    eval_rows = read_census(args.eval_file)
    spec = FeatureSpec(train_rows)
    x_train, y_train = spec.encode(train_rows)
    x_eval, y_eval = spec.encode(eval_rows)
    n = len(y_train)
    steps_per_epoch = n // args.batch_size
    train_ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .cache()
                .shuffle(n, seed=args.seed, reshuffle_each_iteration=True)
                .batch(args.batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))
    preprocess_seconds = time.perf_counter() - t

    steps_per_execution = args.steps_per_execution or steps_per_epoch
    jit = {"true": True, "false": False, "auto": "auto"}[args.jit_compile]
    model = build_model(spec, args)
    model.compile(
        optimizer=keras.optimizers.Adagrad(learning_rate=args.learning_rate,
                                           initial_accumulator_value=0.1, epsilon=0.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=jit,
        steps_per_execution=steps_per_execution,
    )

    epoch_seconds = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t
            epoch_seconds.append(dt)
            print(f"epoch {epoch + 1}: {dt:.2f}s loss {logs.get('loss', float('nan')):.4f}",
                  file=sys.stderr, flush=True)

    t = time.perf_counter()
    history = model.fit(train_ds, epochs=args.num_epochs, verbose=0, shuffle=False,
                        callbacks=[EpochTimer()])
    train_seconds = time.perf_counter() - t
    steps = int(model.optimizer.iterations.numpy())

    t = time.perf_counter()
    logits = model.predict(x_eval, batch_size=args.eval_batch_size, verbose=0).reshape(-1)
    labels = y_eval.reshape(-1)
    accuracy = float(np.mean((logits > 0.0) == (labels > 0.5)))
    auc = exact_auc(logits, labels)
    eval_seconds = time.perf_counter() - t

    result = {
        "tool": "keras",
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "preprocess_seconds": round(preprocess_seconds, 3),
        "import_seconds": round(import_seconds, 3),
        "process_seconds": round(time.perf_counter() - T_PROCESS, 3),
        "accuracy": round(accuracy, 6),
        "auc": round(auc, 6),
        "final_train_loss": round(float(history.history["loss"][-1]), 6),
        "epochs": args.num_epochs,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "train_rows": n,
        "eval_rows": int(len(labels)),
        "parameters": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
        "steps_per_execution": steps_per_execution,
        "threads": args.threads or os.cpu_count(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
