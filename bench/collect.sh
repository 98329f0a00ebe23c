#!/usr/bin/env bash
# Ingest benchmark, in both fsync regimes, every figure against its bare reference measured
# in the same run on the same server:
# - batches: the same 200,000 events (10 properties of mixed types) loaded with
#   beacon.collect_batch in batches of 1,000, and with COPY of the equivalent typed rows;
# - single events: pgbench, 4 clients, one event per transaction, beacon.collect against a
#   plain single-row INSERT into a table of the same shape.
# Prints events/s and the ratios (medians of ROUNDS rounds).
#   bench/collect.sh        (EVENTS, BATCH, ROUNDS, SECS, CLIENTS, FSYNC="on off" override)
source "$(dirname "$0")/../scripts/lib.sh"

EVENTS=${EVENTS:-200000}
BATCH=${BATCH:-1000}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-4}
WORK=$(mktemp -d /tmp/beacon-bench.XXXXXX)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

ensure_prereqs
install_extension release
start_bench_server
PORT=$BENCH_PORT

q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
# roles are cluster-wide: drop the project before its database, or they outlive it
q -d beacon_bench -c "SELECT beacon.drop_project(name) FROM beacon.projects" >/dev/null 2>&1 || true
q -d postgres -c "DROP DATABASE IF EXISTS beacon_bench" -c "CREATE DATABASE beacon_bench"
q -d beacon_bench -c "CREATE EXTENSION pg_beacon"

say "generating $EVENTS events"
COLUMNS=$(python3 "$REPO/bench/gen_events.py" "$EVENTS" "$BATCH" "$WORK/events")
TYPES="url text, price double precision, quantity bigint, logged_in boolean, at timestamptz,
       country text, score double precision, tags text[], meta jsonb, referrer text, _user text"

# one event per transaction, the same values both ways (the event built server-side, so
# that pgbench's own variable syntax cannot meet the JSON)
cat >"$WORK/insert.pgbench" <<'SQL'
\set i random(1, 10000)
INSERT INTO bare_same (url, price, quantity, logged_in, at, country, score, tags, meta, referrer, _user) VALUES ('/product/' || (:i)::text, 13.48, 5, true, '2026-11-01T00:00:00Z', 'c08', 0.73, '{t1,t2}', '{"ab":"b","v":0}', 'google', 'u' || (:i)::text);
SQL
cat >"$WORK/collect.pgbench" <<'SQL'
\set i random(1, 10000)
SELECT beacon.collect('bench', 'pageview', pg_catalog.jsonb_build_object('url', '/product/' || (:i)::text, 'price', 13.48, 'quantity', 5, 'logged_in', true, 'at', '2026-11-01T00:00:00Z'::text, 'country', 'c08'::text, 'score', 0.73, 'tags', '["t1","t2"]'::jsonb, 'meta', '{"ab":"b","v":0}'::jsonb, 'referrer', 'google'::text, '_user', 'u' || (:i)::text));
SQL
chmod 644 "$WORK"/*.pgbench

now() { date +%s.%N; }
rate() { python3 -c "print(round($EVENTS / ($2 - $1)))"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tps() {
    "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -h 127.0.0.1 -p "$PORT" -U postgres \
        -f "$1" beacon_bench 2>&1 | awk '/^tps/ {print int($3)}'
}
fresh_tables() {
    q -d beacon_bench -c "SELECT beacon.drop_project('bench') FROM beacon.projects WHERE name = 'bench'" \
        -c "SELECT beacon.create_project('bench')" \
        -c "DROP TABLE IF EXISTS bare_same, bare_heap" \
        -c "CREATE TABLE bare_same (_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                _time timestamptz NOT NULL DEFAULT now(), $TYPES)" \
        -c "CREATE INDEX ON bare_same USING brin (_time)" \
        -c "CREATE TABLE bare_heap ($TYPES)" -c "CHECKPOINT" >/dev/null 2>&1
}

summary=()
for fsync in ${FSYNC:-on off}; do
    q -d postgres -c "ALTER SYSTEM SET fsync = $fsync" -c "SELECT pg_reload_conf()" >/dev/null
    say "fsync = $fsync"
    declare -a beacon_rates=() same_rates=() heap_rates=() collect_tps=() insert_tps=()
    for round in $(seq 1 "$ROUNDS"); do
        fresh_tables
        # the collection exists before timing, like the bare tables; its columns do not
        for table in bare_heap bare_same; do
            t0=$(now); q -d beacon_bench -c "\\copy $table ($COLUMNS) FROM '$WORK/events.csv' WITH (FORMAT csv)"; t1=$(now)
            [ $table = bare_heap ] && heap_rates+=("$(rate "$t0" "$t1")") || same_rates+=("$(rate "$t0" "$t1")")
        done
        q -d beacon_bench -c "CHECKPOINT" >/dev/null
        t0=$(now); q -d beacon_bench -f "$WORK/events.sql" >/dev/null; t1=$(now)
        beacon_rates+=("$(rate "$t0" "$t1")")
        stored=$(q -d beacon_bench -tA -c "SELECT count(*) FROM bench.pageview")
        [ "$stored" = "$EVENTS" ] || { echo "stored $stored of $EVENTS events" >&2; exit 1; }
        echo "round $round: collect_batch ${beacon_rates[-1]} ev/s, COPY same-shape ${same_rates[-1]} ev/s, COPY heap ${heap_rates[-1]} ev/s" >&2

        # single events: the collection already has its columns, as in steady state
        q -d beacon_bench -c "TRUNCATE bench.pageview, bare_same" -c "CHECKPOINT" >/dev/null
        insert_tps+=("$(tps "$WORK/insert.pgbench")")
        collect_tps+=("$(tps "$WORK/collect.pgbench")")
        rejected=$(q -d beacon_bench -tA -c "SELECT count(*) FROM bench._rejected")
        [ "$rejected" = 0 ] || { echo "$rejected single events were rejected" >&2; exit 1; }
        echo "round $round: collect ${collect_tps[-1]} ev/s, INSERT ${insert_tps[-1]} rows/s ($CLIENTS clients)" >&2
    done
    beacon=$(median "${beacon_rates[@]}"); same=$(median "${same_rates[@]}"); heap=$(median "${heap_rates[@]}")
    single=$(median "${collect_tps[@]}"); insert=$(median "${insert_tps[@]}")
    summary+=("fsync $fsync: events $EVENTS (10 properties + _user), batches of $BATCH, median of $ROUNDS rounds
  COPY into bare table, same shape (identity PK + BRIN): $same events/s
  COPY into bare heap, no indexes:                      $heap events/s
  beacon.collect_batch:                                 $beacon events/s
$(python3 -c "print('  collect_batch = %.2f x bare COPY (same shape), %.2f x bare COPY (heap)' % ($beacon / $same, $beacon / $heap))")
  single-row INSERT, $CLIENTS clients:                      $insert rows/s
  beacon.collect, $CLIENTS clients:                         $single events/s
$(python3 -c "print('  collect = %.2f x single-row INSERT' % ($single / $insert))")")
done
q -d postgres -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
echo
printf '%s\n' "${summary[@]}"
