#!/usr/bin/env bash
# Builds calq with its CUDA kernels (CALQ_CUDA=ON, docs/kernels.md) against a CUDA LibTorch: the
# one inside the machine's PyTorch (torch.utils.cmake_prefix_path), for a GPU machine with nvcc,
# CMake and ninja but no package registry (scripts/device_check.sh runs it there; CI's
# compile-only CUDA build on a machine with a registry is scripts/build_cuda.sh). calq's other dependencies come from Debian packages fetched beforehand, where apt
# works, and unpacked (dpkg -x) into a private prefix, never over the system.
#
#   scripts/build-cuda.sh fetch [DEBS]        # where apt works: download the .deb files (.debs/)
#   scripts/build-cuda.sh build [DEBS] [DIR]  # on the GPU machine: unpack, configure, build (build-cuda/)
#   scripts/build-cuda.sh env [DEBS]          # prints the exports that run the built binaries
#
# With the device tool: fetch here, then run `scripts/build-cuda.sh build` there with
# carry [".debs"]; then `build-cuda/calq bench gptq --device cuda ...` and
# `build-cuda/tests/calq_tests` (after `eval "$(scripts/build-cuda.sh env)"`). The Debian
# libraries are bookworm's: a machine whose glibc is older than theirs (2.36) cannot load them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmd="${1:-}"
debs="$(realpath -m "${2:-$root/.debs}")"
prefix="$debs/root"

# calq's build dependencies besides LibTorch, CMake and a compiler (scripts/setup.sh), with the
# runtime libraries they link.
packages=(libeigen3-dev libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread
          libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
          catch2 libicu-dev pkgconf libpkgconf3)

lib_dirs() {
  echo "$prefix/usr/lib/x86_64-linux-gnu/openblas-pthread:$prefix/usr/lib/x86_64-linux-gnu"
}

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
    echo "build-cuda: $(ls "$debs"/*.deb | wc -l) packages, $(du -sh "$debs" | cut -f1) in $debs" >&2
    ;;
  build)
    build="$(realpath -m "${3:-$root/build-cuda}")"
    ls "$debs"/*.deb >/dev/null 2>&1 || { echo "build-cuda: no .deb files in $debs; run" \
      "'scripts/build-cuda.sh fetch' where apt works and carry the folder" >&2; exit 1; }
    mkdir -p "$prefix"
    for f in "$debs"/*.deb; do dpkg -x "$f" "$prefix"; done
    torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
    python3 -c 'import torch; assert torch.version.cuda, "CPU-only PyTorch"; print("build-cuda: PyTorch", torch.__version__, "CUDA", torch.version.cuda)' >&2
    command -v nvcc >/dev/null || { echo "build-cuda: no nvcc on PATH; LibTorch's CMake" \
      "config needs the CUDA toolkit" >&2; exit 1; }
    export PATH="$prefix/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$(lib_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # The .pc files name /usr: the sysroot prefixes their paths with the private prefix.
    export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig:$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$prefix/usr/share/pkgconfig"
    export PKG_CONFIG_SYSROOT_DIR="$prefix"
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr" \
      -DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf" \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCALQ_CUDA=ON -DCALQ_BUILD_TESTS=ON -DCALQ_BUILD_BENCH=ON
    # CALQ_CUDA_TARGETS (e.g. "calq calq_cuda_tests", scripts/device_check.sh): only those.
    targets=()
    [ -n "${CALQ_CUDA_TARGETS:-}" ] && read -r -a targets <<<"--target $CALQ_CUDA_TARGETS"
    cmake --build "$build" -j "$(nproc)" "${targets[@]}"
    echo "build-cuda: built $build/calq; run it after: eval \"\$(scripts/build-cuda.sh env)\"" >&2
    ;;
  env)
    torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    echo "export LD_LIBRARY_PATH=\"$(lib_dirs):$torch_lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    ;;
  *)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
