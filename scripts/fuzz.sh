#!/usr/bin/env bash
# The long run of the continuous-query fuzzer (tests/cq_fuzz.rs) on PostgreSQL 15 (or
# BEACON_TEST_PG), through scripts/test.sh: epochs of random queries and concurrent
# writes until N seconds have passed, then the number of comparisons, the epochs' seeds
# and every failure class with its first report.
#
#   scripts/fuzz.sh --seconds N [--seed S]
set -euo pipefail
usage() { echo "usage: $0 --seconds N [--seed S]" >&2; exit 2; }
seconds="" seed=""
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --seed) [ $# -ge 2 ] || usage; seed=$2; shift 2 ;;
    *) usage ;;
    esac
done
[[ $seconds =~ ^[0-9]+$ ]] || usage
[ -z "$seed" ] || [[ $seed =~ ^[0-9]+$ ]] || usage
report=$(mktemp /tmp/cq_fuzz_report.XXXXXX)
trap 'rm -f "$report"' EXIT
export BEACON_FUZZ_SECONDS=$seconds BEACON_FUZZ_REPORT=$report
[ -z "$seed" ] || export BEACON_FUZZ_SEED=$seed
status=0
BEACON_TEST_PG=${BEACON_TEST_PG:-15} "$(dirname "$0")/test.sh" cq_fuzz || status=$?
printf '\n== fuzz report\n'
cat "$report" 2>/dev/null || echo "(no report: the run did not get as far as writing one)"
exit $status
