#!/usr/bin/env bash
# How the write cost grows with the number of continuous queries on one table, and with
# the number of groups one statement touches, in both modes and both fsync regimes, each
# against the bare table measured in the same round:
# - queries: 1, 3, 10, 30 queries (count and sum by country, each with its own filter) over
#   the reference runner's `events`; STMTS statements of 1,000 rows, one client -> rows/s;
# - groups: one query (count, sum, max by `user_id % G`), one statement of 1M rows that
#   touches G = 50, 10,000 or 1M groups -> rows/s.
# Rates are the writer's; for async, the time the worker then needs to catch up is shown.
# Prints one table per fsync regime; results also in bench/results/write_scaling.txt.
#   bench/write_scaling.sh        (STMTS, FSYNC="on off" override)
source "$(dirname "$0")/../scripts/lib.sh"

STMTS=${STMTS:-100}
OUT=${BEACON_BENCH_OUT:-$REPO/bench/results}
mkdir -p "$OUT"
ensure_prereqs
install_extension release
start_bench_server
PORT=$BENCH_PORT
DB=beacon_scaling

q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
now() { date +%s.%N; }

# fresh database with `events` in project `sc`, and the continuous queries given
fresh() {   # mode query...
    local mode=$1; shift
    q -d "$DB" -c "SELECT beacon.drop_project('sc') FROM beacon.projects WHERE name = 'sc'" >/dev/null 2>&1 || true
    q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
    q -d "$DB" -c "CREATE EXTENSION pg_beacon" -c "SELECT beacon.create_project('sc')" \
        -c "CREATE TABLE sc.events (id bigserial PRIMARY KEY, _time timestamptz NOT NULL, user_id int NOT NULL,
                                    country text NOT NULL, product int NOT NULL, price double precision NOT NULL)" >/dev/null
    local i=0
    for query in "$@"; do
        q -d "$DB" -c "SELECT beacon.create_continuous_query('sc', 'q$i', \$q\$$query\$q\$, '$mode')" >/dev/null
        i=$((i + 1))
    done
    q -d "$DB" -c "CHECKPOINT" >/dev/null
}

# rows/s of `statements` INSERTs of `rows` rows each, user_id in [0, users)
load() {   # statements rows users
    local file
    file=$(mktemp /tmp/beacon-scaling.XXXXXX.sql)
    for _ in $(seq 1 "$1"); do
        echo "INSERT INTO sc.events (_time, user_id, country, product, price)
              SELECT now() - random() * interval '1 day', (g.i % $3)::int, 'c' || (random() * 49)::int,
                     (random() * 9999)::int, random() * 100 FROM generate_series(1, $2) AS g (i);"
    done >"$file"
    local t0 t1
    t0=$(now); q -d "$DB" -f "$file" >/dev/null; t1=$(now)
    rm -f "$file"
    python3 -c "print(round($1 * $2 / ($t1 - $t0)))"
}

# async: the worker merges behind the writer; how long after the last write it has caught
# up (the compaction interval, 1 s by default, included), printed as " +N.Ns to catch up"
catch_up() {   # mode
    [ "$1" = async ] || return 0
    local t0 deadline=$((SECONDS + 600))
    t0=$(now)
    while [ "$(q -d "$DB" -tAc "SELECT coalesce(sum(pending_deltas), 0) FROM beacon.continuous_queries")" != 0 ]; do
        [ $SECONDS -lt $deadline ] || { echo "async queries did not catch up" >&2; exit 1; }
        sleep 0.1
    done
    python3 -c "print(' +%.1fs to catch up' % ($(now) - $t0))"
}

queries_for() {   # n
    for j in $(seq 0 $(($1 - 1))); do
        echo "SELECT country, count(*) AS n, sum(price) AS revenue FROM events WHERE product % 30 <> $j GROUP BY country"
    done
}

report=()
for fsync in ${FSYNC:-on off}; do
    q -d postgres -c "ALTER SYSTEM SET fsync = $fsync" -c "SELECT pg_reload_conf()" >/dev/null
    say "fsync = $fsync"
    lines=("fsync $fsync: rows/s, x bare (bare measured before each configuration)"
           "  continuous queries on one table ($STMTS statements x 1,000 rows, one client):")
    for n in 1 3 10 30; do
        mapfile -t queries < <(queries_for "$n")
        fresh async; bare=$(load "$STMTS" 1000 100000)
        row="    $n queries: bare $bare"
        for mode in async immediate; do
            fresh "$mode" "${queries[@]}"
            rate=$(load "$STMTS" 1000 100000)
            row+=", $mode $rate ($(python3 -c "print('%.2f' % ($rate / $bare))") x)$(catch_up "$mode")"
        done
        lines+=("$row"); echo "${lines[-1]}" >&2
    done
    lines+=("  groups one statement touches (one query, one statement of 1M rows):")
    for groups in 50 10000 1000000; do
        query="SELECT user_id % $groups AS g, count(*) AS n, sum(price) AS revenue, max(price) AS top FROM events GROUP BY 1"
        fresh async; bare=$(load 1 1000000 "$groups")
        row="    $groups groups: bare $bare"
        for mode in async immediate; do
            fresh "$mode" "$query"
            rate=$(load 1 1000000 "$groups")
            row+=", $mode $rate ($(python3 -c "print('%.2f' % ($rate / $bare))") x)$(catch_up "$mode")"
        done
        lines+=("$row"); echo "${lines[-1]}" >&2
    done
    report+=("${lines[@]}")
done
q -d postgres -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
q -d "$DB" -c "SELECT beacon.drop_project('sc') FROM beacon.projects WHERE name = 'sc'" >/dev/null 2>&1 || true
printf '%s\n' "${report[@]}" | tee "$OUT/write_scaling.txt"
