#!/bin/bash
# bench/gpu_check.sh — the CUDA backend's device check, in ONE command for a GPU machine:
#   1. builds runexp, the CUDA test binaries and bench/gpu_bench (make -j16);
#   2. runs the whole CUDA suite (tests/cuda/test_*.c; every op against the CPU, a U-Net and a
#      DiT step, sampling, Philox);
#   3. bench/gpu_bench: training-step time and memory of the smoke U-Net and the default U-Net;
#   4. trains experiments/smoke/unet_ddpm.yaml for 300 steps on --backend cuda (peak device
#      memory sampled with nvidia-smi), and the same on the CPU to compare the loss curves;
#   4b. bf16 (issue 16 §3-4, its own block below; BF16=0 skips it): gpu_bench's cfg_cifar32 step at
#      tf32 and bf16, and 100 steps of experiments/cfg_cifar32.yaml with precision: bf16 (CIFAR-10
#      from $RUNEXP_DATA, else synthetic 32x32 images of 10 classes); the suite of step 2 already ran
#      the bf16 tests (test_cuda_ops' dense_bf16_*, test_cuda_bf16's training and exact resume);
#   5. prints a short table (also $OUT/summary.txt).
# Finishes in well under 8 minutes on an H100 (every stage has its own timeout).
#
#   sh bench/gpu_check.sh            # logs go to $OUT (the device tool's output folder) or a temp dir
#
# Build dependencies: if the machine lacks the Debian -dev packages the Makefile needs (libyaml,
# jansson, criterion, openblas, ...), the script uses a prebuilt bundle instead when the working
# tree has one: run `sh bench/gpu_pack.sh` on a machine that builds (it writes .gpubundle/) and
# carry .gpubundle with the command. cuDNN is found in the CUDA toolkit or in PyTorch's
# nvidia-cudnn wheel.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
say() { echo "$(basename "$0") [$(( $(date +%s) - START ))s]: $*"; }
# ---- 0. the machine --------------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -2
  nproc
} > "$OUT/env.txt" 2>&1
GPU=$(head -1 "$OUT/env.txt")
say "device: $GPU"

# ---- 1. cuDNN, build (or the prebuilt bundle) -------------------------------------------------------
. bench/gpu_env.sh

# ---- 2. the CUDA suite ------------------------------------------------------------------------------
PASS=0; FAIL=0; CRASH=0; BAD=""
: > "$OUT/tests.log"
for t in $CUDA_TESTS; do
  b="$BIN/${t#build/}"
  say "running $(basename "$t")"
  rx timeout 150 "$b" --verbose=1 --jobs=4 > "$OUT/one.log" 2>&1; rc=$?
  { echo "== $t (exit $rc)"; cat "$OUT/one.log"; } >> "$OUT/tests.log"
  line=$(grep 'Synthesis:' "$OUT/one.log" | tail -1)
  p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p'); f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  if [ "$rc" -ne 0 ] && [ "${f:-0}" = 0 ] && [ "${c:-0}" = 0 ]; then c=1; fi   # a timeout or a crash before the synthesis
  PASS=$((PASS + ${p:-0})); FAIL=$((FAIL + ${f:-0})); CRASH=$((CRASH + ${c:-0}))
  [ "$rc" -ne 0 ] && BAD="$BAD $(basename "$t")"
done
rm -f "$OUT/one.log"
say "suite: $PASS passed, $FAIL failed, $CRASH crashed${BAD:+ (failing:$BAD)}"
grep -E '^\[(FAIL|SKIP)\]|Assertion Failed|^\[----\]   [a-z]' "$OUT/tests.log" | grep -v '^\[----\]   *$' | head -40
# the fused kernels (issue 16 §2: cuda_ops/fused_fp32 in the suite above): their errors against the CPU
say "fused kernels on the device (group_norm_silu, residual_add, mse_loss; tolerance 1e-5):"
grep -E '(group_norm_silu|residual_add|mse_loss)[^:]*: forward' "$OUT/tests.log" | sed 's/^\[----\] /  /' | tee "$OUT/fused.txt"

