#!/usr/bin/env bash
# Builds the CPU image (the Dockerfile's default `cpu` target) with Debian's buildah when base
# images cannot be pulled: the runtime stage is FROM scratch, so only its files are needed, and
# rootfs.sh assembles them from this machine's release build (Debian bookworm, the build stage's
# own base) instead of the build stage. The binary is stripped as the build stage strips it.
#
#   deploy/image/build-local.sh            -> image localhost/mlengine:latest, size printed
#   SKIP_BUILD=1 deploy/image/build-local.sh    use target/release/mlengine as it is
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
command -v buildah >/dev/null || { echo "error: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --locked --bin mlengine
scripts/install-onnxruntime.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ctx"
strip --strip-all -o "$work/mlengine" target/release/mlengine
deploy/image/rootfs.sh "$work/ctx/rootfs" "$work/mlengine" .ort/cpu/lib 10001
printf 'FROM scratch\nCOPY rootfs/ /rootfs/\n' > "$work/ctx/Dockerfile"

# vfs storage and chroot isolation work inside an unprivileged container or VM.
bud=(buildah --storage-driver vfs bud --isolation chroot --layers=false --format docker)
"${bud[@]}" -t localhost/mlengine-rootfs:local "$work/ctx"
"${bud[@]}" --build-arg ROOTFS_STAGE=localhost/mlengine-rootfs:local --target cpu \
  -t localhost/mlengine:latest -f deploy/image/Dockerfile .
buildah --storage-driver vfs rmi --force localhost/mlengine-rootfs:local >/dev/null
buildah --storage-driver vfs images localhost/mlengine:latest
buildah --storage-driver vfs inspect --type image localhost/mlengine:latest \
  | python3 -c 'import json, sys; c = json.load(sys.stdin)["OCIv1"]["config"]; print(json.dumps({k: c.get(k) for k in ("User", "Entrypoint", "Cmd", "Env", "ExposedPorts", "WorkingDir")}, indent=1))'
