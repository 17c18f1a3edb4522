#!/usr/bin/env bash
# Installs calq's build dependencies from Debian packages, then the Python environment (.venv, or
# $CALQ_VENV, from requirements.txt): its PyTorch wheel is also the LibTorch calq builds against
# (scripts/libtorch.sh), and transformers is the ground truth for every family.
# Idempotent and quiet: when every package is installed and the venv was made from the same
# requirements.txt it does nothing (no apt-get update, no network).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libeigen3-dev libopenblas-dev libyaml-cpp-dev catch2
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libicu-dev
  gnuplot-nox python3
  libgloo-dev  # headers c10d's ProcessGroupGloo.hpp includes (core/dist/communicator.cpp)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" python3-venv >/dev/null
  echo "setup: packages done" >&2
fi

"$root/scripts/setup_venv.sh"
