#!/usr/bin/env bash
# Creates the peer servers' virtual environments, one per peer, from pinned requirement files:
#   loadtest/peers/setup.sh [NAME...]      (no NAME: every peer; names as in peers.tsv)
# -> loadtest/.venv-<name>/ (git-ignored), built from requirements-<name>.txt.
# Idempotent: a venv stamped with its requirements file's sha256 is left alone, so a re-run with
# nothing changed takes well under a second. Installs missing Debian packages (apt-get update first)
# only when a peer needs them and they are absent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
loadtest="$(dirname "$here")"
all=(fastapi mlserver triton bentoml)

apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "setup.sh: apt-get install ${missing[*]}" >&2
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

build() {
  local name="$1" python="$2"
  local req="$here/requirements-$name.txt"
  local venv="$loadtest/.venv-$name"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup.sh: $name up to date ($venv)" >&2
    return 0
  fi
  echo "setup.sh: building $venv with $python" >&2
  local start=$SECONDS
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
  echo "setup.sh: $name ready in $((SECONDS - start)) s" >&2
}

# The venvs other than triton's use a CPython 3.11 (pyenv's if present, else the system's).
default_python() {
  if command -v python3.11 >/dev/null 2>&1; then echo python3.11; return; fi
  if ! command -v python3 >/dev/null 2>&1; then apt_ensure python3 python3-venv; fi
  python3 -c 'import ensurepip' 2>/dev/null || apt_ensure python3-venv
  echo python3
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${all[@]}")
for name in "${names[@]}"; do
  case "$name" in
    fastapi|mlserver|bentoml)
      build "$name" "$(default_python)"
      ;;
    triton|triton-batched)
      # nvidia-pytriton works only from Debian's Python: the bundled triton_python_backend_stub
      # links /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 (package libpython3.11); pyenv's
      # Python has no shared libpython.
      apt_ensure python3 python3-venv libpython3.11
      build triton /usr/bin/python3
      ;;
    *)
      echo "setup.sh: unknown peer '$name' (known: ${all[*]})" >&2
      exit 2
      ;;
  esac
done
