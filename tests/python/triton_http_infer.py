"""Call an mlengine server with the Triton / KServe v2 HTTP client (tritonclient[http]).

    triton_http_infer.py HOST:PORT MODEL INSTANCES.jsonl --binary|--json [gzip|deflate]

Checks server live/ready and model ready, prints the model metadata on stderr, builds one
InferInput per model input from the JSON instances (one object per line; BYTES -> np.object_
array of bytes, INT64 -> np.int64, ...), requests every model output, and prints
{"outputs": {name: nested list}, "model_version": ...} as one JSON object on stdout.
--binary uses the binary tensor data extension for inputs and outputs (tritonclient's default);
--json sends and requests plain JSON tensors (binary_data=False).
Exits non-zero with a message on stderr on any failure.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def fail(msg: str) -> "NoReturn":  # noqa: F821
    print(f"triton_http_infer: {msg}", file=sys.stderr)
    sys.exit(1)


def to_jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    return value


def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (4, 5) or args[3] not in ("--binary", "--json"):
        print(__doc__, file=sys.stderr)
        return 2
    url, model, instances_path, mode = args[:4]
    # An optional compression algorithm ("gzip" or "deflate") for the request body and the answer.
    compression = args[4] if len(args) == 5 else None
    binary = mode == "--binary"

    with open(instances_path) as f:
        instances = [json.loads(line) for line in f if line.strip()]
    if not instances:
        fail(f"no instances in {instances_path}")

    try:
        client = httpclient.InferenceServerClient(url=url)
        if not client.is_server_live():
            fail("is_server_live() returned False")
        if not client.is_server_ready():
            fail("is_server_ready() returned False")
        if not client.is_model_ready(model):
            fail(f"is_model_ready({model!r}) returned False")
        metadata = client.get_model_metadata(model)
        print("model metadata: " + json.dumps(metadata), file=sys.stderr)

        inputs = []
        for spec in metadata["inputs"]:
            name, datatype = spec["name"], spec["datatype"]
            try:
                values = [inst[name] for inst in instances]
            except KeyError:
                fail(f"instance is missing input {name!r}")
            if datatype == "BYTES":
                arr = np.array(
                    [v.encode("utf-8") if isinstance(v, str) else v for v in values],
                    dtype=np.object_,
                )
            elif datatype in NUMPY_DTYPES:
                arr = np.array(values, dtype=NUMPY_DTYPES[datatype])
            else:
                fail(f"unsupported input datatype {datatype} for {name!r}")
            inp = httpclient.InferInput(name, list(arr.shape), datatype)
            inp.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(inp)

        outputs = [
            httpclient.InferRequestedOutput(spec["name"], binary_data=binary)
            for spec in metadata["outputs"]
        ]
        result = client.infer(
            model,
            inputs,
            outputs=outputs,
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,
        )
        response = result.get_response()
        out = {}
        for spec in metadata["outputs"]:
            arr = result.as_numpy(spec["name"])
            if arr is None:
                fail(f"output {spec['name']!r} missing from response: {json.dumps(response)}")
            out[spec["name"]] = to_jsonable(arr.tolist())
        json.dump({"outputs": out, "model_version": response.get("model_version")}, sys.stdout)
        sys.stdout.write("\n")
        client.close()
    except InferenceServerException as e:
        fail(f"InferenceServerException: {e}")
    except SystemExit:
        raise
    except Exception as e:  # connection refused, bad JSON, ...
        fail(f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
