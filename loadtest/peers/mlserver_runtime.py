"""Seldon MLServer custom runtime: the census ONNX model through onnxruntime.

model-settings.json: {"name": "census", "implementation": "mlserver_runtime.CensusRuntime",
                      "parameters": {"uri": "/path/model.onnx"}}     (start.sh writes it)

KServe v2 inputs map by name onto the session's inputs: BYTES -> numpy object array of str
(bytes from gRPC raw contents are decoded), INT64 -> int64. Every input is flattened, so a one-row
request has shape [1] (shape [1, 1] works too). All four outputs are returned unless the request
lists some in "outputs".
"""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri

_V2_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64",
             "tensor(int32)": "INT32", "tensor(string)": "BYTES"}


class BadInput(MLServerError):
    def __init__(self, msg: str):
        super().__init__(msg, status_code=400)


def _to_str(v) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


class CensusRuntime(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        self._outputs = [(o.name, _V2_TYPES.get(o.type, "FP32")) for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds: dict[str, np.ndarray] = {}
        for inp in payload.inputs:
            kind = self._inputs.get(inp.name)
            if kind is None:
                raise BadInput(f"unknown input {inp.name!r}")
            data = inp.data.root if hasattr(inp.data, "root") else inp.data
            if kind == "tensor(string)":
                feeds[inp.name] = np.array([_to_str(v) for v in data], dtype=object)
            elif kind == "tensor(int64)":
                feeds[inp.name] = np.asarray(data, dtype=np.int64).reshape(-1)
            else:
                feeds[inp.name] = np.asarray(data, dtype=np.float32).reshape(-1)
        missing = self._inputs.keys() - feeds.keys()
        if missing:
            raise BadInput(f"missing inputs {sorted(missing)}")

        wanted = self._outputs
        if payload.outputs:
            names = {o.name for o in payload.outputs}
            wanted = [o for o in self._outputs if o[0] in names]
        try:
            results = self._session.run([name for name, _ in wanted], feeds)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidArgument types
            raise BadInput(f"inference failed: {e}") from e
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                ResponseOutput(name=name, shape=list(r.shape), datatype=dtype, data=r.ravel().tolist())
                for (name, dtype), r in zip(wanted, results)
            ],
        )
