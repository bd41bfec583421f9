"""Reference checks of an exported model with the official Python tools.

    onnx_reference.py MODEL.onnx INSTANCES.jsonl OUT.json

Runs onnx.checker.check_model(full_check=True), then Python onnxruntime on the JSON instances
(one per line, census inputs), and writes {"outputs": {name: nested list}} to OUT.json.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> None:
    model_path, instances_path, out_path = sys.argv[1:4]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)

    instances = [json.loads(line) for line in open(instances_path) if line.strip()]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in session.get_inputs():
        values = [inst[inp.name] for inst in instances]
        if inp.type == "tensor(string)":
            feeds[inp.name] = np.array(values, dtype=object)
        elif inp.type == "tensor(int64)":
            feeds[inp.name] = np.array(values, dtype=np.int64)
        else:
            feeds[inp.name] = np.array(values, dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    with open(out_path, "w") as f:
        json.dump({"checker": "ok", "outputs": {n: r.tolist() for n, r in zip(names, results)}}, f)


if __name__ == "__main__":
    main()
