# Sourced by the build scripts: sets `libtorch_prefix` and `libtorch_cmake_args` for the LibTorch
# calq builds against (docs/architecture.md §11). Default: the PyTorch wheel in the Python
# environment of scripts/setup.sh. CALQ_LIBTORCH=DIR: another LibTorch (DIR holds
# share/cmake/Torch); CALQ_TORCH_PYTHON=PYTHON: the torch of another Python.
# `libtorch_reset_if_other BUILD_DIR` forgets a build folder's configuration made against another.
if [[ -n "${CALQ_LIBTORCH:-}" ]]; then
  libtorch_prefix="$CALQ_LIBTORCH"
else
  libtorch_python="${CALQ_TORCH_PYTHON:-${CALQ_VENV:-$root/.venv}/bin/python}"
  if ! command -v "$libtorch_python" >/dev/null 2>&1; then
    echo "build: $libtorch_python not found; expected the Python environment of scripts/setup.sh (or set CALQ_LIBTORCH)" >&2
    exit 1
  fi
  # The torch folder itself, not torch.utils.cmake_prefix_path (its share/cmake): with the
  # folder as the prefix, its lib/ wins over a system LibTorch (Debian's libtorch-dev) when
  # TorchConfig.cmake looks for c10 and friends.
  libtorch_prefix="$("$libtorch_python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
fi
libtorch_torch_dir="$libtorch_prefix/share/cmake/Torch"
if [[ ! -f "$libtorch_torch_dir/TorchConfig.cmake" ]]; then
  echo "build: $libtorch_torch_dir/TorchConfig.cmake not found; expected a LibTorch there" >&2
  exit 1
fi
libtorch_cmake_args=("-DCMAKE_PREFIX_PATH=$libtorch_prefix" "-DTorch_DIR:PATH=$libtorch_torch_dir")

libtorch_reset_if_other() {
  local cache="$1/CMakeCache.txt"
  # The entry's type is PATH or, when it came from -D without a type, UNINITIALIZED.
  if [[ -f "$cache" ]] && [[ "$(sed -n 's/^Torch_DIR:[A-Z]*=//p' "$cache")" != "$libtorch_torch_dir" ]]; then
    echo "build: $1 was configured against another LibTorch; configuring it afresh" >&2
    rm -rf "$cache" "$1/CMakeFiles"
  fi
}
