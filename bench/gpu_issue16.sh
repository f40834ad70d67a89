#!/bin/bash
# bench/gpu_issue16.sh — issue 16's device check, in ONE command for a GPU machine (sized for
# <= 8 minutes on an H200; every stage has its own timeout):
#   1. builds runexp with CUDA, the CUDA tests and bench/gpu_bench (bench/gpu_env.sh; or the
#      prebuilt .gpubundle from bench/gpu_pack.sh);
#   2. the whole CUDA suite (tests/cuda/test_*.c), including test_cuda_optim (the multi-tensor
#      AdamW + EMA against the CPU) and test_cuda_graphs (a captured training step replayed,
#      bit-identical to eager: the issue's graph test, on the real cudaGraph) and
#      test_cuda_graphs_runner (cuda_graphs: true through the runner: losses, checkpoint and
#      samples bit-identical to eager, resume exact);
#   3. bench/gpu_bench cifar32 --profile: cfg_cifar32's step (batch 128, TF32) timed, then the
#      per-op table bench/NOTES.md asks for ("Issue 16: predictions") — check the predictions;
#   3b. gpu_bench cifar32 --profile at tf32 and at bf16: the attention rows (bf16 attention on
#      tensor cores, mma.sync; test_cuda_mma in step 2 checks the fragment layout on the device);
#   4. bench/compare --device cuda cifar32: runexp against PyTorch eager on the same step (needs
#      torch + diffusers on the machine; skipped with a note otherwise);
#   5. a short cfg_cifar32 training run (300 steps, log_every 100): img/s with the loss read back
#      once per log window (train.c) against the same run with log_every 1 (a read every step),
#      and against the same run with cuda_graphs: true (the step captured and replayed);
#   6. DDIM-50 with CFG from that run's weights, 100 images at batch 100 and at batch 10, with
#      cuda_graphs false and true: the sample stage's seconds (run.json stage_seconds.sample).
#   7. the bf16 step's per-op profile with the linear forward through cuBLASLt (bias epilogue) and
#      with RX_CUDA_LT=0 (the bias kernel + GEMM path): the `linear` rows side by side.
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
train() {   # name log_every cuda_graphs
  rx timeout 75 "$BIN/runexp" experiments/cfg_cifar32.yaml --backend cuda --set train.steps=300 \
    --set train.log_every="$2" --set cuda_graphs="${3:-false}" --set train.checkpoint_every=0 --set sample=null --set eval=null \
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
say "cfg_cifar32 300 steps, log_every 100, cuda_graphs: true"
IPS_GRAPHS=$(train graphs 100 true)

# ---- 6. DDIM-50 + CFG sampling, network call eager vs replayed -----------------------------------------
sample() {   # name cuda_graphs batch: seconds of the sample stage (100 images) from the window run's weights
  rx timeout 60 "$BIN/runexp" experiments/cfg_cifar32.yaml --backend cuda --set train=null \
    --set init="$(tail -1 "$OUT/train_window.out")/checkpoints/last.safetensors" --set cuda_graphs="$2" \
    --set sample.num_images=100 --set sample.batch_size="$3" --set eval=null \
    --results "$WORK/results_$1" --force > "$OUT/sample_$1.out" 2> "$OUT/sample_$1.log"
  python3 -c 'import json,sys; print("%.2f s" % json.load(open(sys.argv[1]))["stage_seconds"]["sample"])' \
    "$(tail -1 "$OUT/sample_$1.out" 2>/dev/null)/run.json" 2>/dev/null || echo n/a
}
say "DDIM-50 CFG, 100 images, batch 100 and 10, cuda_graphs false / true"
S100_EAGER=$(sample s100e false 100); S100_GRAPHS=$(sample s100g true 100)
S10_EAGER=$(sample s10e false 10); S10_GRAPHS=$(sample s10g true 10)

# ---- 7. cuBLASLt linear forward (bias epilogue) against the old bias kernel + GEMM (RX_CUDA_LT=0) --------
# bf16 cfg_cifar32 step profiled twice; bench/NOTES.md "Issue 16 §3" predicts the linear fwd row
say "gpu_bench cifar32 --precision bf16 --profile, cuBLASLt and RX_CUDA_LT=0 (logs: lt_on.log, lt_off.log)"
rx timeout 60 "$BIN/bench/gpu_bench" cifar32 --steps 5 --precision bf16 --profile > "$OUT/lt_on.log" 2>&1 || say "gpu_bench (cuBLASLt) failed"
RX_CUDA_LT=0 rx timeout 60 "$BIN/bench/gpu_bench" cifar32 --steps 5 --precision bf16 --profile > "$OUT/lt_off.log" 2>&1 || say "gpu_bench (RX_CUDA_LT=0) failed"
LT_ROWS=$(for f in lt_on lt_off; do grep -E '^(cifar32|linear |sum )' "$OUT/$f.log" | sed "s/^/$f: /"; done)

{
  echo "================ runexp issue 16 device check ================"
  echo "device            $GPU"
  echo "build             $BUILT"
  echo "CUDA suite        $SUITE"
  echo "cfg_cifar32 train img/s, steps 101-300: log_every 100 $IPS_WINDOW, log_every 1 $IPS_EVERY, cuda_graphs $IPS_GRAPHS"
  echo "DDIM-50 CFG 100 images: batch 100 eager $S100_EAGER, graphs $S100_GRAPHS; batch 10 eager $S10_EAGER, graphs $S10_GRAPHS"
  echo "gpu_bench cifar32 --profile, tf32 vs bf16 (tensor-core attention): the step and the attention rows"
  echo "${ATTN:-  (none)}"
  echo "gpu_bench cifar32 --profile:"
  sed 's/^/  /' "$OUT/profile.log"
  echo "linear forward, bf16 step: cuBLASLt (lt_on) vs bias kernel + GEMM (lt_off):"
  echo "$LT_ROWS" | sed 's/^/  /'
  echo "bench/compare --device cuda cifar32:"
  sed 's/^/  /' "$OUT/compare.log"
  echo "total             $(( $(date +%s) - START ))s; load $(cut -d' ' -f1-3 /proc/loadavg); logs in $OUT"
} | tee "$OUT/issue16_summary.txt"
rm -rf "$WORK"/results_* "$OUT"/train_*.out "$OUT"/sample_*.out
[ "$FAIL" -eq 0 ] && [ -z "$BAD" ]
