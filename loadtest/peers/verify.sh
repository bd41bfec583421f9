#!/usr/bin/env bash
# Smoke test of peers: start, wait for ready, check answers against onnxruntime (check.py),
# time one connection, stop with SIGTERM to the process group, and make sure nothing is left.
#   loadtest/peers/verify.sh MODEL_ONNX [NAME...]      (no NAME: every peer in peers.tsv)
# Ports: 18080/18081 (+ the peer's own extras, see README). Logs: /tmp/peer-<name>.log
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
loadtest="$(dirname "$here")"
root="$(dirname "$loadtest")"
model="$(realpath "$1")"
shift
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  mapfile -t names < <(grep -v '^#' "$here/peers.tsv" | cut -f1)
fi
http_port="${PEER_HTTP_PORT:-18080}"
grpc_port="${PEER_GRPC_PORT:-18081}"
status=0

descendants() {  # every process below $1 (BentoML workers leave the process group: see README)
  local c
  for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done
}
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && echo "$p"; done; true; }

for name in "${names[@]}"; do
  ready_path="$(awk -F'\t' -v n="$name" '$1 == n {print $4}' "$here/peers.tsv")"
  venv="$loadtest/.venv-${name%-batched}"
  log="/tmp/peer-$name.log"
  echo "== $name"
  start=$(date +%s%N)
  setsid "$here/start.sh" "$name" "$model" "$http_port" "$grpc_port" > "$log" 2>&1 &
  pgid=$!
  ready=""
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:$http_port$ready_path"; then ready=1; break; fi
    kill -0 "$pgid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$ready" ]]; then
    echo "  NOT READY; last log lines:"; tail -n 20 "$log" | sed 's/^/    /'
    kill -TERM -- "-$pgid" 2>/dev/null || true
    status=1
    continue
  fi
  tree=("$pgid" $(descendants "$pgid"))
  echo "  ready after $(( ($(date +%s%N) - start) / 1000000 )) ms (processes: ${#tree[@]}, in its group: $(pgrep -g "$pgid" | wc -l))"
  (cd "$root" && "$venv/bin/python" "$here/check.py" "$name" "$model" "$http_port" "$grpc_port") || status=1
  kill -TERM -- "-$pgid"
  for _ in $(seq 1 100); do [[ -z "$(alive "${tree[@]}")" ]] && break; sleep 0.1; done
  left=($(alive "${tree[@]}"))
  if [[ ${#left[@]} -gt 0 ]]; then
    echo "  LEFT BEHIND after 10 s:"; ps -o pid,stat,cmd -p "${left[*]}" | sed 's/^/    /'
    kill -KILL "${left[@]}" 2>/dev/null || true
    status=1
  else
    echo "  stopped cleanly: none of its ${#tree[@]} processes left"
  fi
  if ss -ltn | grep -qE "127.0.0.1:($http_port|$grpc_port)\b"; then echo "  PORT STILL BOUND"; status=1; fi
done
exit $status
