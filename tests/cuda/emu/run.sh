#!/bin/sh
# Builds runexp's CUDA backend and the CUDA test suite against the CPU emulator in this folder
# (no GPU, no CUDA toolkit needed) and runs the suite. See README.md.
#   sh tests/cuda/emu/run.sh [test_cuda_x ...]     (default: every tests/cuda/test_*.c)
#   ASAN=1 sh tests/cuda/emu/run.sh                (AddressSanitizer: out-of-bounds kernel accesses)
# Output under ${EMU_BUILD:-build/emu}/ (inside the git-ignored build/; nothing else is touched).
set -e
cd "$(dirname "$0")/../../.."
OUT=${EMU_BUILD:-build/emu}
JOBS=${JOBS:-$(nproc)}
EMU=tests/cuda/emu
PKGS="yaml-0.1 libpng libturbojpeg jansson libarchive zlib libcurl libxxhash openblas cairo nettle libprotobuf-c libisal"
SAN=""
[ "${ASAN:-0}" = 1 ] && SAN="-fsanitize=address -fno-omit-frame-pointer"
CFLAGS="-O1 -g -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -I$OUT/gen -DRX_HAVE_CUDA=1 $(pkg-config --cflags $PKGS) $SAN -w"
CXXFLAGS="-O1 -g -std=c++17 -I$EMU/include -I$OUT/src -Isrc -DRX_HAVE_CUDA=1 -DRX_CUDA_EMULATOR=1 $SAN -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-unused-function"
LIBS="$(pkg-config --libs $PKGS) -fopenmp -lm -lpthread -lstdc++"
mkdir -p "$OUT/obj" "$OUT/tests"
gcc -O2 -std=c11 -Wall -Wextra -o "$OUT/rewrite_launches" $EMU/rewrite_launches.c
"$OUT/rewrite_launches" src/kernels/cuda "$OUT/src"
# TensorBoard's protocol buffers, generated as the Makefile does (into $OUT/gen, for this build only)
mkdir -p "$OUT/gen"
protoc-c -Ithird_party/tensorboard --c_out="$OUT/gen" third_party/tensorboard/tensorboard/compat/proto/*.proto

# C sources of the library (main.c aside), then the rewritten CUDA sources and the emulator;
# a C object is rebuilt when its source is newer, and every one when a header changed since the
# last build (a struct or op-table change would otherwise link objects of two layouts: crashes)
if [ -f "$OUT/librunexp_emu.a" ] && [ -n "$(find src tests/cuda/emu/include -name '*.h' -newer "$OUT/librunexp_emu.a" | head -n 1)" ]; then
  echo "emu: a header changed since the last build: rebuilding every object"
  rm -f "$OUT"/obj/*.o
fi
objs=""
cmds="$OUT/compile.txt"
: > "$cmds"
for f in $(find src -name '*.c' ! -path src/runner/main.c | sort) $(find "$OUT/gen" -name '*.pb-c.c' | sort); do
  o="$OUT/obj/$(echo "$f" | tr / _ | sed 's/[.]c$/.o/')"
  objs="$objs $o"
  if [ ! -f "$o" ] || [ "$f" -nt "$o" ]; then echo "gcc $CFLAGS -c $f -o $o" >> "$cmds"; fi
done
for f in "$OUT"/src/kernels/cuda/*.cpp $EMU/emu.cpp; do
  o="$OUT/obj/cu_$(basename "$f" .cpp).o"
  objs="$objs $o"
  echo "g++ $CXXFLAGS -c $f -o $o" >> "$cmds"
done
echo "emu: compiling $(wc -l < "$cmds") files"
tr '\n' '\0' < "$cmds" | xargs -0 -P "$JOBS" -I{} sh -c '{}'
rm -f "$OUT/librunexp_emu.a"
ar rcs "$OUT/librunexp_emu.a" $objs

tests=""
if [ $# -gt 0 ]; then for t in "$@"; do tests="$tests tests/cuda/$t.c"; done
else tests=$(ls tests/cuda/test_*.c); fi
bins=""
for t in $tests; do
  b="$OUT/tests/$(basename "$t" .c)"
  gcc $CFLAGS -Itests -o "$b" "$t" -Wl,--whole-archive "$OUT/librunexp_emu.a" -Wl,--no-whole-archive -lcriterion $LIBS
  bins="$bins $b"
done
sh tests/run_tests.sh $bins
