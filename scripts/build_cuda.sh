#!/usr/bin/env bash
# Compiles and links calq's CUDA build (CALQ_CUDA=ON) on a machine with nvcc but no GPU: what CI
# runs to keep core/kernels/*_cuda.cu building (docs/kernels.md §4). Nothing is run. Idempotent:
# the venv, the configure and the build are each redone only as far as something changed.
#
#   scripts/build_cuda.sh            # .venv-cuda/ (torch from requirements-cuda.txt), build-cuda/
#
# Environment: CALQ_CUDA_VENV (default <repo>/.venv-cuda), CALQ_CUDA_BUILD (<repo>/build-cuda),
# CALQ_JOBS (nproc), CALQ_CUDA_ARCH (90), NVCC (nvcc on PATH, else /usr/local/cuda/bin/nvcc).
# The GPU machine, which has a PyTorch but no registry, uses scripts/build-cuda.sh instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CALQ_CUDA_VENV:-$root/.venv-cuda}"
build="${CALQ_CUDA_BUILD:-$root/build-cuda}"
jobs="${CALQ_JOBS:-$(nproc)}"
arch="${CALQ_CUDA_ARCH:-90}"
begin=$(date +%s)
log() { echo "build_cuda: $*" >&2; }

# The compiler. LibTorch's CMake config (Caffe2 public/cuda.cmake) still runs the old FindCUDA,
# which guesses the toolkit from nvcc's folder: /usr/local/bin/nvcc (on PATH here, outside the
# toolkit) gives /usr/local, without include/ or libcudart. The toolkit's own nvcc and root are
# named explicitly.
nvcc="${NVCC:-}"
if [ -z "$nvcc" ]; then
  for candidate in /usr/local/cuda/bin/nvcc "$(command -v nvcc || true)"; do
    if [ -x "$candidate" ] && [ -f "$(dirname "$(dirname "$(realpath "$candidate")")")/include/cuda_runtime.h" ]; then
      nvcc="$candidate"
      break
    fi
  done
fi
[ -n "$nvcc" ] && [ -x "$nvcc" ] || { log "no nvcc inside a CUDA toolkit (set NVCC)"; exit 1; }
nvcc="$(realpath "$nvcc")"
cuda_root="$(dirname "$(dirname "$nvcc")")"
[ -f "$cuda_root/include/cuda_runtime.h" ] || { log "$cuda_root has no include/cuda_runtime.h"; exit 1; }
nvcc_version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"

# The pinned PyTorch wheel (a CUDA build: its LibTorch carries libtorch_cuda and the CUDA
# headers' users; the nvidia-* wheels it pulls supply cuDNN/NCCL, which calq does not link).
pinned="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$root/requirements-cuda.txt")"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [ "${installed%%+*}" != "$pinned" ]; then
  log "installing torch==$pinned into $venv (about 5.5 GB)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements-cuda.txt" 2>&1 |
    grep -v "^WARNING: Location" >&2 || true
fi
read -r torch_version torch_dir torch_cmake < <("$venv/bin/python" -W ignore -c '
import os, torch, torch.utils
assert torch.version.cuda, "CPU-only PyTorch"
print(torch.__version__, os.path.dirname(torch.__file__), torch.utils.cmake_prefix_path)' 2>/dev/null)

# Configure. The torch folder itself comes first on CMAKE_PREFIX_PATH: TorchConfig.cmake finds
# its libraries with find_library(... PATHS <torch>/lib), which searches the system folders
# before PATHS, so a Debian libtorch-dev (this machine's CPU LibTorch) would otherwise win.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}" TORCH_CUDA_ARCH_LIST="${arch:0:1}.${arch:1}" \
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCALQ_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_dir;$torch_cmake" -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DCALQ_BUILD_TESTS=ON -DCALQ_BUILD_BENCH=OFF "${launcher[@]}" >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; log "configure failed"; exit 1; }

# Build only what CI needs: the libraries (the kernels are in calq_core), the CLI and the CUDA
# parity tests; calq_tests, the CPU suite, is the CPU build's.
targets=(calq_core calq_calib calq_algorithms calq calq_cuda_tests)
CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}" nice cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# Everything linked against the wheel's LibTorch, not another one on the system.
for exe in "$build/calq" "$build/tests/calq_cuda_tests"; do
  ldd "$exe" | grep -q "$torch_dir/lib/libtorch_cuda.so" ||
    { log "$exe does not link $torch_dir/lib/libtorch_cuda.so"; exit 1; }
done
echo "calq CUDA build: compiled and linked ${#targets[@]} targets against torch $torch_version" \
  "with nvcc $nvcc_version (sm_$arch) in $(( $(date +%s) - begin )) s; $build" >&2
