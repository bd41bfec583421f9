"""FastAPI + uvicorn + onnxruntime peer: Cloud ML Engine style online prediction.

    MODEL_ONNX=/path/model.onnx uvicorn fastapi_app:app --workers 2 ...   (see start.sh)

POST /v1/projects/{project}/models/{model}:predict   body {"instances": [{...}, ...]}
  -> {"predictions": [{"probabilities": [p0, p1], "logits": [l], "classes": 0, "logistic": [p1]}, ...]}
GET  /healthz   200 once the model is loaded (the worker loads it before it accepts connections).

Each uvicorn worker process owns one onnxruntime session with ORT_INTRA_OP_THREADS threads
(default 1: two single-threaded workers use the two cores without oversubscribing them).
The handler is `async def` and runs the (sub-millisecond) session inline on the event loop,
which avoids a thread-pool hop per request.
"""
from __future__ import annotations

import os
from contextlib import asynccontextmanager

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse, Response


def _load_session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


class Model:
    def __init__(self, path: str):
        self.session = _load_session(path)
        self.inputs = [
            (i.name, object if i.type == "tensor(string)" else np.int64 if i.type == "tensor(int64)" else np.float32)
            for i in self.session.get_inputs()
        ]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def predict(self, instances: list[dict]) -> list[dict]:
        feeds = {name: np.array([inst[name] for inst in instances], dtype=dtype) for name, dtype in self.inputs}
        results = self.session.run(self.outputs, feeds)
        columns = [(name, r.tolist()) for name, r in zip(self.outputs, results)]
        return [{name: col[i] for name, col in columns} for i in range(len(instances))]


model: Model | None = None


@asynccontextmanager
async def lifespan(_app: FastAPI):
    global model
    model = Model(os.environ["MODEL_ONNX"])
    yield


app = FastAPI(title="census peer (fastapi)", lifespan=lifespan, default_response_class=ORJSONResponse)


def _error(status: int, message: str) -> Response:
    return ORJSONResponse({"error": message}, status_code=status)


@app.get("/healthz")
async def healthz() -> Response:
    if model is None:
        return _error(503, "model not loaded")
    return Response(status_code=200)


@app.post("/v1/projects/{project}/models/{name}:predict")
async def predict(project: str, name: str, request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        return _error(400, f"invalid JSON: {e}")
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
        return _error(400, 'body must be {"instances": [{...}, ...]}')
    try:
        predictions = model.predict(instances)
    except KeyError as e:
        return _error(400, f"missing input {e}")
    except (ValueError, TypeError, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidArgument) as e:
        return _error(400, f"bad instance: {e}")
    return Response(orjson.dumps({"predictions": predictions}), media_type="application/json")
