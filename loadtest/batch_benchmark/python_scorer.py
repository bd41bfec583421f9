"""The Python baseline for batch prediction: json + numpy + onnxruntime, in batches.

    python_scorer.py MODEL.onnx INPUT.jsonl OUTPUT.jsonl BATCH_SIZE

Reads one JSON instance per line, runs the model on batches of BATCH_SIZE, and writes one JSON
prediction per line (the same objects as mlengine's prediction.results). Bad lines are counted.
Prints {"rows": N, "errors": E, "seconds": S} at the end.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, src, dst, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    start = time.perf_counter()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type) for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    rows = errors = 0

    def flush(batch, out):
        nonlocal rows
        feeds = {}
        for name, kind in inputs:
            values = [inst[name] for inst in batch]
            if kind == "tensor(string)":
                feeds[name] = np.array(values, dtype=object)
            elif kind == "tensor(int64)":
                feeds[name] = np.array(values, dtype=np.int64)
            else:
                feeds[name] = np.array(values, dtype=np.float32)
        results = session.run(outputs, feeds)
        for i in range(len(batch)):
            pred = {}
            for name, r in zip(outputs, results):
                v = r[i]
                pred[name] = v.tolist() if isinstance(v, np.ndarray) else v.item()
            out.write(json.dumps(pred) + "\n")
        rows += len(batch)

    with open(src) as f, open(dst, "w") as out:
        batch = []
        for line in f:
            if not line.strip():
                continue
            try:
                inst = json.loads(line)
                if any(name not in inst for name, _ in inputs):
                    raise KeyError("missing input")
            except (ValueError, KeyError):
                errors += 1
                continue
            batch.append(inst)
            if len(batch) == batch_size:
                flush(batch, out)
                batch = []
        if batch:
            flush(batch, out)
    print(json.dumps({"rows": rows, "errors": errors, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
