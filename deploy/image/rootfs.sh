#!/usr/bin/env bash
# Assembles the runtime image's whole file system in DEST: the mlengine binary, ONNX Runtime's
# libraries, every shared library either of them loads (as ldd resolves them here, so DEST must
# be built on the glibc the binary was built against), CA certificates, the bundled census model,
# and passwd/group entries for the non-root user. The Dockerfile's build stage runs it; so does
# build-local.sh, on this machine's build.
#
#   deploy/image/rootfs.sh DEST BINARY ORT_LIB_DIR UID
set -euo pipefail
dest="$1" binary="$2" ort="$3" uid="$4"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/opt/mlengine/lib" "$dest/opt/mlengine/models/census" \
  "$dest/etc/ssl/certs" "$dest/var/lib/mlengine" "$dest/tmp"
install -m 0755 "$binary" "$dest/usr/local/bin/mlengine"
cp -a "$ort"/libonnxruntime*.so* "$dest/opt/mlengine/lib/"

# The libraries, at the paths the loader looks in (the interpreter's path is fixed in the binary).
libs() {
  ldd "$1" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(/ { print $1 }'
}
{
  libs "$binary"
  for so in "$ort"/libonnxruntime*.so*; do
    [[ -L "$so" ]] || libs "$so"
  done
} | sort -u | while read -r lib; do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done

# The newest version of the bundled model, as version 1 of model `census`.
latest="$(ls -d "$root"/models/census/export/Servo/*/ | sort | tail -n 1)"
cp -r "$latest" "$dest/opt/mlengine/models/census/1"

# Buckets are reached over TLS; the build stage (rust:*-bookworm) always has the bundle.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/"
else
  echo "rootfs.sh: warning: no /etc/ssl/certs/ca-certificates.crt here; the image will not trust bucket endpoints" >&2
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nmlengine:x:%s:%s:mlengine:/var/lib/mlengine:/sbin/nologin\n' \
  "$uid" "$uid" > "$dest/etc/passwd"
printf 'root:x:0:\nmlengine:x:%s:\n' "$uid" > "$dest/etc/group"
printf 'hosts: files dns\n' > "$dest/etc/nsswitch.conf"
chmod 1777 "$dest/tmp"
chown -R "$uid:$uid" "$dest/var/lib/mlengine"
