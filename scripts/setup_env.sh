#!/usr/bin/env bash
# Create (or reuse) .venv and install the pinned dependencies and the helper package.
# Reinstalls only when requirements*.txt or pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else print(f"warning: Python {v[0]}.{v[1]}; the pins are tested on 3.11"))' || true
  echo "creating .venv with $python"
  "$python" -m venv .venv
fi
stamp=.venv/.installed-requirements
wanted=$(cat requirements.txt requirements-common.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing pinned dependencies into .venv (first time: several minutes)"
  # (the grep drops pip's notes about this machine's unused local index folders)
  .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt -e . \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$wanted" > "$stamp"
fi
