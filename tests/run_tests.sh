#!/bin/sh
# Runs each Criterion test binary given as an argument and prints one closing line
# "N passed, N failed, N skipped" summed over all of them. Exit 1 if any failed.
# passive OpenMP waiting: spinning threads starve each other when test processes share the cores
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
# experiments in the suite find their data sets where the real copies are (../shared/data here)
if [ -z "${RUNEXP_DATA:-}" ] && [ -n "${RUNEXP_DATA_SRC:-}" ]; then export RUNEXP_DATA="$RUNEXP_DATA_SRC"; fi
passed=0; failed=0; skipped=0; bad=""
for t in "$@"; do
  echo "== $t"
  t0=$(date +%s)
  # --verbose: Criterion names a skipped test (and its reason) only then; its Synthesis line
  # leaves skips out of every count, so they are counted here from the [SKIP] lines
  out=$("$t" --jobs=2 --verbose 2>&1); rc=$?
  # the seconds each binary took: make test has a time budget (README), this shows where it goes
  echo "-- $(basename "$t"): $(( $(date +%s) - t0 )) s"
  if [ "$rc" -eq 0 ]; then
    printf '%s\n' "$out" | grep -v -E '^\[(----|RUN |PASS|====\] Running)' | tail -n 25
  else
    # a failure: keep Criterion's [----] lines too, they carry the assertion's file:line and message
    printf '%s\n' "$out" | grep -v -E '^\[(RUN |PASS|====\] Running)' | tail -n 80
  fi
  line=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -n 1)
  p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  s=$(printf '%s\n' "$out" | grep '^\[SKIP\] ' | grep -vc ': Test is disabled$')
  [ -z "$p" ] && { p=0; f=1; c=0; }
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
  if [ "$rc" -ne 0 ] || [ "${f:-0}" -ne 0 ]; then bad="$bad $t"; fi
done
[ -n "$bad" ] && echo "failing binaries:$bad"
echo "$passed passed, $failed failed, $skipped skipped"
[ -z "$bad" ]