# ---- 3. step time and memory -----------------------------------------------------------------------
say "gpu_bench (log: bench.log)"
rx timeout 150 "$BIN/bench/gpu_bench" all --steps 20 > "$OUT/bench.log" 2>&1 || say "gpu_bench failed"
cat "$OUT/bench.log"

# ---- 4. the smoke experiment, CUDA then CPU ----------------------------------------------------------
RES="$WORK/results"
train() {   # backend log
  rx timeout 150 "$BIN/runexp" experiments/smoke/unet_ddpm.yaml --backend "$1" --set train.steps=300 --set train.log_every=25 \
    --set train.checkpoint_every=300 --results "$RES/$1" --force > "$OUT/$2.out" 2> "$OUT/$2.log"
}
say "training the smoke U-Net 300 steps on cuda"
MEMLOG="$OUT/mem.csv"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$MEMLOG" 2>/dev/null &
SAMPLER=$!
T0=$(date +%s.%N)
train cuda train_cuda; RC_CUDA=$?
T1=$(date +%s.%N)
kill "$SAMPLER" 2>/dev/null
PEAK=$(sort -n "$MEMLOG" 2>/dev/null | tail -1)
say "training the smoke U-Net 300 steps on cpu (for the loss curve)"
train cpu train_cpu; RC_CPU=$?
RUN_CUDA=$(tail -1 "$OUT/train_cuda.out" 2>/dev/null); RUN_CPU=$(tail -1 "$OUT/train_cpu.out" 2>/dev/null)
cp "$RUN_CUDA/metrics.jsonl" "$OUT/metrics_cuda.jsonl" 2>/dev/null
cp "$RUN_CPU/metrics.jsonl" "$OUT/metrics_cpu.jsonl" 2>/dev/null
[ "$RC_CUDA" -ne 0 ] && { say "cuda training failed:"; tail -5 "$OUT/train_cuda.log"; }
[ "$RC_CPU" -ne 0 ] && { say "cpu training failed:"; tail -5 "$OUT/train_cpu.log"; }

# ---- 4b. bf16 (issue 16 §3-4) -------------------------------------------------------------------
# the cfg_cifar32 U-Net's training step (synthetic batches, no loader) at tf32 then bf16, and a short
# cfg_cifar32 training with precision: bf16; everything into bf16.log
RC_BF16=skipped
if [ "${BF16:-1}" = 1 ]; then
  say "bf16: gpu_bench cifar32 at tf32 and bf16, then 100 cfg_cifar32 steps in bf16 (log: bf16.log)"
  for p in tf32 bf16; do rx timeout 120 "$BIN/bench/gpu_bench" cifar32 --steps 20 --precision "$p" 2>&1 | grep -v '^model'; done > "$OUT/bf16.log"
  DATA_SET=""
  [ -d "${RUNEXP_DATA:-data}/cifar10" ] || DATA_SET="dataset={name: synthetic, num_images: 2048, size: 32, channels: 3, num_classes: 10}"
  rx timeout 240 "$BIN/runexp" experiments/cfg_cifar32.yaml --backend cuda --set precision=bf16 --set train.steps=100 \
    --set train.log_every=25 --set train.checkpoint_every=100 --set sample=null --set eval=null \
    ${DATA_SET:+--set "$DATA_SET"} --results "$WORK/results/bf16" --force > "$OUT/bf16_run.out" 2>> "$OUT/bf16.log"; RC_BF16=$?
  RUN_BF16=$(tail -1 "$OUT/bf16_run.out" 2>/dev/null)
  { echo "cfg_cifar32 bf16 (rc=$RC_BF16${DATA_SET:+, synthetic data}):"; cat "$RUN_BF16/metrics.jsonl" 2>/dev/null
    grep -h '"precision"' -A4 "$RUN_BF16/run.json" 2>/dev/null; } >> "$OUT/bf16.log"
  cat "$OUT/bf16.log"
  rm -f "$OUT/bf16_run.out"
