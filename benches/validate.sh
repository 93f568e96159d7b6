#!/usr/bin/env bash
# Data validation benchmark: how long `cloudmigrate initialize` takes to validate a company
# (row counts and a checksum of every row, computed by each database) after a copy, against the
# copy itself, on the data of benches/compare.sh: PostgreSQL to PostgreSQL, and PostgreSQL to
# MariaDB (the cross-dialect canonical text on both sides).
#
# Usage: benches/validate.sh [LEDGER_ROWS] [SMALL_TABLES]      (default 2000000 900)
# Prints a Markdown table of wall time and peak memory (RSS), as in docs/benchmarks.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rows=${1:-2000000}
small=${2:-900}
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
command -v /usr/bin/time >/dev/null || {
  sudo_cmd=$([[ $(id -u) == 0 ]] || echo sudo)
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
}

.ci/build-release -q
bin=$CARGO_TARGET_DIR/release/cloudmigrate

state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-bench.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db"
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
export CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD
pg_base=${CLOUDMIGRATE_TEST_PG_URL%/*}
my_base=${CLOUDMIGRATE_TEST_MYSQL_URL%/*}
my_hostport=${my_base#mysql://cloudmigrate@}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg_base/$1" "${@:2}"; }

echo "generating: ledger of $rows rows, $small small tables" >&2
psql_ postgres -c "CREATE DATABASE src"
PGOPTIONS="-c bench.small_tables=$small" psql_ src -v ledger_rows="$rows" -f benches/bc_like.sql
psql_ postgres -c "CREATE DATABASE dst"
mariadb -h "${my_hostport%:*}" -P "${my_hostport#*:}" -u cloudmigrate -p"$PGPASSWORD" \
  -e "CREATE DATABASE dst"

measure() {
  /usr/bin/time -f '%e %M' -o "$state/time" "$@" >"$state/out" 2>&1 || {
    echo "FAILED: $*" >&2
    tail -n 20 "$state/out" >&2
    return 1
  }
  awk '{printf "%.1f %.0f\n", $1, $2/1024}' "$state/time"
}

echo "| Pair | Step | Wall time | Peak RSS |"
echo "|---|---|---|---|"
for target in "$pg_base/dst" "$my_base/dst"; do
  cat >"$state/m.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: bench}
spec:
  source: {url: "$pg_base/src", passwordSecretRef: {name: x}}
  target: {url: "$target", passwordSecretRef: {name: x}, createMissingTables: true}
  runtime: {parallelism: 4}
YAML
  pair=$([[ $target == postgres* ]] && echo "PostgreSQL to PostgreSQL" || echo "PostgreSQL to MariaDB")
  read -r s m < <(measure "$bin" run -f "$state/m.yaml" --only-problems)
  echo "| $pair | copy ($rows-row ledger + $small tables) | $s s | $m MiB |"
  read -r s m < <(measure "$bin" initialize -f "$state/m.yaml" --company "CRONUS International Ltd.")
  grep -q "Initialized" "$state/out" || {
    echo "the validation did not pass:" >&2
    tail -n 5 "$state/out" >&2
    exit 1
  }
  echo "| $pair | validate + initialize the company | $s s | $m MiB |"
done
