#!/usr/bin/env bash
# Continuous-query benchmark: the reference runner (../shared/bench/ivm-workload/run.sh)
# on pg_beacon in async and immediate mode, and on the bare table, all in one run on one
# server, so the ratios compare one to one with the peers' published results there.
# Also samples the async lag from beacon.continuous_queries during the OLTP test.
# Runs in both fsync regimes (FSYNC="on off"), results in bench/results/fsync_<on|off>/.
#   bench/continuous_queries.sh          (REPS, W1_STMTS, W2_SECS, R_ROWS pass through; FSYNC)
source "$(dirname "$0")/../scripts/lib.sh"

RUNNER="$REPO/../shared/bench/ivm-workload/run.sh"
OUT=${BEACON_BENCH_OUT:-$REPO/bench/results}
mkdir -p "$OUT"
ensure_prereqs
install_extension release
start_bench_server
export PGHOST=127.0.0.1 PGPORT=$BENCH_PORT PGUSER=postgres PGBIN=$PG_BIN BENCH_DB=ivmbench

# The runner creates `events` in public; a continuous query reads a table of its project,
# so the setup moves it into project "ivm" and points the database's search_path there.
# Roles are cluster-wide and the runner drops the database between measurements: the
# project's roles left by the previous database are dropped first (create_project never
# adopts existing roles).
export SETUP_SQL="DROP ROLE IF EXISTS beacon_ivm_read, beacon_ivm_write, beacon_ivm_admin, beacon_ivm_owner;
  CREATE EXTENSION pg_beacon; SELECT beacon.create_project('ivm');
  ALTER TABLE public.events SET SCHEMA ivm; ALTER DATABASE ivmbench SET search_path = ivm, public"

run() {   # system mode
    local system=$1 mode=$2
    say "runner: $system"
    VIEW_TEMPLATE="SELECT beacon.create_continuous_query('ivm', '@NAME@', \$q\$@QUERY@\$q\$, '$mode')" \
    REFRESH_TEMPLATE="SELECT 1" \
        "$RUNNER" "$system" | tee "$OUT/$system.txt"
}

psql_admin() { "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d postgres "$@"; }
BASE_OUT=$OUT
for fsync in ${FSYNC:-on off}; do
    psql_admin -c "ALTER SYSTEM SET fsync = $fsync" -c "SELECT pg_reload_conf()" >/dev/null
    OUT=$BASE_OUT/fsync_$fsync
    mkdir -p "$OUT"
    say "fsync = $fsync"
    say "runner: bare"
    "$RUNNER" bare | tee "$OUT/bare.txt"
    say "runner: matview (R only: reading a refreshed materialized view)"
    TESTS=R "$RUNNER" matview | tee "$OUT/matview.txt"
    run pg_beacon_immediate immediate
    run pg_beacon_async async

    # freshness: the async lag sampled during an OLTP run of its own (3 queries, 4 clients)
    say "async lag under OLTP load"
    lag_log="$OUT/pg_beacon_async.lag"
    : >"$lag_log"
    ( while sleep 0.5; do
          "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -d ivmbench \
              -c "SELECT extract(epoch FROM max(lag)) FROM beacon.continuous_queries" 2>/dev/null >>"$lag_log" || true
      done ) &
    sampler=$!
    VIEW_TEMPLATE="SELECT beacon.create_continuous_query('ivm', '@NAME@', \$q\$@QUERY@\$q\$, 'async')" \
        TESTS=W2 REPS=1 "$RUNNER" pg_beacon_async_lag >/dev/null
    kill $sampler 2>/dev/null || true

    # this machine's speed drifts over a run: bare is measured again last, and the ratios use
    # the mean of both bare runs (the summary shows their spread)
    say "runner: bare again"
    TESTS="W1 W2" "$RUNNER" bare | tee "$OUT/bare_end.txt"

    python3 "$REPO/bench/summarize.py" "$OUT" | tee "$OUT/summary.txt"
done
psql_admin -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
