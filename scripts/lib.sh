# Shared by scripts/demo.sh, scripts/test.sh and bench/: prerequisites and a local server.
# Everything here is idempotent: a second run checks and skips what is already done.
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ensure_prereqs() {
    local missing=()
    for pkg in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
        say "installing cargo-pgrx 0.18.0 (compiles for a few minutes, once)"
        cargo install cargo-pgrx --version 0.18.0 --locked
    fi
    if ! grep -qs "pg$PG_MAJOR" "$HOME/.pgrx/config.toml"; then
        say "pointing pgrx at PostgreSQL $PG_MAJOR"
        cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
    fi
}

# A server process keeps the old library mapped; unlinking first means the install
# writes a new file instead of overwriting pages under a running postmaster.
unlink_installed_library() {
    rm -f "$("$PG_CONFIG" --pkglibdir)/pg_beacon.so"
}

install_extension() {
    say "building and installing pg_beacon ($1)"
    unlink_installed_library
    (cd "$REPO" && cargo pgrx install --pg-config "$PG_CONFIG" ${1:+--$1} >/dev/null)
}

as_postgres() { runuser -u postgres -- "$@"; }

# start_server DATADIR PORT: a loopback-only cluster owned by the postgres OS user, with
# pg_beacon preloaded so that its background worker runs.
start_server() {
    local data=$1 port=$2
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
BENCH_DATA=${BEACON_BENCH_PGDATA:-/var/lib/postgresql/pg_beacon-bench}
start_bench_server() {
    if [ ! -s "$BENCH_DATA/PG_VERSION" ]; then
        start_server "$BENCH_DATA" "$BENCH_PORT"
        grep -v -E '^(port|listen_addresses|unix_socket_directories)' \
            "$REPO/../shared/bench/ivm-workload/postgresql.bench.conf" >>"$BENCH_DATA/postgresql.conf"
    fi
    start_server "$BENCH_DATA" "$BENCH_PORT"
}
