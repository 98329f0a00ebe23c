#!/usr/bin/env bash
# Analysis benchmark (bench/analysis.py): beacon.funnel, retention and segmentation on 1M
# generated events, against the same questions in plain SQL on the same server and in DuckDB
# over the events exported to Parquet, in one run. Prints times and ratios.
#   bench/analysis.sh            (EVENTS, USERS, ROUNDS override the defaults)
source "$(dirname "$0")/../scripts/lib.sh"

ensure_prereqs
python3 -c "import duckdb, psycopg" 2>/dev/null || pip install -q --break-system-packages duckdb psycopg[binary]
install_extension release
start_bench_server
python3 "$REPO/bench/analysis.py" "$BENCH_PORT"
