#!/bin/sh
# bench/gpu_pack.sh — prebuilt CUDA binaries for a GPU machine that cannot build runexp itself
# (no Debian -dev packages there, no network). Run it on a machine that builds (`make` works,
# nvcc present); it writes .gpubundle/:
#   bin/runexp, bin/bench/gpu_bench, bin/tests/cuda/test_*   (stripped; -march=x86-64-v3, so any
#                                                              AVX2 host runs them)
#   libs.tar.xz   the shared libraries they need, except glibc, the gcc runtime and CUDA's own
#                 (cudart, cuBLAS, cuDNN come from the GPU machine)
#   built.txt     where and from what it was built
# bench/gpu_check.sh uses the bundle when its own `make` fails. Keep the bundle out of git and
# carry it with the device command:
#   echo /.gpubundle/ >> .git/info/exclude
#   run: command "sh bench/gpu_check.sh", carry [".gpubundle"]
set -e
cd "$(dirname "$0")/.."
B=build/gpu
TESTS=$(ls tests/cuda/test_*.c | sed "s|^tests/cuda/\(.*\)\.c$|$B/tests/cuda/\1|")
make -j"$(nproc)" BUILD=$B ARCH=-march=x86-64-v3 CUDA=1 $B/runexp $B/bench/gpu_bench $TESTS
rm -rf .gpubundle
mkdir -p .gpubundle/bin/tests/cuda .gpubundle/bin/bench
strip -o .gpubundle/bin/runexp $B/runexp
strip -o .gpubundle/bin/bench/gpu_bench $B/bench/gpu_bench
for t in $TESTS; do strip -o ".gpubundle/bin/tests/cuda/$(basename "$t")" "$t"; done
for f in $B/runexp $B/bench/gpu_bench $TESTS; do ldd "$f"; done | awk '/=> \// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so|libcudart|libcublas|libcudnn' \
  > .gpubundle/libs.txt
tar -cJhf .gpubundle/libs.tar.xz -T .gpubundle/libs.txt 2>/dev/null
echo "$(hostname) $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD 2>/dev/null) + working tree" > .gpubundle/built.txt
du -sh .gpubundle
echo "carry .gpubundle with: sh bench/gpu_check.sh (see the top of this script)"
