#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install bayescred (editable) with its test extras.
# Idempotent: a second run only re-installs when pyproject.toml changed.
# VENV=dir chooses another environment folder; PYTHON=python3.13 (a name on PATH or a pyenv
# version such as 3.13) chooses the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}

find_python() {
  if [ -n "${PYTHON:-}" ]; then
    local want=${PYTHON#python}
    for c in "$PYTHON" $(command -v pyenv >/dev/null 2>&1 && ls -d "$(pyenv root)"/versions/"$want"*/bin/python3 2>/dev/null); do
      if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then echo "$c"; return 0; fi
    done
    echo "bootstrap: $PYTHON not found on PATH or under pyenv" >&2
    return 1
  fi
  local candidates=(python3.13 python3.12 python3)
  if command -v pyenv >/dev/null 2>&1; then
    for d in "$(pyenv root)"/versions/3.1[2-9]*/bin; do candidates+=("$d/python3"); done
  fi
  for c in "${candidates[@]}"; do
    if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$c" || echo "$c"; return 0
    fi
  done
  echo "bayescred needs Python >= 3.12 (PyMC 6, ArviZ 1); none found on PATH or under pyenv" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python)
  echo "bootstrap: creating $VENV with $py"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
stamp=$VENV/.bayescred-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing bayescred[test,fast] into $VENV"
  "$VENV/bin/python" -m pip install -q -e ".[test,fast]"
  touch "$stamp"
fi
