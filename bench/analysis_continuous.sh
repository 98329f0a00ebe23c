#!/usr/bin/env bash
# Continuous funnels and retention benchmark (bench/analysis_continuous.py): reading them
# against beacon.funnel / beacon.retention on 1M generated events, and collect_batch
# throughput with one continuous funnel against none. Prints times and ratios.
#   bench/analysis_continuous.sh   (EVENTS, USERS, ROUNDS, WRITES, BATCH override the defaults)
source "$(dirname "$0")/../scripts/lib.sh"

ensure_prereqs
python3 -c "import psycopg, duckdb" 2>/dev/null || pip install -q --break-system-packages duckdb psycopg[binary]
install_extension release
start_bench_server
python3 -u "$REPO/bench/analysis_continuous.py" "$BENCH_PORT"
