#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine (as root): Debian packages (compilers, cross
# toolchains and QEMU), then .venv/ with torch pinned first (an unpinned torch would pull a
# multi-GB CUDA build), then the project, then the QEMU instruction-counting plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=($1)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[verify,frameworks,test,bench]"
# The QEMU plugin that counts instructions (verify builds it on first use when this step did not).
.venv/bin/python -c "from targets.counting import plugin_path; print('instruction counter:', plugin_path())"
