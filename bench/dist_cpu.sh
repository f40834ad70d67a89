#!/bin/sh
# bench/dist_cpu.sh — CPU data-parallel throughput (issue 17): 2 MPI ranks x 1 thread against
# 1 process x 2 threads, the same experiment and global batch. Each configuration runs REPS
# times, alternating; the figure is training images per second from run.json's train stage
# time (steps x global batch / seconds), median of the repeats. mpi_yield_when_idle: a rank
# waiting in a collective yields its core instead of spinning (2 ranks on 2 shared cores).
# Prints the load average around it (the machine may be shared). Usage: sh bench/dist_cpu.sh [STEPS] [BATCH] [REPS]
set -eu
STEPS=${1:-30}
BATCH=${2:-16}
REPS=${3:-3}
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
    d=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpirun -np 2 --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
        -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMP_WAIT_POLICY $BIN "$EXP" $SETS --results "$OUT/two$r" | tail -1)
    two="$two $(train_s "$d")"
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$STEPS" "$BATCH" "$one" "$two" <<'PY'
import statistics, sys
steps, batch = int(sys.argv[1]), int(sys.argv[2])
for name, ts in (("1 rank x 2 threads", sys.argv[3]), ("2 ranks x 1 thread", sys.argv[4])):
    t = [float(x) for x in ts.split()]
    m = statistics.median(t)
    print(f"{name:20s} train {m:7.2f} s (median of {' '.join(f'{x:.2f}' for x in t)})  {steps * batch / m:8.1f} img/s")
PY
rm -rf "$OUT"
