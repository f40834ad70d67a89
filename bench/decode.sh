#!/bin/sh
# bench/decode.sh — JPEG decoding on one core, runexp (TurboJPEG) against PIL, same files.
#
#   make bench && bench/decode.sh [N] [DIR] [repeats] [rounds]
#   defaults: 200 files in /tmp/runexp-decode-bench, fastest of 5 passes, 3 rounds
#
# Makes N 256x256 JPEGs with PIL in DIR when it holds fewer (bench/decode_pil.py --make). Then
# `rounds` times, alternating: build/bench/decode DIR and bench/decode_pil.py DIR, each one
# thread, fastest of `repeats` passes after a warm-up. Prints every line, the load average,
# and the best of the rounds for each side with the ratio runexp / PIL of images per second,
# by wall clock and by thread CPU time (the fairer one on a shared machine: other jobs stretch
# the wall clock of whichever side they happen to meet). Target (issue 21): ratio >= 1.
set -eu
cd "$(dirname "$0")/.."
N=${1:-200}
DIR=${2:-/tmp/runexp-decode-bench}
REPEATS=${3:-5}
ROUNDS=${4:-3}
BIN=build/bench/decode
[ -x "$BIN" ] || { echo "bench/decode.sh: $BIN missing; run make bench" >&2; exit 2; }
have=$(ls "$DIR" 2>/dev/null | grep -c '\.jpg$' || true)
if [ "$have" -lt "$N" ]; then
    echo "# making $N JPEGs in $DIR with PIL"
    rm -rf "$DIR" && python3 bench/decode_pil.py --make "$DIR" "$N" 256
fi
echo "# bench/decode: $N files in $DIR, libturbojpeg $(pkg-config --modversion libturbojpeg 2>/dev/null || echo '?')," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
LINES=""
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    C=$(OMP_NUM_THREADS=1 "$BIN" "$DIR" "$REPEATS")
    P=$(python3 bench/decode_pil.py "$DIR" "$REPEATS")
    echo "$C"
    echo "$P"
    LINES="$LINES$C
$P
"
    r=$((r + 1))
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
# "... fastest of R: WALL images/s wall, CPU images/s thread CPU": best WALL and CPU per side
printf '%s' "$LINES" | awk '
    { split($0, a, "fastest of "); split(a[2], f, " "); side = ($1 == "PIL") ? "pil" : "rx";
      if (f[2] > wall[side]) wall[side] = f[2]; if (f[5] > cpu[side]) cpu[side] = f[5] }
    END { printf "best of rounds: runexp %.1f / %.1f, PIL %.1f / %.1f images/s (wall / thread CPU)\n",
                 wall["rx"], cpu["rx"], wall["pil"], cpu["pil"];
          printf "runexp / PIL: %.2fx wall, %.2fx thread CPU\n", wall["rx"] / wall["pil"], cpu["rx"] / cpu["pil"] }'
