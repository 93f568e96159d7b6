#!/usr/bin/env bash
# Two builds of cloudmigrate, side by side on the same database and the same server: the
# whole-database run of benches/compare.sh (a ledger and SMALL tables, PostgreSQL to
# PostgreSQL, parallelism 4), into a fresh target each time, the two binaries taking turns so
# that a slower hour of the machine hits both alike. Every run is a first run on a fresh
# source copy (change tracking installed each time), as in compare.sh.
#
# Usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [LEDGER_ROWS] [SMALL_TABLES]
#                                                    (default 3 2000000 900)
# Build an older commit with, for example:
#   git worktree add /tmp/cm-old <commit> && (cd /tmp/cm-old && cargo build --release --locked)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
old=${1:?usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [LEDGER_ROWS] [SMALL_TABLES]}
new=${2:?usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [LEDGER_ROWS] [SMALL_TABLES]}
rounds=${3:-3}
rows=${4:-2000000}
small=${5:-900}
state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-ab.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db" >&2
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
export CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD
pg=${CLOUDMIGRATE_TEST_PG_URL%/*}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg/$1" "${@:2}"; }

psql_ postgres -c "CREATE DATABASE template_src"
PGOPTIONS="-c bench.small_tables=$small" psql_ template_src -v ledger_rows="$rows" -f benches/bc_like.sql
psql_ template_src -c "VACUUM ANALYZE"
schema=$(pg_dump --schema-only --no-owner "$pg/template_src")

one() { # binary label
  psql_ postgres -c "DROP DATABASE IF EXISTS src" -c "CREATE DATABASE src TEMPLATE template_src"
  psql_ postgres -c "DROP DATABASE IF EXISTS dst" -c "CREATE DATABASE dst"
  psql_ dst <<<"$schema" >/dev/null
  psql_ postgres -c "CHECKPOINT"
  cat >"$state/m.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: ab}
spec:
  source: {url: "$pg/src", passwordSecretRef: {name: x}}
  target: {url: "$pg/dst", passwordSecretRef: {name: x}}
  runtime: {parallelism: 4}
YAML
  /usr/bin/time -f '%e %M' -o "$state/time" "$1" run -f "$state/m.yaml" --only-problems >"$state/out" 2>&1 || {
    echo "FAILED: $1" >&2
    tail -n 20 "$state/out" >&2
    exit 1
  }
  read -r secs kib <"$state/time"
  echo "$2 $secs $((kib / 1024))"
}

for round in $(seq 1 "$rounds"); do
  one "$old" old
  one "$new" new
done | tee "$state/results" >&2
echo
echo "| build | runs | median wall time | peak RSS |"
echo "|---|---|---|---|"
for label in old new; do
  awk -v l="$label" '$1 == l {print $2, $3}' "$state/results" | sort -n |
    awk -v l="$label" '{t[NR] = $1; m = ($2 > m ? $2 : m)} END {printf "| %s | %d | %.1f s | %d MiB |\n", l, NR, t[int((NR + 1) / 2)], m}'
done
