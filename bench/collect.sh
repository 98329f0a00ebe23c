#!/usr/bin/env bash
# Ingest benchmark: the same 200,000 events (10 properties of mixed types) loaded with
# beacon.collect_batch in batches of 1,000, and with COPY of the equivalent typed rows into
# bare tables, in one run on one server. Prints events/s and the ratios.
#   bench/collect.sh            (EVENTS, BATCH, ROUNDS override the defaults)
source "$(dirname "$0")/../scripts/lib.sh"

EVENTS=${EVENTS:-200000}
BATCH=${BATCH:-1000}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/beacon-bench.XXXXXX)
chmod 755 "$WORK"

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

now() { date +%s.%N; }
rate() { python3 -c "print(round($EVENTS / ($2 - $1)))"; }
declare -a beacon_rates same_rates heap_rates
for round in $(seq 1 "$ROUNDS"); do
    q -d beacon_bench -c "SELECT beacon.drop_project('bench') FROM beacon.projects WHERE name = 'bench'" \
        -c "SELECT beacon.create_project('bench')" \
        -c "DROP TABLE IF EXISTS bare_same, bare_heap" \
        -c "CREATE TABLE bare_same (_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                _time timestamptz NOT NULL DEFAULT now(), $TYPES)" \
        -c "CREATE INDEX ON bare_same USING brin (_time)" \
        -c "CREATE TABLE bare_heap ($TYPES)" -c "CHECKPOINT" >/dev/null
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
done
rm -rf "$WORK"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
beacon=$(median "${beacon_rates[@]}"); same=$(median "${same_rates[@]}"); heap=$(median "${heap_rates[@]}")
echo
echo "events: $EVENTS (10 properties + _user), batches of $BATCH, median of $ROUNDS rounds"
echo "COPY into bare table, same shape (identity PK + BRIN): $same events/s"
echo "COPY into bare heap, no indexes:                      $heap events/s"
echo "beacon.collect_batch:                                    $beacon events/s"
python3 -c "print('collect_batch = %.2f x bare COPY (same shape), %.2f x bare COPY (heap)' % ($beacon / $same, $beacon / $heap))"
