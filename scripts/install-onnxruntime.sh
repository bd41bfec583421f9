#!/usr/bin/env bash
# Installs ONNX Runtime's shared library into the project's git-ignored .ort folder, from the
# onnxruntime wheel on PyPI (the only registry reachable here; ort's own download is not).
# Idempotent: does nothing when the pinned library is already in place.
#   scripts/install-onnxruntime.sh          CPU build  -> .ort/cpu/lib/libonnxruntime.so
#   scripts/install-onnxruntime.sh --gpu    CUDA build -> .ort/gpu/lib/libonnxruntime.so
set -euo pipefail

VERSION=1.31.1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "--gpu" ]]; then
  pip_name=onnxruntime-gpu
  sha256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6
  dest="$root/.ort/gpu/lib"
else
  pip_name=onnxruntime
  sha256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
  dest="$root/.ort/cpu/lib"
fi

stamp="$dest/.installed-$pip_name-$VERSION"
if [[ -f "$stamp" && -f "$dest/libonnxruntime.so" ]]; then
  exit 0
fi

python=python3.11
command -v "$python" >/dev/null 2>&1 || python=python3

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-onnxruntime: fetching $pip_name==$VERSION from PyPI" >&2
# The wheel is pinned by version and hash (the cp311 manylinux_2_28 x86_64 build).
echo "$pip_name==$VERSION --hash=sha256:$sha256" > "$work/requirements.txt"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
  --python-version 3.11 --platform manylinux_2_28_x86_64 --implementation cp \
  -r "$work/requirements.txt" -d "$work"
whl="$(ls "$work"/*.whl | head -n 1)"
"$python" - "$whl" "$work/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if "/capi/" in name and ".so" in name and "pybind11" not in name:
            z.extract(name, sys.argv[2])
PY
mkdir -p "$dest"
tmp="$dest.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
cp "$work"/x/*/capi/*.so* "$tmp/"
lib="$(ls "$tmp"/libonnxruntime.so.* | head -n 1)"
ln -s "$(basename "$lib")" "$tmp/libonnxruntime.so"
rm -rf "$dest" && mv "$tmp" "$dest"
touch "$stamp"
echo "install-onnxruntime: installed $(basename "$lib") into $dest" >&2
