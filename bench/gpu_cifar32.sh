#!/bin/bash
# bench/gpu_cifar32.sh — the recommended experiment on a GPU for a few minutes: trains
# experiments/cfg_cifar32.yaml (35.7M-parameter U-Net, batch 128) on --backend cuda for
# train.max_minutes, samples its 10x10 grid (DDIM 50, guidance 2) and evaluates FD with the CIFAR-10
# classifier features, KID and class accuracy on EVAL_IMAGES generated images. Prints one table and
# leaves in OUT: cifar32_summary.txt, cifar32_grid.png, cifar32_eval.json, cifar32_metrics.jsonl,
# cifar32_log.txt.
#
#   CIFAR32_MINUTES=5 sh bench/gpu_cifar32.sh
#   CIFAR32_DEADLINE=<epoch s>   shortens the training so the whole script ends by then (device loans)
#
# A short run from scratch is far from converged: the EMA decay is lowered to 0.999 (the config's
# 0.9999 averages over ~10,000 steps, more than a few minutes give) and the summary says so.
# EXTRA: more runexp arguments (a CPU dry run of this script: BACKEND=cpu EXTRA="--set sampler.steps=2 ...").
# Data: $RUNEXP_DATA (cifar10/ in either official form), as for any run.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/gpu_cifar32.XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
. bench/gpu_env.sh

MIN=${CIFAR32_MINUTES:-5}
EVAL_IMAGES=${EVAL_IMAGES:-2000}
if [ -n "${CIFAR32_DEADLINE:-}" ]; then   # keep ~150 s for start-up, sampling and evaluation
  MIN=$(awk -v m="$MIN" -v left="$(( CIFAR32_DEADLINE - $(date +%s) - 150 ))" 'BEGIN { t = left / 60; if (t < m) m = t; printf "%.2f", m }')
fi
if awk -v m="$MIN" 'BEGIN { exit !(m < 0.5) }'; then
  say "only $MIN minutes left before the deadline: skipped"
  echo "cfg_cifar32 GPU run skipped: $MIN minutes left" > "$OUT/cifar32_summary.txt"
  exit 0
fi
say "cfg_cifar32 on cuda: $MIN minutes of training, then sampling and evaluation on $EVAL_IMAGES images"
RES="$WORK/results_cifar32"
rx timeout $(awk -v m="$MIN" 'BEGIN { printf "%d", m * 60 + 240 }') "$BIN/runexp" experiments/cfg_cifar32.yaml \
  --backend "${BACKEND:-cuda}" --results "$RES" --force \
  --set train.max_minutes="$MIN" --set train.checkpoint_every=0 --set train.log_every=50 \
  --set train.ema_decay=0.999 --set eval.num_images="$EVAL_IMAGES" ${EXTRA:-} > "$OUT/cifar32.out" 2> "$OUT/cifar32_stderr.txt"
RC=$?
RUN=$(tail -1 "$OUT/cifar32.out" 2>/dev/null)
cp "$RUN/samples/grid.png" "$OUT/cifar32_grid.png" 2>/dev/null
cp "$RUN/eval.json" "$OUT/cifar32_eval.json" 2>/dev/null
cp "$RUN/metrics.jsonl" "$OUT/cifar32_metrics.jsonl" 2>/dev/null
{ cat "$RUN/log.txt" 2>/dev/null; echo "--- stderr"; tail -30 "$OUT/cifar32_stderr.txt"; } > "$OUT/cifar32_log.txt"
python3 - "$RUN" "$RC" "$MIN" > "$OUT/cifar32_summary.txt" 2>&1 <<'PY'
import json, sys
run, rc, minutes = sys.argv[1], sys.argv[2], sys.argv[3]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return {}
rows = []
try:
    rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"img_per_s"' in l]
except OSError:
    pass
r, e = load(run + "/run.json"), load(run + "/eval.json")
ips = [x["img_per_s"] for x in rows[1:]] or [x["img_per_s"] for x in rows]
print("================ cfg_cifar32 on the GPU ================")
print("exit code         %s   run %s" % (rc, run))
print("training          %s min budget; stopped at step %s; final logged loss %s" % (
    minutes, r.get("train_stopped_at_step", rows[-1]["step"] if rows else "n/a"), "%.4f" % rows[-1]["loss"] if rows else "n/a"))
print("throughput        %.0f img/s (mean of logged windows after the first)" % (sum(ips) / len(ips) if ips else 0))
print("stage times       %s" % json.dumps(r.get("stage_seconds", r.get("stages", {}))))
print("eval              %s" % json.dumps(e.get("metrics", e), sort_keys=True)[:1500])
PY
cat "$OUT/cifar32_summary.txt"
rm -f "$OUT/cifar32.out" "$OUT/cifar32_stderr.txt"
exit $RC
