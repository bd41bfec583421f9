#!/usr/bin/env bash
# Creates (once) a Python virtual environment for a requirements file and prints its python.
#   scripts/python-env.sh NAME REQUIREMENTS.txt  ->  .venv/NAME/bin/python
# Re-running is cheap: the environment is rebuilt only when the requirements file changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="$1"
req="$2"
venv="$root/.venv/$name"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi
python=python3.11
command -v "$python" >/dev/null 2>&1 || python=python3
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
