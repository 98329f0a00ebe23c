#!/usr/bin/env bash
# package-check.sh PACKAGE_DIR PG_CONFIG: installs a package built by scripts/package.sh
# into the PostgreSQL installation PG_CONFIG belongs to (one that never built pg_beacon),
# starts a throw-away preloaded server from it and checks that the extension works there:
# CREATE EXTENSION, the worker, an event, a continuous query, and the upgrade from the
# oldest shipped release. Prints "package: 1 passed, 0 failed" when it does.
source "$(dirname "$0")/lib.sh"

package=$1
config=$2
bin=$("$config" --bindir)
data=$(mktemp -d /tmp/pg_beacon-package-check.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    as_postgres "$bin/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT

sh "$package/install.sh" "$config" >/dev/null
chown postgres:postgres "$data"
as_postgres "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
shared_preload_libraries = 'pg_beacon'
CONF
as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
q() { "$bin/psql" -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }

oldest=$(ls "$package"/extension/pg_beacon--*.sql | sed -nE 's/.*pg_beacon--([0-9.]+)\.sql$/\1/p' | sort -V | head -1)
current=$(sed -nE "s/^default_version = '(.*)'/\1/p" "$package/extension/pg_beacon.control")
fail() { echo "package check failed: $*" >&2; tail -20 "$data/server.log" >&2; echo "package: 0 passed, 1 failed"; exit 1; }

q -d postgres -c "CREATE DATABASE fresh" -c "CREATE DATABASE upgraded"
q -d fresh -c "CREATE EXTENSION pg_beacon" \
  -c "SELECT beacon.create_project('pkg')" \
  -c "SELECT beacon.collect('pkg', 'hits', '{\"page\": \"/\"}')" \
  -c "SELECT beacon.create_continuous_query('pkg', 'per_page', 'SELECT page, count(*) AS views FROM hits GROUP BY page', 'immediate')" \
  -c "SELECT beacon.collect('pkg', 'hits', '{\"page\": \"/\"}')" >/dev/null \
  || fail "creating a project, events and a continuous query"
[ "$(q -d fresh -c "SELECT views FROM pkg.per_page WHERE page = '/'")" = 2 ] || fail "continuous query"
[ "$(q -d fresh -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_beacon'")" = "$current" ] \
    || fail "fresh install is not version $current"
q -d upgraded -c "CREATE EXTENSION pg_beacon VERSION '$oldest'" -c "ALTER EXTENSION pg_beacon UPDATE" \
    || fail "upgrade from $oldest"
[ "$(q -d upgraded -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_beacon'")" = "$current" ] \
    || fail "upgrade did not reach $current"
for _ in $(seq 300); do
    [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_beacon launcher'")" = 1 ] && break
    sleep 0.1
done
[ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_beacon launcher'")" = 1 ] \
    || fail "the launcher is not running"
echo "package: 1 passed, 0 failed"
