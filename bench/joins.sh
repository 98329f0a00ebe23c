#!/usr/bin/env bash
# Join benchmark: the reference runner (../shared/bench/ivm-workload/run.sh) on its join
# workload (../shared/bench/join-workload: events joined with products and countries, views
# j1-j3, W3 mixing product-category updates with fact inserts), for pg_beacon in async and
# immediate mode and for the bare tables, on one server in one run, with fsync on and then
# off (CPU-bound: trigger cost is not hidden behind WAL flushes). W3 runs with the indexes
# the advisor asks for (create_indexes => true); W1/W2 without, like bare.
#   bench/joins.sh        (REPS, W1_STMTS, W2_SECS, R_ROWS pass through; FSYNC="on off")
source "$(dirname "$0")/../scripts/lib.sh"

RUNNER="$REPO/../shared/bench/ivm-workload/run.sh"
export WORKLOAD_DIR="$REPO/../shared/bench/join-workload"
OUT=${BEACON_BENCH_OUT:-$REPO/bench/results/joins}
mkdir -p "$OUT"
ensure_prereqs
install_extension release
start_bench_server
export PGHOST=127.0.0.1 PGPORT=$BENCH_PORT PGUSER=postgres PGBIN=$PG_BIN BENCH_DB=ivmbench
psql_admin() { "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d postgres "$@"; }

# the runner creates the tables in public; a continuous query reads tables of its project
export SETUP_SQL="DROP ROLE IF EXISTS beacon_ivm_read, beacon_ivm_write, beacon_ivm_admin, beacon_ivm_owner;
  CREATE EXTENSION pg_beacon; SELECT beacon.create_project('ivm');
  ALTER TABLE public.events SET SCHEMA ivm; ALTER TABLE public.products SET SCHEMA ivm;
  ALTER TABLE public.countries SET SCHEMA ivm; ALTER DATABASE ivmbench SET search_path = ivm, public"

run() {   # system mode tests indexes
    local system=$1 mode=$2 tests=$3 indexes=$4
    say "runner: $system ($tests)"
    VIEW_TEMPLATE="SELECT beacon.create_continuous_query('ivm', '@NAME@', \$q\$@QUERY@\$q\$, '$mode', create_indexes => $indexes)" \
    REFRESH_TEMPLATE="SELECT 1" TESTS="$tests" \
        "$RUNNER" "$system" | tee -a "$OUT/$system.txt"
}

for fsync in ${FSYNC:-on off}; do
    psql_admin -c "ALTER SYSTEM SET fsync = $fsync" -c "SELECT pg_reload_conf()" >/dev/null
    dir="$OUT/fsync_$fsync"
    mkdir -p "$dir"
    rm -f "$dir"/*.txt
    OUT=$dir
    say "fsync = $fsync"
    "$RUNNER" bare | tee "$OUT/bare.txt"
    run pg_beacon_immediate immediate "W1 W2 R" false
    run pg_beacon_immediate immediate "W3" true
    run pg_beacon_async async "W1 W2 R" false
    run pg_beacon_async async "W3" true
    say "runner: bare again"
    TESTS="W1 W2 W3" "$RUNNER" bare | tee "$OUT/bare_end.txt"
    python3 "$REPO/bench/summarize_joins.py" "$OUT" | tee "$OUT/summary.txt"
    OUT=${BEACON_BENCH_OUT:-$REPO/bench/results/joins}
done
psql_admin -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
