#!/usr/bin/env bash
# Runs every test: plain #[test]s and #[pg_test]s (cargo pgrx test, its own server), then
# the out-of-process tests in tests/, which start their own preloaded servers.
source "$(dirname "$0")/lib.sh"

ensure_prereqs
PGRX_DATA=${BEACON_TEST_PGDATA:-/var/lib/postgresql/pg_beacon-pgrx-test}
rm -rf "$PGRX_DATA"
mkdir -p "$(dirname "$PGRX_DATA")"
unlink_installed_library
say "cargo pgrx test (unit, #[pg_test] and out-of-process tests)"
cd "$REPO"
cargo pgrx test pg$PG_MAJOR --runas postgres --pgdata "$PGRX_DATA"
