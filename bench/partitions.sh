#!/usr/bin/env bash
# Partition and archive benchmark (bench/partitions.py): collect into a day-partitioned
# collection against a plain one (fsync on and off), and archiving a day of 1M events
# against COPY TO csv of the same partition. Prints rates and ratios.
#   bench/partitions.sh           (EVENTS, CLIENTS, SECONDS, BATCH override the defaults)
source "$(dirname "$0")/../scripts/lib.sh"

ensure_prereqs
python3 -c "import psycopg" 2>/dev/null || pip install -q --break-system-packages psycopg[binary]
install_extension release
start_bench_server
PGBIN=$PG_BIN python3 "$REPO/bench/partitions.py" "$BENCH_PORT"
