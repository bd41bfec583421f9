"""Call an mlengine server over gRPC with TF Serving stubs generated from the project's protos.

    tf_serving_grpc.py HOST:PORT MODEL INSTANCES.jsonl OUT_DIR

Generates Python stubs at run time with grpc_tools.protoc from REPO_ROOT/proto (plus grpc_tools'
bundled include for google/protobuf/*.proto) into OUT_DIR and imports them. Then, on one
channel (insecure; TLS trusting the PEM file $MLENGINE_CA_FILE when set, with the bearer token
$MLENGINE_TOKEN as call credentials when that is set too):
  - PredictionService.Predict: one TensorProto per input built from the JSON instances (one object
    per line; strings -> DT_STRING string_val bytes, ints -> DT_INT64 int64_val, floats ->
    DT_FLOAT float_val, bools -> DT_BOOL bool_val; shape [N]), ModelSpec name=MODEL;
  - Predict again with output_filter=["classes"] and model_spec.version (Int64Value) set to the
    version the first response's model_spec reported;
  - PredictionService.GetModelMetadata with metadata_field ["signature_def"] (the Any is unpacked
    into tensorflow.serving.SignatureDefMap);
  - Predict with the whole numbers sent as DT_FLOAT (as clients of the original census model
    send them), and with the instances as serialized tf.Examples in one DT_STRING input "inputs";
  - PredictionService.Classify and Regress of the instances as tf.Examples (ExampleList);
  - ModelService.GetModelStatus;
  - grpc.health.v1 Health.Check for "" and "tensorflow.serving.PredictionService" (stubs from the
    grpcio-health-checking package).
Prints one JSON object on stdout:
  {"predict": {output: nested list}, "predict_float": {...}, "predict_examples": {...},
   "classify": [[[label, score], ...], ...], "regress": [value, ...],
   "model_version": int, "filtered_outputs": [names],
   "signature_inputs": {name: dtype name}, "status": [{"version", "state", "error_code"}],
   "health": {service: status name}}
On a gRPC error prints `grpc error CODE_NAME: details` on stderr and exits 3; on any other
failure prints a message on stderr and exits 1.
"""
import glob
import importlib
import json
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
TIMEOUT_S = 30.0

# TensorProto field holding the values of each DataType (by enum name).
VAL_FIELDS = {
    "DT_FLOAT": "float_val",
    "DT_DOUBLE": "double_val",
    "DT_INT32": "int_val",
    "DT_INT16": "int_val",
    "DT_INT8": "int_val",
    "DT_UINT8": "int_val",
    "DT_UINT16": "int_val",
    "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val",
    "DT_UINT64": "uint64_val",
    "DT_BOOL": "bool_val",
    "DT_STRING": "string_val",
}


class Failure(Exception):
    pass


