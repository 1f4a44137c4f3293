#!/bin/sh
# Create a virtualenv even where Debian's python3-venv (ensurepip) is not installed:
# fall back to a venv without pip and bootstrap pip from its wheel on PyPI.
set -eu
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "azure-auth-proxy needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
fi
rm -rf "$VENV"
if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  echo "python3-venv/ensurepip missing: bootstrapping pip from PyPI" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv --without-pip "$VENV"
  "$VENV/bin/python" - <<'PY'
import json, subprocess, sys, tempfile, urllib.request, os
meta = json.load(urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60))
wheel = next(f for f in meta["urls"] if f["filename"].endswith(".whl"))
path = os.path.join(tempfile.mkdtemp(), wheel["filename"])
urllib.request.urlretrieve(wheel["url"], path)
subprocess.check_call([sys.executable, f"{path}/pip", "install", "--quiet", path])
PY
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
