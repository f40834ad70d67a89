# bench/gpu_env.sh — sourced by bench/gpu_check.sh and bench/gpu_cifar32.sh: finds cuDNN, builds runexp
# with CUDA (or unpacks the prebuilt .gpubundle from bench/gpu_pack.sh when the machine cannot build),
# and defines
#   say MSG      a log line with the seconds since START
#   rx CMD...    runs one of runexp's binaries with the bundle's libraries when it uses them
#   BIN          where the binaries are (build/ or the unpacked bundle); BUILT: how they came to be
# GPU_BUNDLE=1 skips the `make` attempt and uses .gpubundle directly (saves a failed build's time on a
# machine known to lack the -dev packages). Needs OUT and START set by the caller; scratch files
# (the unpacked bundle, a cuDNN link folder) go to WORK, not OUT, which the device tool brings back.
WORK=${WORK:-/tmp/runexp_gpu}
mkdir -p "$WORK"
say() { echo "$(basename "$0") [$(( $(date +%s) - START ))s]: $*"; }

# cuDNN: the toolkit's, or the one in Python's nvidia-cudnn wheel (headers + libcudnn.so.9)
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}
SHIM="$WORK/libshim"
mkdir -p "$SHIM"
if [ ! -f "$CUDA_HOME/include/cudnn.h" ]; then
  CUDNN_DIR=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ -n "$CUDNN_DIR" ] && [ -f "$CUDNN_DIR/include/cudnn.h" ]; then
    say "cuDNN headers from $CUDNN_DIR"
    export CPATH="$CUDNN_DIR/include${CPATH:+:$CPATH}"
  else
    say "no cudnn.h found (toolkit or nvidia-cudnn wheel): a build will fail"
  fi
fi
# the runtime libraries (the bundle's binaries need libcudnn.so.9, libcublas.so.13, libcudart.so.13):
# the toolkit's lib64 first, then any folder of Python's nvidia-* wheels that holds one of them
SITE=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
for d in $(for s in $SITE; do [ -d "$s/nvidia" ] && find "$s/nvidia" \( -name 'libcudnn.so.9' -o -name 'libcublas.so.1*' \
             -o -name 'libcudart.so.1*' -o -name 'libnccl.so.2' \) 2>/dev/null; done | xargs -r -n1 dirname | sort -u); do
  for l in "$d"/libcudnn*.so.* "$d"/libcublas*.so.* "$d"/libcudart.so.* "$d"/libnccl.so.*; do   # the linker wants libX.so
    [ -f "$l" ] && { base=$(basename "$l"); [ -e "$SHIM/${base%%.so.*}.so" ] || ln -sf "$l" "$SHIM/${base%%.so.*}.so"; }
  done
  WHEEL_LD="${WHEEL_LD:+$WHEEL_LD:}$d"
done
# NCCL (the gradient all-reduce, tests/cuda/test_cuda_nccl.c): the toolkit's, else the nvidia-nccl
# wheel's headers for `make` (NCCL_HOME; NCCL is compiled in only with MPI too, Makefile)
if [ ! -f "$CUDA_HOME/include/nccl.h" ] && [ -z "${NCCL_HOME:-}" ]; then
  NCCL_DIR=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  [ -n "$NCCL_DIR" ] && [ -f "$NCCL_DIR/include/nccl.h" ] && { export NCCL_HOME="$NCCL_DIR"; say "NCCL from $NCCL_DIR"; }
fi
export LIBRARY_PATH="$SHIM:$CUDA_HOME/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}${WHEEL_LD:+:$WHEEL_LD}"
say "runtime library path: $LD_LIBRARY_PATH"

CUDA_TESTS=$(ls tests/cuda/test_*.c | sed 's|^tests/cuda/\(.*\)\.c$|build/tests/cuda/\1|')
BIN=build
BUNDLE_LD=""
rx() { LD_LIBRARY_PATH="${LD_LIBRARY_PATH}${BUNDLE_LD:+:$BUNDLE_LD}" "$@"; }
use_bundle() {
  BIN="$WORK/bundle"
  if [ ! -x "$BIN/runexp" ]; then
    mkdir -p "$BIN/lib"
    tar -xJf .gpubundle/bin.tar.xz -C "$BIN"
    tar -xJf .gpubundle/libs.tar.xz -C "$BIN/lib" 2>>"$OUT/build.log"
  fi
  LIBDIRS=$(find "$BIN/lib" -name '*.so*' -exec dirname {} \; | sort -u | tr '\n' ':')
  BUNDLE_LD="${LIBDIRS%:}"   # for runexp's binaries only: python3 and nvidia-smi keep the machine's libraries
  BUILT="bundle ($(cat .gpubundle/built.txt 2>/dev/null))"
}
if [ -x "$WORK/bundle/runexp" ]; then
  use_bundle
elif [ "${GPU_BUNDLE:-0}" = 1 ] && [ -d .gpubundle ]; then
  say "GPU_BUNDLE=1: using the prebuilt .gpubundle"
  use_bundle
else
  say "building (make -j$(nproc); log: build.log)"
  if timeout 420 make -j"$(nproc)" CUDA=1 all $CUDA_TESTS build/bench/gpu_bench > "$OUT/build.log" 2>&1; then
    BUILT="make"
  elif [ -d .gpubundle ]; then
    say "make failed (tail of build.log below); using the prebuilt .gpubundle"
    tail -5 "$OUT/build.log"
    use_bundle
  else
    say "BUILD FAILED and no .gpubundle: see $OUT/build.log"
    tail -20 "$OUT/build.log"
    exit 1
  fi
fi
say "built: $BUILT"
MISSING=$(rx ldd "$BIN/runexp" 2>&1 | grep 'not found' | awk '{print $1}' | tr '\n' ' ')
[ -n "$MISSING" ] && say "runexp cannot find: $MISSING"