def generate_stubs(out_dir: str) -> None:
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "**", "*.proto"), recursive=True))
    if not protos:
        raise Failure(f"no .proto files under {PROTO_DIR}")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(out_dir, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise Failure(f"grpc_tools.protoc failed (exit {rc}): {' '.join(args)}")
    sys.path.insert(0, os.path.abspath(out_dir))


def tensor_from_values(tensor_pb2, types_pb2, name, values, ints_as_float=False):
    proto = tensor_pb2.TensorProto()
    if ints_as_float and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        values = [float(v) for v in values]
    proto.tensor_shape.dim.add().size = len(values)
    if all(isinstance(v, str) for v in values):
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v.encode("utf-8") for v in values)
    elif all(isinstance(v, bool) for v in values):
        proto.dtype = types_pb2.DT_BOOL
        proto.bool_val.extend(values)
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        proto.dtype = types_pb2.DT_INT64
        proto.int64_val.extend(values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        proto.dtype = types_pb2.DT_FLOAT
        proto.float_val.extend(float(v) for v in values)
    else:
        raise Failure(f"input {name!r}: unsupported or mixed JSON value types {values!r}")
    return proto


def reshape(flat, dims):
    if not dims:
        return flat[0]
    if len(dims) == 1:
        return list(flat)
    step = len(flat) // dims[0] if dims[0] else 0
    return [reshape(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def tensor_to_list(types_pb2, name, proto):
    dtype = types_pb2.DataType.Name(proto.dtype)
    field = VAL_FIELDS.get(dtype)
    if field is None:
        raise Failure(f"output {name!r}: unsupported dtype {dtype}")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise Failure(f"output {name!r}: response shape is not fully defined: {dims}")
    values = list(getattr(proto, field))
    expected = 1
    for d in dims:
        expected *= d
    if len(values) != expected:
        raise Failure(
            f"output {name!r}: {dtype} shape {dims} needs {expected} values but {field} has "
            f"{len(values)} (tensor_content {len(proto.tensor_content)} bytes)"
        )
    if dtype == "DT_STRING":
        values = [v.decode("utf-8", "replace") for v in values]
    return reshape(values, dims)


def open_channel(target):
    ca_file = os.environ.get("MLENGINE_CA_FILE")
    if not ca_file:
        return grpc.insecure_channel(target)
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    token = os.environ.get("MLENGINE_TOKEN")
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(target, credentials)


def run(target, model, instances, out_dir):
    generate_stubs(out_dir)
    types_pb2 = importlib.import_module("tensorflow.core.framework.types_pb2")
    tensor_pb2 = importlib.import_module("tensorflow.core.framework.tensor_pb2")
    predict_pb2 = importlib.import_module("tensorflow_serving.apis.predict_pb2")
    metadata_pb2 = importlib.import_module("tensorflow_serving.apis.get_model_metadata_pb2")
    status_pb2 = importlib.import_module("tensorflow_serving.apis.get_model_status_pb2")
    example_pb2 = importlib.import_module("tensorflow.core.example.example_pb2")
    classification_pb2 = importlib.import_module("tensorflow_serving.apis.classification_pb2")
    regression_pb2 = importlib.import_module("tensorflow_serving.apis.regression_pb2")
    prediction_grpc = importlib.import_module("tensorflow_serving.apis.prediction_service_pb2_grpc")
    model_grpc = importlib.import_module("tensorflow_serving.apis.model_service_pb2_grpc")

    names = list(instances[0].keys())
    for i, inst in enumerate(instances):
        if sorted(inst.keys()) != sorted(names):
            raise Failure(f"instance {i} has keys {sorted(inst)}, instance 0 has {sorted(names)}")

    result = {}
    with open_channel(target) as channel:
        prediction = prediction_grpc.PredictionServiceStub(channel)
        model_service = model_grpc.ModelServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        for name in names:
            request.inputs[name].CopyFrom(
                tensor_from_values(tensor_pb2, types_pb2, name, [inst[name] for inst in instances])
            )
        response = prediction.Predict(request, timeout=TIMEOUT_S)
        if not response.outputs:
            raise Failure(f"Predict returned no outputs: {response}")
        result["predict"] = {
            name: tensor_to_list(types_pb2, name, response.outputs[name])
            for name in sorted(response.outputs)
        }
        if response.model_spec.name != model:
            raise Failure(f"Predict response model_spec.name is {response.model_spec.name!r}")
        if not response.model_spec.HasField("version"):
            raise Failure(f"Predict response model_spec has no version: {response.model_spec}")
        version = response.model_spec.version.value
        result["model_version"] = version

        def outputs_of(response):
            return {
                name: tensor_to_list(types_pb2, name, response.outputs[name])
                for name in sorted(response.outputs)
            }

        as_float = predict_pb2.PredictRequest()
        as_float.model_spec.name = model
        for name in names:
            as_float.inputs[name].CopyFrom(
                tensor_from_values(
                    tensor_pb2, types_pb2, name, [inst[name] for inst in instances], True
                )
            )
        result["predict_float"] = outputs_of(prediction.Predict(as_float, timeout=TIMEOUT_S))

        def example_of(inst):
            example = example_pb2.Example()
            for name, value in inst.items():
                feature = example.features.feature[name]
                if isinstance(value, str):
                    feature.bytes_list.value.append(value.encode("utf-8"))
                elif isinstance(value, int):
                    feature.int64_list.value.append(value)
                else:
                    feature.float_list.value.append(value)
            return example

        examples = [example_of(inst) for inst in instances]
        serialized = predict_pb2.PredictRequest()
        serialized.model_spec.name = model
        inputs = serialized.inputs["inputs"]
        inputs.dtype = types_pb2.DT_STRING
        inputs.tensor_shape.dim.add().size = len(examples)
        inputs.string_val.extend(e.SerializeToString() for e in examples)
        result["predict_examples"] = outputs_of(prediction.Predict(serialized, timeout=TIMEOUT_S))

        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = model
        classify.input.example_list.examples.extend(examples)
        classified = prediction.Classify(classify, timeout=TIMEOUT_S)
        result["classify"] = [
            [[c.label, c.score] for c in item.classes]
            for item in classified.result.classifications
        ]
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = model
        regress.input.example_list.examples.extend(examples)
        regressed = prediction.Regress(regress, timeout=TIMEOUT_S)
        result["regress"] = [r.value for r in regressed.result.regressions]

        request.output_filter.append("classes")
        request.model_spec.version.value = version
        filtered = prediction.Predict(request, timeout=TIMEOUT_S)
        result["filtered_outputs"] = sorted(filtered.outputs)
        if result["filtered_outputs"] != ["classes"]:
            raise Failure(f"output_filter ['classes'] returned outputs {result['filtered_outputs']}")
        if tensor_to_list(types_pb2, "classes", filtered.outputs["classes"]) != result["predict"].get(
            "classes"
        ):
            raise Failure("filtered 'classes' differs from the unfiltered Predict")
        if filtered.model_spec.version.value != version:
            raise Failure(f"filtered Predict answered version {filtered.model_spec.version.value}")

        md_request = metadata_pb2.GetModelMetadataRequest()
        md_request.model_spec.name = model
        md_request.metadata_field.append("signature_def")
        md = prediction.GetModelMetadata(md_request, timeout=TIMEOUT_S)
        if "signature_def" not in md.metadata:
            raise Failure(f"GetModelMetadata has no 'signature_def' entry: {md}")
        sig_map = metadata_pb2.SignatureDefMap()
        if not md.metadata["signature_def"].Unpack(sig_map):
            raise Failure(
                "metadata['signature_def'] Any does not unpack into SignatureDefMap "
                f"(type_url {md.metadata['signature_def'].type_url!r})"
            )
        sig_name = "serving_default" if "serving_default" in sig_map.signature_def else None
        if sig_name is None:
            raise Failure(f"no serving_default signature; have {sorted(sig_map.signature_def)}")
        sig = sig_map.signature_def[sig_name]
        result["signature_inputs"] = {
            name: types_pb2.DataType.Name(info.dtype) for name, info in sorted(sig.inputs.items())
        }

        st_request = status_pb2.GetModelStatusRequest()
        st_request.model_spec.name = model
        st = model_service.GetModelStatus(st_request, timeout=TIMEOUT_S)
        result["status"] = [
            {
                "version": s.version,
                "state": status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": status_pb2.ErrorCode.Name(s.status.error_code),
            }
            for s in st.model_version_status
        ]

        result["health"] = {}
        for service in ("", "tensorflow.serving.PredictionService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
            result["health"][service] = health_pb2.HealthCheckResponse.ServingStatus.Name(
                reply.status
            )
    return result


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    target, model, instances_path, out_dir = sys.argv[1:5]
    try:
        with open(instances_path) as f:
            instances = [json.loads(line) for line in f if line.strip()]
        if not instances:
            raise Failure(f"no instances in {instances_path}")
        result = run(target, model, instances, out_dir)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        print(f"grpc error {code.name if code else 'UNKNOWN'}: {details}", file=sys.stderr)
        return 3
    except Failure as e:
        print(f"tf_serving_grpc: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # bad JSON, stub generation/import problems, ...
        print(f"tf_serving_grpc: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
