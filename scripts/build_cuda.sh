#!/usr/bin/env bash
# calq's one CUDA build script (CALQ_CUDA=ON; docs/kernels.md §3–§5). Two machines use it:
#  - CI, with nvcc and a package registry but no GPU: compiles and links the kernels, calq_core
#    and calq_cuda_tests against the pinned PyTorch wheel of requirements-cuda.txt, installed
#    into .venv-cuda/ (only there is a venv ever made). Nothing is run.
#  - the GPU machine, with nvcc and a PyTorch with CUDA but no registry: CALQ_TORCH_PYTHON names
#    the Python whose torch to build against (no venv, no pip). calq's other dependencies come
#    from Debian packages fetched beforehand where apt works (`fetch`) and unpacked (dpkg -x) into
#    a private prefix under the .debs folder, never over the system; scripts/device_check.sh.
#
#   scripts/build_cuda.sh                              # CI: .venv-cuda/, build-cuda/
#   CALQ_TORCH_PYTHON=python3 scripts/build_cuda.sh    # against that Python's torch
#   scripts/build_cuda.sh fetch                        # where apt works: .deb files into .debs/
#   scripts/build_cuda.sh env                          # the exports that run the built binaries
#
# Environment: CALQ_TORCH_PYTHON (unset: .venv-cuda/), CALQ_DEBS (<repo>/.debs; used when it
# holds .deb files), CALQ_CUDA_BUILD (<repo>/build-cuda), CALQ_CUDA_TARGETS (default
# "calq_core calq_cuda_tests"; device_check.sh adds calq), CALQ_CUDA_VENV (<repo>/.venv-cuda),
# CALQ_JOBS (nproc), CALQ_CUDA_ARCH (90), NVCC (the toolkit's nvcc, else nvcc on PATH).
# Idempotent: the venv, the configure and the build are each redone only as far as needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmd="${1:-build}"
debs="$(realpath -m "${CALQ_DEBS:-$root/.debs}")"
prefix="$debs/root"
log() { echo "build_cuda: $*" >&2; }

# calq's build dependencies besides LibTorch, CMake and a compiler (scripts/setup.sh), with the
# runtime libraries they link.
packages=(libeigen3-dev libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread
          libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
          catch2 libicu-dev pkgconf libpkgconf3)
