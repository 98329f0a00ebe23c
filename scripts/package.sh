#!/usr/bin/env bash
# Builds the installable files for one PostgreSQL major (BEACON_PG, default 15):
#   <out>/pg_beacon-pg<major>/{lib/pg_beacon.so, extension/*, install.sh}
# and a tarball of it beside. install.sh copies them into whatever server its pg_config
# (argument or first on PATH) names: no Rust toolchain needed there.
#   scripts/package.sh [--debug] [--out DIR]     (default DIR: target/package)
source "$(dirname "$0")/lib.sh"

profile=(--profile release)
out=$REPO/target/package
while [ $# -gt 0 ]; do
    case $1 in
    --debug) profile=(--debug); shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: scripts/package.sh [--debug] [--out DIR]" >&2; exit 2 ;;
    esac
done

# under scripts/test.sh, PGRX_HOME is its private one and already initialised
if [ -z "${PGRX_HOME:-}" ]; then
    ensure_prereqs
else
    ensure_postgres "$PG_MAJOR"
    ensure_cargo_pgrx
fi
name=pg_beacon-pg$PG_MAJOR
staging=$out/$name.staging
rm -rf "$staging" "$out/$name" "$out/$name.tar.gz"
mkdir -p "$out"
say "packaging pg_beacon for PostgreSQL $PG_MAJOR (${profile[*]})"
(cd "$REPO" && cargo pgrx package --no-default-features --features "pg$PG_MAJOR" \
    --pg-config "$PG_CONFIG" "${profile[@]}" --out-dir "$staging" >/dev/null)
mkdir -p "$out/$name/lib" "$out/$name/extension"
find "$staging" -name 'pg_beacon*.so' -exec cp {} "$out/$name/lib/" \;
find "$staging" -path '*/extension/*' -name 'pg_beacon*' -exec cp {} "$out/$name/extension/" \;
cp "$REPO"/sql/releases/pg_beacon--*.sql "$out/$name/extension/"
rm -rf "$staging"
cat >"$out/$name/install.sh" <<INSTALL
#!/bin/sh
# Installs pg_beacon for PostgreSQL $PG_MAJOR: sh install.sh [path/to/pg_config]
set -eu
here=\$(cd "\$(dirname "\$0")" && pwd)
pg_config=\${1:-pg_config}
major=\$("\$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\\1/')
if [ "\$major" != "$PG_MAJOR" ]; then
    echo "this package is for PostgreSQL $PG_MAJOR; \$pg_config is PostgreSQL \$major" >&2
    exit 1
fi
libdir=\$("\$pg_config" --pkglibdir)
extdir=\$("\$pg_config" --sharedir)/extension
# a running server keeps the old library mapped: write a new file, never over it
rm -f "\$libdir/pg_beacon.so"
cp "\$here/lib/pg_beacon.so" "\$libdir/"
cp "\$here"/extension/* "\$extdir/"
echo "pg_beacon installed into \$libdir and \$extdir"
echo "add shared_preload_libraries = 'pg_beacon' to postgresql.conf and restart for the background worker"
INSTALL
chmod +x "$out/$name/install.sh"
tar -C "$out" -czf "$out/$name.tar.gz" "$name"
ls "$out/$name/lib/pg_beacon.so" "$out/$name/extension/pg_beacon.control" >/dev/null
echo "$out/$name.tar.gz"
