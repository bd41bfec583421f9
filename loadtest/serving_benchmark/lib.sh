# Shared by run.sh and sweep.sh: process-group bookkeeping, free ports, starting and stopping one
# server at a time, and one load run. Expects: root, results, loadgen, data, duration, warmup,
# threads set by the caller.

# mlengine and the load generator in release mode (unless SKIP_BUILD=1), and ONNX Runtime. Two
# invocations: building both packages in one would unify their dependencies' features and
# rebuild mlengine's dependencies with the load generator's (hyper client, ...).
build_release() {
  if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== building"
    nice -n 10 cargo build --release -p mlengine
    nice -n 10 cargo build --release -p mlengine-loadtest
  fi
  scripts/install-onnxruntime.sh
  loadgen="$root/target/release/loadgen"
  mlengine="$root/target/release/mlengine"
}

# Every process group we start, stopped on any exit (failure and Ctrl-C included).
groups=()
work="$(mktemp -d "${TMPDIR:-/tmp}/serving-benchmark.XXXXXX")"
status=1
cleanup() {
  local pg
  for pg in "${groups[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for pg in "${groups[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ "$status" == 0 && "${KEEP_LOGS:-}" != 1 ]]; then
    rm -rf "$work"
  else
    echo "server logs kept in $work" >&2
  fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

free_ports() { # count -> free loopback ports, one a line
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

server_pid=""
server_label=""
start_server() { # label ready_url command...
  server_label="$1"
  local ready_url="$2"
  shift 2
  local log="$work/$server_label.log"
  local since
  since="$(date +%s%3N)"
  setsid "$@" > "$log" 2>&1 < /dev/null &
  server_pid=$!
  groups+=("$server_pid")
  local ready
  if ! ready="$("$loadgen" wait-ready --url "$ready_url" --timeout 120s --since-epoch-ms "$since")"; then
    echo "error: $server_label did not become ready; its log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  echo "== $server_label ready after ${ready} ms (pid $server_pid)"
  sleep 1
  "$loadgen" rss --pid "$server_pid" --label "$server_label" --ready-ms "$ready" \
    --out "$results/idle-rss--$server_label.json"
}

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  kill -TERM -- "-$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

load() { # scenario protocol target [loadgen run flags...]; never fatal
  local scenario="$1" protocol="$2" target="$3"
  shift 3
  sleep 0.5
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "warning: $server_label is not running; skipping $scenario $protocol" >&2
    return 0
  fi
  "$loadgen" run --target "$target" --protocol "$protocol" --data "$data" \
    --duration "${duration}s" --warmup "${warmup}s" --threads "$threads" --pid "$server_pid" \
    --label "$server_label" --scenario "$scenario" \
    --out "$results/$scenario--$server_label--$protocol.json" "$@" \
    || echo "warning: $scenario $protocol against $server_label failed" >&2
}

throughput() { # result file -> ok/s (0 if missing)
  sed -n 's/^  "throughput_rps": \([0-9.]*\).*/\1/p' "$1" 2>/dev/null | head -n 1 | grep . || echo 0
}

rate_of() { # throughput factor -> requests/s (at least 1)
  awk -v t="$1" -v f="$2" 'BEGIN { r = t * f; if (r < 1) r = 1; printf "%.0f\n", r }'
}

