"""BentoML (1.4, new-style @bentoml.service) peer: Cloud ML Engine style prediction.

    MODEL_ONNX=/path/model.onnx bentoml serve bentoml_service:Census --host 127.0.0.1 --port P

POST /v1/projects/p/models/census:predict   body {"instances": [{...}, ...]}
  -> {"predictions": [{"probabilities": [p0, p1], "logits": [l], "classes": 0, "logistic": [p1]}, ...]}
GET  /readyz  200 once every worker has loaded the model.

Two worker processes (BENTOML_WORKERS), each with a one-thread onnxruntime session; the API is
`async def` and runs the session inline on the worker's event loop (no thread-pool hop).
uvloop and httptools are installed so BentoML's uvicorn picks them over asyncio and h11 (the
difference is large: h11 is pure Python). Prometheus metrics and per-request access logs are turned off, as a throughput-minded deployment
would (BENTOML_METRICS=1 turns metrics back on).
"""
from __future__ import annotations

import os
import sys
import typing as t

import bentoml
import numpy as np
import pydantic
from bentoml.exceptions import InvalidArgument

ROUTE = "/v1/projects/p/models/census:predict"


def _die_with_arbiter() -> None:
    """BentoML starts every worker in its own session (setsid), so a signal to the peer's process
    group never reaches the workers; if the `bentoml serve` arbiter is SIGKILLed they would live on
    and keep the port. Ask Linux to SIGTERM a worker when its parent dies."""
    if "--worker-id" not in sys.argv or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == 1:  # the arbiter died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


_die_with_arbiter()


class PredictResponse(pydantic.BaseModel):
    # A named response model (not a bare dict return) lets BentoML answer application/json
    # without rebuilding the return type's JSON schema on every request (15% of a worker's CPU).
    predictions: t.List[t.Dict[str, t.Any]]


@bentoml.service(
    name="census",
    workers=int(os.environ.get("BENTOML_WORKERS", "2")),
    threads=1,
    traffic={"timeout": 30},
    metrics={"enabled": os.environ.get("BENTOML_METRICS", "0") == "1"},
    logging={"access": {"enabled": False}},
)
class Census:
    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["MODEL_ONNX"], sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [
            (i.name, object if i.type == "tensor(string)" else np.int64 if i.type == "tensor(int64)" else np.float32)
            for i in self.session.get_inputs()
        ]
        self.outputs = [o.name for o in self.session.get_outputs()]

    @bentoml.api(route=ROUTE)
    async def predict(self, instances: t.List[t.Dict[str, t.Any]]) -> PredictResponse:
        try:
            feeds = {name: np.array([inst[name] for inst in instances], dtype=dtype) for name, dtype in self.inputs}
            results = self.session.run(self.outputs, feeds)
        except Exception as e:  # missing key, wrong type, onnxruntime Fail/InvalidArgument
            raise InvalidArgument(f"bad instance: {e!r}") from e
        columns = [(name, r.tolist()) for name, r in zip(self.outputs, results)]
        return PredictResponse(predictions=[{name: col[i] for name, col in columns} for i in range(len(instances))])
