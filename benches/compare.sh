#!/usr/bin/env bash
# Full-run benchmark, PostgreSQL to PostgreSQL, side by side on one machine and one server:
#   - cloudmigrate run
#   - a per-table pipe: psql \copy (format binary) to stdout | psql \copy from stdin
#   - pgloader (Debian package)
# and SQLite -> PostgreSQL and MySQL -> PostgreSQL, cloudmigrate against pgloader, on the same data.
#
# Usage: benches/compare.sh [LEDGER_ROWS] [SMALL_TABLES]      (default 2000000 900)
# Prints a Markdown table of wall time and peak memory (RSS), as in docs/benchmarks.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rows=${1:-2000000}
small=${2:-900}
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}

for tool in pgloader:pgloader /usr/bin/time:time; do
  command -v "${tool%%:*}" >/dev/null || {
    sudo_cmd=$([[ $(id -u) == 0 ]] || echo sudo)
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}"
  }
done

.ci/build-release -q
bin=$CARGO_TARGET_DIR/release/cloudmigrate

state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-bench.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db"
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
pg_base=${CLOUDMIGRATE_TEST_PG_URL%/*}
my_base=${CLOUDMIGRATE_TEST_MYSQL_URL%/*}
pg_hostport=${pg_base#postgres://cloudmigrate@}
my_hostport=${my_base#mysql://cloudmigrate@}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg_base/$1" "${@:2}"; }

echo "generating: ledger of $rows rows, $small small tables" >&2
psql_ postgres -c "CREATE DATABASE src"
PGOPTIONS="-c bench.small_tables=$small" psql_ src -v ledger_rows="$rows" -f benches/bc_like.sql
size=$(psql_ src -Atc "SELECT pg_size_pretty(pg_database_size('src'))")
schema=$(pg_dump --schema-only --no-owner "$pg_base/src")

# A fresh target with the cloud's schema (the tenant has its schema already).
target() {
  psql_ postgres -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\""
  [[ ${2:-} == empty ]] || psql_ "$1" <<<"$schema" >/dev/null
}

# Runs a command under /usr/bin/time; prints "seconds peak_MiB".
measure() {
  /usr/bin/time -f '%e %M' -o "$state/time" "$@" >"$state/out" 2>&1 || {
    echo "FAILED: $*" >&2
    tail -n 20 "$state/out" >&2
    return 1
  }
  awk '{printf "%.1f %.0f\n", $1, $2/1024}' "$state/time"
}

secret() { [[ $1 == sqlite* ]] || echo ", passwordSecretRef: {name: x}"; }
manifest() { # source-url target-url include create-missing-tables
  cat <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: bench}
spec:
  source: {url: "$1"$(secret "$1")}
  target: {url: "$2"$(secret "$2"), createMissingTables: ${4:-false}}
  tables: {include: [${3:-}]}
  runtime: {parallelism: 4}
YAML
}
cloudmigrate_run() { # source target include
  manifest "$1" "$2" "${3:-}" >"$state/m.yaml"
  CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD \
    measure "$bin" run -f "$state/m.yaml" --only-problems
}

pipe_tables() { # target [table]
  set -o pipefail
  local tables
  if [[ -n ${2:-} ]]; then tables=$2; else tables=$(psql_ src -Atc "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'cloudmigrate\\_%'"); fi
  # The ERP's tables only: change tracking's own tables (cloudmigrate_*), which the runs above
  # installed on the source, are not data to migrate.
  while IFS= read -r t; do
    local q=\"${t//\"/\"\"}\"
    psql -X -q -v ON_ERROR_STOP=1 "$pg_base/src" -c "\\copy $q to stdout (format binary)" |
      psql -X -q -v ON_ERROR_STOP=1 "$pg_base/$1" -c "TRUNCATE $q" -c "\\copy $q from stdin (format binary)" ||
      return 1
  done <<<"$tables"
}
export -f pipe_tables psql_
export pg_base

# pgloader with its defaults (4 workers). Debian builds it with a 1 GiB Lisp heap, which this
# ledger exhausts ("Heap exhausted, game over"), so it gets 4 GiB. When it does fail, SBCL's
# debugger waits on stdin, hence </dev/null.
pgloader_run() { # load-file
  measure pgloader --dynamic-space-size 4096 --no-ssl-cert-verification "$1" </dev/null
}

ledger='CRONUS International Ltd_$G_L Entry'
results=()
row() { results+=("| $1 | $2 | $3 s | $4 MiB |"); echo "$1 / $2: $3 s, $4 MiB" >&2; }

target t_cm_big
read -r s m < <(cloudmigrate_run "$pg_base/src" "$pg_base/t_cm_big" '"G_L Entry"')
row "G/L Entry ($rows rows)" "cloudmigrate" "$s" "$m"
target t_pipe_big
read -r s m < <(measure bash -c 'pipe_tables t_pipe_big "$1"' _ "$ledger")
row "G/L Entry ($rows rows)" "psql binary COPY pipe" "$s" "$m"

target t_cm_all
read -r s m < <(cloudmigrate_run "$pg_base/src" "$pg_base/t_cm_all")
row "whole database ($size)" "cloudmigrate" "$s" "$m"
target t_pipe_all
read -r s m < <(measure bash -c "pipe_tables t_pipe_all")
row "whole database ($size)" "psql binary COPY pipe, per table" "$s" "$m"
target t_pgl_all empty
cat >"$state/pg.load" <<LOAD
LOAD DATABASE FROM pgsql://cloudmigrate:$PGPASSWORD@$pg_hostport/src
  INTO pgsql://cloudmigrate:$PGPASSWORD@$pg_hostport/t_pgl_all
  WITH quote identifiers;
LOAD
read -r s m < <(pgloader_run "$state/pg.load" || echo "failed -")
row "whole database ($size)" "pgloader" "$s" "$m"

# The same data in SQLite and MariaDB (made by cloudmigrate, not timed), then into PostgreSQL.
manifest "$pg_base/src" "sqlite://$state/src.db" "" true >"$state/m.yaml"
CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD "$bin" run -f "$state/m.yaml" --only-problems >"$state/prep.out" ||
  { cat "$state/prep.out" >&2; exit 1; }
mariadb --no-defaults -h 127.0.0.1 -P "${my_hostport##*:}" -u cloudmigrate -p"$PGPASSWORD" -e 'CREATE DATABASE src'
manifest "$pg_base/src" "$my_base/src" "" true >"$state/m.yaml"
CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD "$bin" run -f "$state/m.yaml" --only-problems >"$state/prep.out" ||
  { cat "$state/prep.out" >&2; exit 1; }

target t_cm_sqlite
read -r s m < <(cloudmigrate_run "sqlite://$state/src.db" "$pg_base/t_cm_sqlite")
row "whole database, from SQLite" "cloudmigrate" "$s" "$m"
target t_pgl_sqlite empty
cat >"$state/sqlite.load" <<LOAD
LOAD DATABASE FROM sqlite://$state/src.db
  INTO pgsql://cloudmigrate:$PGPASSWORD@$pg_hostport/t_pgl_sqlite
  WITH quote identifiers
  EXCLUDING TABLE NAMES LIKE 'cloudmigrate_%';
LOAD
read -r s m < <(pgloader_run "$state/sqlite.load" || echo "failed -")
row "whole database, from SQLite" "pgloader" "$s" "$m"

target t_cm_mysql
read -r s m < <(cloudmigrate_run "$my_base/src" "$pg_base/t_cm_mysql")
row "whole database, from MariaDB" "cloudmigrate" "$s" "$m"
target t_pgl_mysql empty
cat >"$state/mysql.load" <<LOAD
LOAD DATABASE FROM mysql://cloudmigrate:$PGPASSWORD@$my_hostport/src
  INTO pgsql://cloudmigrate:$PGPASSWORD@$pg_hostport/t_pgl_mysql
  WITH quote identifiers
  EXCLUDING TABLE NAMES MATCHING ~/cloudmigrate_/;
LOAD
read -r s m < <(pgloader_run "$state/mysql.load" || echo "failed -")
row "whole database, from MariaDB" "pgloader" "$s" "$m"

# Every copy must hold every row, or its time means nothing.
for db in t_cm_all t_pipe_all t_pgl_all t_cm_sqlite t_cm_mysql; do
  n=$(psql_ "$db" -Atc "SELECT count(*) FROM \"$ledger\"" 2>/dev/null || echo "?")
  [[ $n == "$rows" ]] || echo "WARNING: $db holds $n ledger rows, not $rows" >&2
done

echo
echo "| Data | Tool | Wall time | Peak RSS |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
