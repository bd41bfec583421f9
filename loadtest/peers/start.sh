#!/usr/bin/env bash
# Runs one peer server in the foreground, on 127.0.0.1 only:
#   loadtest/peers/start.sh NAME MODEL_ONNX HTTP_PORT GRPC_PORT
# NAME: fastapi | mlserver | triton | triton-batched | bentoml  (see peers.tsv; setup.sh first).
# Peers without gRPC ignore GRPC_PORT. The last step is `exec`, so this script's PID becomes the
# server's PID. Every peer forks children (uvicorn/bentoml workers, MLServer inference workers,
# tritonserver + its python-backend stub), so stop a peer by signalling its whole process group:
# start it with `setsid` (or as the leader of a new group) and `kill -TERM -- -PGID`. A plain SIGTERM
# to the top PID also shuts every peer down cleanly, but SIGKILL to it alone would orphan children.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
loadtest="$(dirname "$here")"
if [[ $# -ne 4 ]]; then
  echo "usage: $0 NAME MODEL_ONNX HTTP_PORT GRPC_PORT" >&2
  exit 2
fi
name="$1"
model="$(realpath "$2")"
http_port="$3"
grpc_port="$4"
[[ -f "$model" ]] || { echo "start.sh: no model file $model" >&2; exit 2; }

venv_for() { echo "$loadtest/.venv-$1"; }
need_venv() {
  [[ -x "$(venv_for "$1")/bin/python" ]] || { echo "start.sh: run loadtest/peers/setup.sh $1 first" >&2; exit 2; }
}
export PYTHONPATH="$here"
export PYTHONUNBUFFERED=1
export ORT_INTRA_OP_THREADS="${ORT_INTRA_OP_THREADS:-1}"

case "$name" in
  fastapi)
    need_venv fastapi
    venv="$(venv_for fastapi)"
    export MODEL_ONNX="$model"
    exec "$venv/bin/uvicorn" fastapi_app:app --app-dir "$here" \
      --host 127.0.0.1 --port "$http_port" --workers "${FASTAPI_WORKERS:-2}" \
      --loop uvloop --http httptools --no-access-log --log-level warning
    ;;

  mlserver)
    need_venv mlserver
    venv="$(venv_for mlserver)"
    # MLServer reads settings.json + model-settings.json from a folder: write them per port, in the
    # (git-ignored) venv, and run from there so nothing it creates lands in the repository.
    run="$venv/run/$http_port"
    rm -rf "$run"
    mkdir -p "$run/census"
    cat > "$run/settings.json" <<EOF
{
  "host": "127.0.0.1",
  "http_port": $http_port,
  "grpc_port": $grpc_port,
  "parallel_workers": ${MLSERVER_PARALLEL_WORKERS:-0},
  "metrics_endpoint": null,
  "debug": false,
  "gzip_enabled": false,
  "load_models_at_startup": true
}
EOF
    cat > "$run/census/model-settings.json" <<EOF
{
  "name": "census",
  "implementation": "mlserver_runtime.CensusRuntime",
  "parameters": {"uri": "$model"}
}
EOF
    cd "$run"
    exec "$venv/bin/mlserver" start "$run"
    ;;

  triton|triton-batched)
    need_venv triton
    venv="$(venv_for triton)"
    if [[ "$name" == triton ]]; then
      export TRITON_MAX_BATCH=0  # no Triton batching: inputs have shape [N]
    else
      export TRITON_MAX_BATCH="${TRITON_MAX_BATCH:-64}"  # dynamic batcher: inputs have shape [N, 1]
    fi
    # PyTriton's workspace (unix sockets, the generated model store): per port, inside the venv;
    # a run killed with SIGKILL leaves it behind, so clear it first.
    export TRITON_WORKSPACE="$venv/run/$http_port"
    rm -rf "$TRITON_WORKSPACE"
    mkdir -p "$(dirname "$TRITON_WORKSPACE")"
    exec "$venv/bin/python" "$here/triton_server.py" "$model" "$http_port" "$grpc_port"
    ;;

  bentoml)
    need_venv bentoml
    venv="$(venv_for bentoml)"
    export MODEL_ONNX="$model"
    export BENTOML_HOME="$venv/bentoml-home"  # not ~/bentoml
    export BENTOML_DO_NOT_TRACK=True
    exec "$venv/bin/bentoml" serve bentoml_service:Census --working-dir "$here" \
      --host 127.0.0.1 --port "$http_port"
    ;;

  *)
    echo "start.sh: unknown peer '$name' (see $here/peers.tsv)" >&2
    exit 2
    ;;
esac
