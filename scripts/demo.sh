#!/usr/bin/env bash
# Installs what is missing, builds pg_beacon, starts a local PostgreSQL with pg_beacon
# preloaded and runs a short demo. Safe to run again.
#   BEACON_PG=18 ./scripts/demo.sh     the same on PostgreSQL 18 (default 15)
source "$(dirname "$0")/lib.sh"

case $PG_MAJOR in 15) default_port=5499 ;; *) default_port=5518 ;; esac
PORT=${BEACON_PORT:-$default_port}
DATA=${BEACON_PGDATA:-/var/lib/postgresql/pg_beacon-demo-$PG_MAJOR}
DB=beacon_demo

ensure_prereqs
install_extension release
say "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$PORT (data: $DATA)"
start_server "$DATA" "$PORT"

psql_demo() { "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
# a fresh database every run, so the demo always shows the pg_beacon just built; project
# roles are cluster-wide and outlive the dropped database, and create_project never adopts
# an existing role, so they go too (all four of each project: the demo's and the dashboard's)
psql_demo -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "DROP ROLE IF EXISTS beacon_demo_read, beacon_demo_write, beacon_demo_admin, beacon_demo_owner" \
    -c "DROP ROLE IF EXISTS beacon_ecommerce_read, beacon_ecommerce_write, beacon_ecommerce_admin, beacon_ecommerce_owner" \
    -c "CREATE DATABASE $DB"
say "demo"
psql_demo -d "$DB" -v ON_ERROR_STOP=1 -f "$REPO/scripts/demo.sql"
say "dashboard"
psql_demo -d "$DB" -v ON_ERROR_STOP=1 -f "$REPO/scripts/dashboard.sql"

cat <<TXT

pg_beacon is running on PostgreSQL $PG_MAJOR. Connect with:

    $PG_BIN/psql -h 127.0.0.1 -p $PORT -U postgres $DB

Stop it with:   runuser -u postgres -- $PG_BIN/pg_ctl -D $DATA stop
TXT
