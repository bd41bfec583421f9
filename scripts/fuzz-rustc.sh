#!/bin/sh
# rustc for the workspace's own crates when fuzzing (RUSTC_WORKSPACE_WRAPPER): LLVM's
# SanitizerCoverage through flags stable Rust accepts, the instrumentation libFuzzer reads.
# Dependencies are built as in the test build and shared with it; build scripts are left alone
# (they run on the host and have no libFuzzer to link).
rustc="$1"
shift
case " $* " in
  *" --crate-name build_script_"*) exec "$rustc" "$@" ;;
esac
exec "$rustc" "$@" \
  -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions \
  -Coverflow-checks \
  --cfg fuzzing
