#!/usr/bin/env bash
# Packs what loadtest/device/cores.sh needs on a lent machine that can reach nothing outside it:
# the release server (stripped), ONNX Runtime's CPU library, wrk and h2load with the libraries they
# load beyond glibc and OpenSSL, and prebuilt request bodies, into .device/kit.tar.xz (ignored by
# git; about 17 MB, inside the 64 MiB a call may carry). Run here, then on the device:
#
#   run(command="loadtest/device/cores.sh", carry=[".device"], timeout_s=540)
#
# Everything here is built against glibc 2.36 or older (Debian 12), so it runs on newer ones.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
data="${MLENGINE_CENSUS_DATA:-$root/../shared/data/census}/adult.test"
[[ -f "$data" ]] || { echo "error: census data not found: $data (set MLENGINE_CENSUS_DATA)" >&2; exit 1; }
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release -p mlengine
  cargo build --release -p mlengine-loadtest
fi
scripts/install-onnxruntime.sh
for tool in wrk:wrk h2load:nghttp2-client; do
  command -v "${tool%%:*}" >/dev/null && continue
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null
done
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/bodies"
strip -o "$stage/bin/mlengine" target/release/mlengine
cp "$(command -v wrk)" "$(command -v h2load)" "$stage/bin/"
ort="$(readlink -f .ort/cpu/lib/libonnxruntime.so)"
cp "$ort" .ort/cpu/lib/libonnxruntime_providers_shared.so "$stage/lib/"
ln -s "$(basename "$ort")" "$stage/lib/libonnxruntime.so"
# The clients' own libraries (glibc, libstdc++ and OpenSSL 3 are on any current distribution).
for lib in $(ldd "$(command -v wrk)" "$(command -v h2load)" | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|libstdc++.so*|libssl.so*|libcrypto.so*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
for protocol in cloudml grpc-kserve; do
  target/release/loadgen body --protocol "$protocol" --data "$data" --out "$stage/bodies/$protocol.body"
done
mkdir -p .device
tar -C "$stage" -cf - . | xz -T0 -6 > .device/kit.tar.xz.tmp
mv .device/kit.tar.xz.tmp .device/kit.tar.xz
ls -l .device/kit.tar.xz
