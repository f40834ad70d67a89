#!/bin/sh
# bench/gpu_pack.sh — prebuilt CUDA binaries for a GPU machine that cannot build runexp itself
# (no Debian -dev packages there, no network). Run it on a machine that builds (`make` works,
# nvcc present); it writes .gpubundle/:
#   bin.tar.xz    runexp, bench/gpu_bench, tests/cuda/test_*   (stripped; -march=x86-64-v3, so any
#                 AVX2 host runs them; compressed, as the device tool carries 64 MiB in all)
#   libs.tar.xz   the shared libraries they need, except glibc, the gcc runtime and CUDA's own
#                 (cudart, cuBLAS, cuDNN and NCCL, 218 MB, come from the GPU machine: its toolkit or
#                 Python's nvidia-* wheels, bench/gpu_env.sh)
#   built.txt     where and from what it was built
# bench/gpu_check.sh uses the bundle when its own `make` fails. Keep the bundle out of git and
# carry it with the device command:
#   echo /.gpubundle/ >> .git/info/exclude
#   run: command "sh bench/gpu_check.sh", carry [".gpubundle"]
set -e
cd "$(dirname "$0")/.."
B=build/gpu
TESTS=$(ls tests/cuda/test_*.c | sed "s|^tests/cuda/\(.*\)\.c$|$B/tests/cuda/\1|")
# libarchive linked statically: as a shared library it drags in libxml2 and ICU's 31 MB of data
# (for formats runexp never reads), and the device tool carries 64 MiB in all
BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
LIBS="$(pkg-config --libs yaml-0.1 libpng jansson zlib libcurl libxxhash cairo) -Wl,-Bstatic -larchive -Wl,-Bdynamic \
  -lnettle -l:libacl.so.1 -llzma -l:libzstd.so.1 -l:liblz4.so.1 -lbz2 -lz -L$BLAS_DIR -Wl,-rpath,$BLAS_DIR -lopenblas"
rm -f $B/runexp $B/bench/gpu_bench $TESTS   # relink with LIBS
make -j"$(nproc)" BUILD=$B ARCH=-march=x86-64-v3 CUDA=1 PKG_LIBS="$LIBS" $B/runexp $B/bench/gpu_bench $TESTS
rm -rf .gpubundle
mkdir -p .gpubundle/bin/tests/cuda .gpubundle/bin/bench
strip -o .gpubundle/bin/runexp $B/runexp
strip -o .gpubundle/bin/bench/gpu_bench $B/bench/gpu_bench
for t in $TESTS; do strip -o ".gpubundle/bin/tests/cuda/$(basename "$t")" "$t"; done
for f in $B/runexp $B/bench/gpu_bench $TESTS; do ldd "$f"; done | awk '/=> \// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so|libcudart|libcublas|libcudnn|libnccl' \
  > .gpubundle/libs.txt
tar -cJhf .gpubundle/libs.tar.xz -T .gpubundle/libs.txt 2>/dev/null
tar -cJf .gpubundle/bin.tar.xz -C .gpubundle/bin . && rm -rf .gpubundle/bin
echo "$(hostname) $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD 2>/dev/null) + working tree" > .gpubundle/built.txt
du -sh .gpubundle
echo "carry .gpubundle with: sh bench/gpu_check.sh (see the top of this script)"
