#!/usr/bin/env bash
# Event-stream benchmark: notification latency with 1 and 50 subscriptions under a steady
# stream of single-event beacon.collect calls, and the cost to bulk inserts of subscriptions
# whose filters match nothing, against a bare table of the same shape, in one run on one
# server (the program is bench/stream_bench.rs). Output goes to bench/results/streams.txt.
#   bench/streams.sh    (DURATION_S, RATE, ROUNDS, ROWS, WRITER_SYNCHRONOUS_COMMIT override
#                        the defaults; see bench/stream_bench.rs)
source "$(dirname "$0")/../scripts/lib.sh"

DB=beacon_stream_bench

ensure_prereqs
install_extension release
start_bench_server
PORT=$BENCH_PORT

q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
# roles are cluster-wide: drop the project before its database, or they outlive it
q -d $DB -c "SELECT beacon.drop_project(name) FROM beacon.projects" >/dev/null 2>&1 || true
q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q -d $DB -c "CREATE EXTENSION pg_beacon"

say "running the stream benchmark"
mkdir -p "$REPO/bench/results"
cd "$REPO"
BEACON_BENCH_DSN="host=127.0.0.1 port=$PORT user=postgres dbname=$DB" \
    cargo run --quiet --features pg15 --example stream_bench | tee "$REPO/bench/results/streams.txt"