lib_dirs() {
  echo "$prefix/usr/lib/x86_64-linux-gnu/openblas-pthread:$prefix/usr/lib/x86_64-linux-gnu"
}
have_debs() { ls "$debs"/*.deb >/dev/null 2>&1; }
torch_python() { echo "${CALQ_TORCH_PYTHON:-${CALQ_CUDA_VENV:-$root/.venv-cuda}/bin/python}"; }

case "$cmd" in
  fetch)
    mkdir -p "$debs"
    # Every package these depend on, less what any Linux with a C++ compiler has (the C and C++
    # runtimes and their headers) and virtual names apt cannot download.
    mapfile -t all < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${packages[@]}" | grep '^[a-z0-9]' | sort -u |
      grep -Ev '^(libc6|libc6-dev|libc-dev-bin|libgcc-s1|libgcc-.*-dev|libstdc\+\+6|libstdc\+\+-.*-dev|gcc.*|g\+\+.*|cpp.*|linux-libc-dev|libcrypt.*|debconf.*|dpkg|perl.*|tar|coreutils|dpkg-dev|make|binutils.*|libbinutils|libgprofng0|libctf.*|libjansson4|libzstd1|zlib1g|libgomp1|libquadmath0|libatomic1|libasan.*|liblsan.*|libtsan.*|libubsan.*|libitm1|libhwasan0|libisl.*|libmpc3|libmpfr6|libgmp10|libcc1-0|libnsl.*|libtirpc.*|libkrb5.*|libgssapi.*|libk5crypto3|libcom-err2|libkeyutils1|libssl3|libselinux1|libpcre2.*|libbz2-1.0|liblzma5|libmd0|libtinfo6|libdebconfclient0|libaudit.*|libcap-ng0|libpam.*|libsemanage.*|libsepol2|libacl1|libattr1|libdb5.3|libgdbm.*|libexpat1.*|sensible-utils|libsframe.*|libopenblas.*-openmp.*|libopenblas.*-serial.*|icu-devtools|rpcsvc-proto|pkg-config)$' || true)
    downloadable=()
    for p in "${all[@]}"; do
      apt-cache show --no-all-versions "$p" >/dev/null 2>&1 && downloadable+=("$p")
    done
    (cd "$debs" && apt-get download -qq "${downloadable[@]}" >/dev/null)
    log "$(ls "$debs"/*.deb | wc -l) packages, $(du -sh "$debs" | cut -f1) in $debs"
    exit 0
    ;;
  env)
    torch_lib="$("$(torch_python)" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    dirs="$torch_lib"
    have_debs && dirs="$(lib_dirs):$dirs"
    echo "export LD_LIBRARY_PATH=\"$dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    exit 0
    ;;
  build) ;;
  *)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

build="$(realpath -m "${CALQ_CUDA_BUILD:-$root/build-cuda}")"
jobs="${CALQ_JOBS:-$(nproc)}"
arch="${CALQ_CUDA_ARCH:-90}"
read -r -a targets <<<"${CALQ_CUDA_TARGETS:-calq_core calq_cuda_tests}"
begin=$(date +%s)

# The compiler. LibTorch's CMake config (Caffe2 public/cuda.cmake) still runs the old FindCUDA,
# which guesses the toolkit from nvcc's folder: a wrapper on PATH outside the toolkit (as
# /usr/local/bin/nvcc here) gives a root without include/ or libcudart. The toolkit's own nvcc
# and root are named explicitly.
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

# The LibTorch: the given Python's, or the pinned wheel in .venv-cuda/ (a CUDA build: its
# LibTorch carries libtorch_cuda; the nvidia-* wheels it pulls supply cuBLAS/cuSPARSE/cuSOLVER
# headers where the toolkit lacks them, core/CMakeLists.txt).
python="$(torch_python)"
if [ -z "${CALQ_TORCH_PYTHON:-}" ]; then
  venv="$(dirname "$(dirname "$python")")"
  pinned="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$root/requirements-cuda.txt")"
  [ -x "$python" ] || python3 -m venv "$venv"
  installed="$("$python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
  if [ "${installed%%+*}" != "$pinned" ]; then
    log "installing torch==$pinned into $venv (about 5.5 GB)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements-cuda.txt" 2>&1 |
      grep -v "^WARNING: Location" >&2 || true
  fi
fi
read -r torch_version torch_dir torch_cmake < <("$python" -W ignore -c '
import os, torch, torch.utils
assert torch.version.cuda, "CPU-only PyTorch"
print(torch.__version__, os.path.dirname(torch.__file__), torch.utils.cmake_prefix_path)') ||
  { log "$python has no PyTorch with CUDA"; exit 1; }

# Debian packages unpacked into a private prefix (the GPU machine), when .debs/ has them.
prefix_path="$torch_dir;$torch_cmake"
extra=()
if have_debs; then
  mkdir -p "$prefix"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$prefix"; done
  export PATH="$prefix/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$(lib_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The .pc files name /usr: the sysroot prefixes their paths with the private prefix.
  export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig:$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$prefix/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$prefix"
  prefix_path="$prefix_path;$prefix/usr"
  extra+=(-DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf")
fi
if command -v ccache >/dev/null; then
  extra+=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
# LibTorch's config links NVRTC from the toolkit; a toolkit without it (CI's nvcc-only install)
# leaves the wheel's nvidia-cuda-nvrtc copy, the one libtorch_cuda itself loads.
if ! ls "$cuda_root"/lib64/libnvrtc.so* >/dev/null 2>&1; then
  nvrtc="$(ls "$torch_dir"/../nvidia/*/lib/libnvrtc.so.* 2>/dev/null | grep -v alt | head -1 || true)"
  [ -n "$nvrtc" ] || { log "no libnvrtc in $cuda_root nor in the torch wheel's nvidia packages"; exit 1; }
  nvrtc="$(realpath "$nvrtc")"
  extra+=(-DCUDA_nvrtc_LIBRARY="$nvrtc" -DCUDA_NVRTC_LIB="$nvrtc")
fi

# Configure. The torch folder itself comes first on CMAKE_PREFIX_PATH: TorchConfig.cmake finds
# its libraries with find_library(... PATHS <torch>/lib), which searches the system folders
# before PATHS, so a Debian libtorch-dev (a CPU LibTorch) would otherwise win. Warnings are
# errors, as in the CPU CI build.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
mkdir -p "$build"
TORCH_CUDA_ARCH_LIST="${arch:0:1}.${arch:1}" \
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCALQ_CUDA=ON \
  -DCALQ_WERROR=ON -DCMAKE_PREFIX_PATH="$prefix_path" -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DCALQ_BUILD_TESTS=ON -DCALQ_BUILD_BENCH=OFF "${extra[@]}" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; log "configure failed"; exit 1; }

nice cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# The executables link the chosen LibTorch's CUDA library, not another LibTorch on the system.
for exe in "$build/calq" "$build/tests/calq_cuda_tests"; do
  [[ " ${targets[*]} " == *" $(basename "$exe") "* ]] || continue
  ldd "$exe" | grep -q "$torch_dir/lib/libtorch_cuda.so" ||
    { log "$exe does not link $torch_dir/lib/libtorch_cuda.so"; exit 1; }
done
echo "calq CUDA build: compiled and linked ${#targets[@]} targets (${targets[*]}) against torch" \
  "$torch_version with nvcc $nvcc_version (sm_$arch) in $(( $(date +%s) - begin )) s; $build" >&2
