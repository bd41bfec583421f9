#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes (fuzz/), on stable Rust: libFuzzer
# from libfuzzer-sys, SanitizerCoverage added by scripts/fuzz-rustc.sh.
#
#   scripts/fuzz.sh                       every target for 20,000 executions from a fixed seed, a
#                                         few seconds (what the test command runs)
#   scripts/fuzz.sh --seconds 3600 T...   targets T for an hour each
#   scripts/fuzz.sh --runs 10000000       every target for 10 million executions
#   --max-len N                           the largest input tried (default 65536 bytes)
#
# Corpora grow in target/fuzz/corpus/<target> (seeded from fuzz/seeds/<target>; target/ is
# $CARGO_TARGET_DIR when set); a crash, a panic, a timeout or an oversized allocation leaves its
# input in target/fuzz/artifacts/<target>/ and fails the script. Copy such an input to
# fuzz/regressions/<target>/ with the fix: the test command replays that folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-target}"
limit=(-runs=20000 -seed=1)
max_len=65536
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    --max-len) max_len="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mlengine-fuzz$')
fi
RUSTC_WORKSPACE_WRAPPER="$root/scripts/fuzz-rustc.sh" \
  cargo build --release --locked -p mlengine-fuzz --bins
failed=()
for t in "${targets[@]}"; do
  bin="$target_dir/release/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no target named $t" >&2; exit 2; }
  corpus="$target_dir/fuzz/corpus/$t"
  artifacts="$target_dir/fuzz/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  log="$target_dir/fuzz/$t.log"
  if "$bin" "${limit[@]}" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$artifacts" "${dirs[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
  echo "fuzz $t: $status, ${runs:-?} executions in ${secs:-?} s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) files"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]} (inputs under $target_dir/fuzz/artifacts/)" >&2
  exit 1
fi
