#!/bin/bash
# bench/gpu_issue16.sh — issue 16's device check, in ONE command for a GPU machine (sized for
# <= 8 minutes on an H200; every stage has its own timeout):
#   1. builds runexp with CUDA, the CUDA tests and bench/gpu_bench (bench/gpu_env.sh; or the
#      prebuilt .gpubundle from bench/gpu_pack.sh);
#   2. the whole CUDA suite (tests/cuda/test_*.c), including test_cuda_optim (the multi-tensor
#      AdamW + EMA against the CPU) and test_cuda_graphs (a captured training step replayed,
#      bit-identical to eager: the issue's graph test, on the real cudaGraph);
#   3. bench/gpu_bench cifar32 --profile: cfg_cifar32's step (batch 128, TF32) timed, then the
#      per-op table bench/NOTES.md asks for ("Issue 16: predictions") — check the predictions;
#   3b. gpu_bench cifar32 --profile at tf32 and at bf16: the attention rows (bf16 attention on
#      tensor cores, mma.sync; test_cuda_mma in step 2 checks the fragment layout on the device);
#   4. bench/compare --device cuda cifar32: runexp against PyTorch eager on the same step (needs
#      torch + diffusers on the machine; skipped with a note otherwise);
#   5. a short cfg_cifar32 training run (300 steps, log_every 100): img/s with the loss read back
#      once per log window (train.c) against the same run with log_every 1 (a read every step).
#   Prints a table (also $OUT/issue16_summary.txt).
#
#   sh bench/gpu_issue16.sh                         # logs in $OUT (the device tool's folder) or a temp dir
#   run: command "sh bench/gpu_issue16.sh", carry [".gpubundle"] when the machine cannot build
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/gpu_issue16.XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
. bench/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
say "device: $GPU; load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 2. the CUDA suite -------------------------------------------------------------------------------
PASS=0; FAIL=0; BAD=""
: > "$OUT/tests.log"
for t in $CUDA_TESTS; do
  say "running $(basename "$t")"
  rx timeout 150 "$BIN/${t#build/}" --jobs=4 > "$OUT/one.log" 2>&1; rc=$?
  { echo "== $t (exit $rc)"; cat "$OUT/one.log"; } >> "$OUT/tests.log"
  line=$(grep 'Synthesis:' "$OUT/one.log" | tail -1)
  p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p'); f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  PASS=$((PASS + ${p:-0})); FAIL=$((FAIL + ${f:-0}))
  [ "$rc" -ne 0 ] && BAD="$BAD $(basename "$t")"
done
rm -f "$OUT/one.log"
SUITE="$PASS passed, $FAIL failed${BAD:+ (failing:$BAD)}"
say "suite: $SUITE"

# ---- 3. the per-op profile of cfg_cifar32's step -------------------------------------------------------
say "gpu_bench cifar32 --profile (log: profile.log)"
rx timeout 150 "$BIN/bench/gpu_bench" cifar32 --steps 10 --profile > "$OUT/profile.log" 2>&1 || say "gpu_bench failed"

# ---- 3b. attention fp32 (TF32) vs bf16 on tensor cores (attention.cu, bench/NOTES.md "Issue 16 §4") --
# cfg_cifar32's attention layers (N 256, one head of 256, batch 128): the profile's attention rows
for prec in tf32 bf16; do
  rx timeout 90 "$BIN/bench/gpu_bench" cifar32 --steps 3 --profile --precision $prec > "$OUT/profile_attn_$prec.log" 2>&1 ||
    say "gpu_bench --precision $prec failed"
done
ATTN=$(for prec in tf32 bf16; do grep -E '^(attention|cifar32) ' "$OUT/profile_attn_$prec.log" | sed "s/^/  $prec: /"; done)

# ---- 4. against PyTorch eager --------------------------------------------------------------------------
# build/bench/compare is not in the bundle nor in gpu_env.sh's build: made here when `make` works
if [ "$BUILT" = make ] && timeout 120 make -j"$(nproc)" CUDA=1 build/bench/compare >> "$OUT/build.log" 2>&1 &&
   python3 -c 'import torch, diffusers; assert torch.cuda.is_available()' 2>/dev/null; then
  say "bench/compare --device cuda cifar32 (log: compare.log)"
  rx timeout 180 python3 bench/compare --device cuda --repeats 5 cifar32 > "$OUT/compare.log" 2>&1 || say "compare failed"
else
  echo "skipped: no build/bench/compare (bundle) or no torch + diffusers with CUDA on this machine" > "$OUT/compare.log"
fi

# ---- 5. cfg_cifar32 training: the loss read back per log window vs every step ------------------------
train() {   # name log_every
  rx timeout 75 "$BIN/runexp" experiments/cfg_cifar32.yaml --backend cuda --set train.steps=300 \
    --set train.log_every="$2" --set train.checkpoint_every=0 --set sample=null --set eval=null \
    --results "$WORK/results_$1" --force > "$OUT/train_$1.out" 2> "$OUT/train_$1.log"
  local run; run=$(tail -1 "$OUT/train_$1.out" 2>/dev/null)
  # img/s of the rows after the first 100 steps (cuDNN's algorithm search and warm-up excluded)
  python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "img_per_s" in l and json.loads(l)["step"]>100]
print("%.1f" % (sum(x["img_per_s"] for x in r)/len(r)) if r else "n/a")' "$run/metrics.jsonl" 2>/dev/null || echo n/a
}
say "cfg_cifar32 300 steps, log_every 100 (one read-back per window)"
IPS_WINDOW=$(train window 100)
say "cfg_cifar32 300 steps, log_every 1 (a read-back every step)"
IPS_EVERY=$(train every 1)

{
  echo "================ runexp issue 16 device check ================"
  echo "device            $GPU"
  echo "build             $BUILT"
  echo "CUDA suite        $SUITE"
  echo "cfg_cifar32 train img/s, steps 101-300: log_every 100 $IPS_WINDOW, log_every 1 $IPS_EVERY"
  echo "gpu_bench cifar32 --profile, tf32 vs bf16 (tensor-core attention): the step and the attention rows"
  echo "${ATTN:-  (none)}"
  echo "gpu_bench cifar32 --profile:"
  sed 's/^/  /' "$OUT/profile.log"
  echo "bench/compare --device cuda cifar32:"
  sed 's/^/  /' "$OUT/compare.log"
  echo "total             $(( $(date +%s) - START ))s; load $(cut -d' ' -f1-3 /proc/loadavg); logs in $OUT"
} | tee "$OUT/issue16_summary.txt"
rm -rf "$WORK"/results_* "$OUT"/train_*.out
[ "$FAIL" -eq 0 ] && [ -z "$BAD" ]