fi

# loss curves side by side, and the training speed (rows after the first: warm-up excluded)
python3 - "$OUT/metrics_cuda.jsonl" "$OUT/metrics_cpu.jsonl" > "$OUT/curves.txt" 2>&1 <<'EOF'
import json, sys
def rows(p):
    try:
        return [json.loads(l) for l in open(p) if '"img_per_s"' in l]
    except OSError:
        return []
g, c = rows(sys.argv[1]), rows(sys.argv[2])
print("step   loss cuda   loss cpu   rel diff")
worst = 0.0
for a, b in zip(g, c):
    d = abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-12)
    worst = max(worst, d)
    print("%4d   %9.5f  %9.5f   %8.2e" % (a["step"], a["loss"], b["loss"], d))
ips = [r["img_per_s"] for r in g[1:]] or [r["img_per_s"] for r in g]
print("CURVES worst_rel_diff=%.3g final_cuda=%.5f final_cpu=%.5f img_s=%.1f" % (
    worst, g[-1]["loss"] if g else float("nan"), c[-1]["loss"] if c else float("nan"), sum(ips) / len(ips) if ips else 0))
EOF
cat "$OUT/curves.txt"
IMGS=$(sed -n 's/.*img_s=\([0-9.]*\).*/\1/p' "$OUT/curves.txt")
WORST=$(sed -n 's/.*worst_rel_diff=\([^ ]*\).*/\1/p' "$OUT/curves.txt")
STEP_MS=$(awk -v i="${IMGS:-0}" 'BEGIN { if (i > 0) printf "%.2f", 1000 * 8 / i; else print "n/a" }')
WALL=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')

# ---- 5. the table -----------------------------------------------------------------------------------
{
  echo "================ runexp CUDA device check ================"
  echo "device            $GPU ($(tail -n +2 "$OUT/env.txt" | tr '\n' ' '))"
  echo "build             $BUILT"
  echo "CUDA suite        $PASS passed, $FAIL failed, $CRASH crashed${BAD:+ (failing:$BAD)}"
  echo "smoke train       300 steps, batch 8, 16x16, cuda rc=$RC_CUDA: ${WALL}s wall (run incl. sampling)"
  echo "step time         ${STEP_MS} ms   (${IMGS:-n/a} img/s, runexp metrics, warm-up row excluded)"
  echo "peak device mem   ${PEAK:-n/a} MiB (nvidia-smi, whole device, sampled every 100 ms)"
  echo "loss cuda vs cpu  worst relative difference over the logged steps: ${WORST:-n/a} (cpu rc=$RC_CPU)"
  echo "gpu_bench (training steps without data loading; device MiB = cudaMemGetInfo, in use/total):"
  sed 's/^/  /' "$OUT/bench.log"
  echo "bf16 (4b)          cfg_cifar32 run rc=$RC_BF16; gpu_bench tf32 vs bf16 and the run's rows:"
  sed 's/^/  /' "$OUT/bf16.log" 2>/dev/null | grep -E 'cifar32|"step"' | head -8
  echo "loss curves (metrics.jsonl rows):"
  sed 's/^/  /' "$OUT/curves.txt"
  echo "total             $(( $(date +%s) - START ))s; logs in $OUT"
} | tee "$OUT/summary.txt"
# what stays in $OUT (the device tool brings back at most 8 files): summary.txt, build.log,
# tests.log, train_cuda.log, train_cpu.log, metrics_cuda.jsonl, metrics_cpu.jsonl, bf16.log
rm -rf "$RES" "$OUT/mem.csv" "$OUT"/train_*.out "$OUT/env.txt" "$OUT/curves.txt" "$OUT/bench.log"
[ "$FAIL" -eq 0 ] && [ "$CRASH" -eq 0 ] && [ "$RC_CUDA" -eq 0 ]
