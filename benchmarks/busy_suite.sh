#!/usr/bin/env bash
# The whole test suite on a machine kept busy: BURNERS processes (default: one per core) spin
# at normal priority for the whole run, so every test, notebook and browser check gets about
# half the CPU it would have. No test may depend on the speed of the machine (issue 27); this
# shows it. Prints the suite's wall time and pytest's summary.
#
#   bash benchmarks/busy_suite.sh [pytest arguments]        # e.g. -x
#   BURNERS=1 bash benchmarks/busy_suite.sh
#
# Run it alone (nothing else heavy on the machine): it takes about twice the suite's time.
set -euo pipefail
cd "$(dirname "$0")/.."
burners=${BURNERS:-$(nproc)}
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop EXIT
for _ in $(seq "$burners"); do
  python3 -c 'while True: pass' &
  pids+=($!)
done
echo "busy: $burners burner(s) on $(nproc) core(s), pids ${pids[*]}"
SECONDS=0
status=0
bash scripts/test.sh "$@" || status=$?
echo "suite under $burners burner(s): exit $status after $SECONDS s"
exit "$status"
