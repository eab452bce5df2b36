#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 (pyaeron ships cp312+ wheels only) and install hftmm into it.
# Looks on PATH first, then in pyenv's versions; re-installs when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.installed

is_ok() {  # is_ok PYTHON -> true when it runs and is >= 3.12
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local want cand
  want=$(tr -d '[:space:]' < .python-version 2>/dev/null || true)
  for cand in "python$want" python3.12 python3.13 python3.14 python3; do
    if command -v "$cand" >/dev/null 2>&1 && is_ok "$cand"; then command -v "$cand"; return; fi
  done
  local root=${PYENV_ROOT:-$HOME/.pyenv}
  for cand in "$root"/versions/"$want"*/bin/python3 "$root"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$cand" ] && is_ok "$cand"; then echo "$cand"; return; fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_ok "$VENV/bin/python"; then
  if ! PY=$(find_python); then
    echo "hftmm needs Python >= 3.12 (none found on PATH or in pyenv): install it, e.g. 'pyenv install 3.12' or 'apt-get install python3.12'." >&2
    exit 1
  fi
  echo "creating $VENV with $PY ($("$PY" --version 2>&1))" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "installing hftmm and its dependencies into $VENV (log: $VENV/install.log)" >&2
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
         "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[dev]'; } > "$VENV/install.log" 2>&1; then
    tail -n 30 "$VENV/install.log" >&2
    echo "installing into $VENV failed; the whole log is $VENV/install.log" >&2
    exit 1
  fi
  touch "$STAMP"
fi
