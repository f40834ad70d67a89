#!/bin/sh
# bench/dist_cpu.sh — CPU data-parallel throughput (issue 17): 2 MPI ranks x 1 thread against
# 1 process x 2 threads, the same experiment and global batch. Each configuration runs REPS
# times, alternating; the figure is training images per second from run.json's train stage
# time (steps x global batch / seconds), median of the repeats. mpi_yield_when_idle: a rank
# waiting in a collective yields its core instead of spinning (2 ranks on 2 shared cores).
# Prints the load average around it (the machine may be shared). Usage: sh bench/dist_cpu.sh [STEPS] [BATCH] [REPS]
# BUCKETS="0 25 0.05": the 2-rank runs once per gradient bucket size (RUNEXP_BUCKET_MB, dist.h;
# 0 = one bucket after backward), alternating with the rest; default: 25 (runexp's default).
set -eu
STEPS=${1:-30}
BATCH=${2:-16}
REPS=${3:-3}
BUCKETS=${BUCKETS:-25}
BIN=${RUNEXP:-build/runexp}
EXP=${EXP:-experiments/smoke/unet_ddpm.yaml}
OUT=$(mktemp -d /tmp/rx_dist_bench_XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
SETS="--set train.steps=$STEPS --set train.batch_size=$BATCH --set train.log_every=$STEPS --set train.checkpoint_every=0 --set sample.num_images=4 --set sample.batch_size=4 --quiet --force"

train_s() {   # run dir -> train stage seconds
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]+'/run.json'))['stage_seconds']['train'])" "$1"
}

echo "# bench/dist_cpu.sh: $EXP, $STEPS steps, global batch $BATCH, $REPS repeats; $(nproc) cores"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
one="" two=""
for r in $(seq 1 "$REPS"); do
    d=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 $BIN "$EXP" $SETS --results "$OUT/one$r" | tail -1)
    one="$one $(train_s "$d")"
    for mb in $BUCKETS; do
        d=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RUNEXP_BUCKET_MB=$mb mpirun -np 2 --oversubscribe --bind-to none \
            --mca mpi_yield_when_idle 1 -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMP_WAIT_POLICY -x RUNEXP_BUCKET_MB \
            $BIN "$EXP" $SETS --results "$OUT/two$r-$mb" | tail -1)
        two="$two $mb:$(train_s "$d"):$(python3 -c "import json,sys; g=json.load(open(sys.argv[1]+'/run.json'))['grad_buckets']; print(g['buckets'])" "$d")"
    done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$STEPS" "$BATCH" "$one" "$two" "$BUCKETS" <<'PY'
import statistics, sys
steps, batch = int(sys.argv[1]), int(sys.argv[2])
rows = [("1 rank x 2 threads", [float(x) for x in sys.argv[3].split()])]
runs = [x.split(":") for x in sys.argv[4].split()]
for mb in sys.argv[5].split():
    ts = [float(t) for m, t, n in runs if m == mb]
    nb = [n for m, t, n in runs if m == mb][0]
    rows.append((f"2 ranks x 1 thread, RUNEXP_BUCKET_MB={mb} ({nb} bucket{'s' if nb != '1' else ''})", ts))
for name, t in rows:
    m = statistics.median(t)
    print(f"{name:52s} train {m:7.2f} s (median of {' '.join(f'{x:.2f}' for x in t)})  {steps * batch / m:8.1f} img/s")
PY
rm -rf "$OUT"
