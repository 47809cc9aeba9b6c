#!/usr/bin/env bash
# Creates .venv with everything the toolkit, its tests and its demo need, and builds cuda_ext.
# Idempotent: re-running only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# Open3D's system libraries (Debian); only when missing and we can install them.
need_apt=()
for pkg in libusb-1.0-0 libgl1 libegl1 libgomp1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian libraries: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[setup] warning: missing Debian libraries ${need_apt[*]} (needed by open3d); install them as root" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if [ ! -f "$VENV/.deps-installed" ] || [ requirements.txt -nt "$VENV/.deps-installed" ]; then
  echo "[setup] installing Python packages (torch 2.13.0 CPU build first, so nothing pulls the CUDA build)"
  "$PY" -m pip install -q --upgrade pip setuptools wheel
  "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -r requirements.txt
  touch "$VENV/.deps-installed"
fi
echo "[setup] building cuda_ext"
MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation --no-deps -e . >/dev/null
