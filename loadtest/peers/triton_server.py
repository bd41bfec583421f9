"""NVIDIA Triton (through nvidia-pytriton) peer serving the census ONNX model with onnxruntime.

    triton_server.py MODEL.onnx HTTP_PORT GRPC_PORT

Model `census` (KServe v2): POST /v2/models/census/infer on HTTP_PORT, and
inference.GRPCInferenceService/ModelInfer on GRPC_PORT; ready = GET /v2/models/census/ready.

PyTriton starts the real `tritonserver` binary (bundled in the wheel) as a child process; requests
go tritonserver -> PyTriton's python-backend proxy stub (a process) -> this process (over ZeroMQ +
shared memory), where `infer` runs. `@batch` + Triton's dynamic batcher merge concurrent requests
into one onnxruntime call. Every input is a per-row scalar (config dims [] with max_batch_size > 0),
so a one-instance request has shape [1], as in KServe JSON clients send.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MAX_BATCH = int(os.environ.get("TRITON_MAX_BATCH", "64"))
QUEUE_DELAY_US = int(os.environ.get("TRITON_QUEUE_DELAY_US", "0"))


def main() -> None:
    model_path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=os.environ.get("PEER_LOG_LEVEL", "WARNING"))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    string_inputs = [i.name for i in session.get_inputs() if i.type == "tensor(string)"]
    int_inputs = [i.name for i in session.get_inputs() if i.type == "tensor(int64)"]
    output_names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for name in string_inputs:
            # Triton BYTES arrive as an object array of bytes; onnxruntime wants str.
            feeds[name] = np.array([v.decode() if isinstance(v, bytes) else v for v in inputs[name].ravel()],
                                   dtype=object)
        for name in int_inputs:
            feeds[name] = inputs[name].reshape(-1).astype(np.int64, copy=False)
        results = session.run(output_names, feeds)
        return dict(zip(output_names, results))

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http_port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        allow_metrics=False,  # no third port; metrics are off
        log_verbose=0,
    )
    # SIGTERM -> SystemExit, so the `with` block stops tritonserver and cleans the workspace
    # (by default PyTriton leaves a ~20 MB workspace in ~/.cache/pytriton when SIGTERMed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workspace = os.environ.get("TRITON_WORKSPACE")  # start.sh: a per-port dir in the venv
    with Triton(config=config, workspace=workspace) as triton:
        if MAX_BATCH > 0:
            # Dynamic batching: Triton prepends the batch dim, and needs non-empty per-row dims,
            # so every input is [batch, 1] on the wire (a one-row request has shape [1, 1]).
            row, config = (1,), ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=QUEUE_DELAY_US),
            )
            lead = ()
        else:
            # No Triton batching: full shapes with a variable first dim, so inputs are [N].
            row, config, lead = (-1,), ModelConfig(batching=False), (-1,)
        triton.bind(
            model_name="census",
            infer_func=infer,
            inputs=[Tensor(name=n, dtype=np.bytes_, shape=row) for n in string_inputs]
            + [Tensor(name=n, dtype=np.int64, shape=row) for n in int_inputs],
            outputs=[
                Tensor(name="probabilities", dtype=np.float32, shape=lead + (2,)),
                Tensor(name="logits", dtype=np.float32, shape=lead + (1,)),
                Tensor(name="classes", dtype=np.int64, shape=lead + (1,) if MAX_BATCH > 0 else lead),
                Tensor(name="logistic", dtype=np.float32, shape=lead + (1,)),
            ],
            config=config,
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
