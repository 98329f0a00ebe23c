#!/usr/bin/env bash
# Document view benchmark (bench/documents.py): the seed's order model (100k orders by
# default), writes with the view (async, immediate) against the bare tables with fsync on and
# off, commit -> NOTIFY latency, a product update touching 100 documents, reads by key against
# the defining SQL and a plain materialized view. Prints times and ratios.
#   bench/documents.sh           (ORDERS, CLIENTS, SECONDS, RATE override the defaults)
source "$(dirname "$0")/../scripts/lib.sh"

ensure_prereqs
python3 -c "import psycopg" 2>/dev/null || pip install -q --break-system-packages psycopg[binary]
install_extension release
start_bench_server
PGBIN=$PG_BIN python3 "$REPO/bench/documents.py" "$BENCH_PORT"
