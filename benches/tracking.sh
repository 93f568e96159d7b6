#!/usr/bin/env bash
# Change tracking, measured:
#   1. An incremental run against a full run, on the 2,000,000-row ledger with 1% of its rows
#      changed (updates, inserts and deletes mixed), PostgreSQL to PostgreSQL. Then large change
#      sets: a fifth of the ledger's rows updated (streamed in batches of keys), and half of
#      them (1,000,000 keys, more than the 30% past which a run copies in full), each with the
#      run's time and peak memory (GNU time's maximum resident set size).
#   2. A run that finds nothing changed, on a database of 900 small tables.
#   3. What the triggers cost the ERP's own writes: insert and update throughput on a ledger-like
#      table with and without change tracking, on PostgreSQL and MariaDB, for bulk statements
#      and for statements of one row each, the way a posting routine writes.
#
# Usage: benches/tracking.sh [LEDGER_ROWS] [WRITE_ROWS]      (default 2000000 100000)
#
# PostgreSQL runs with shared_buffers at a quarter of the machine's memory, the starting value
# PostgreSQL's documentation gives for a dedicated server, since a cloud database keeps its
# working set in memory. The test suite's 256MB would be shared here by the source and the
# target, one server for both, and an incremental run would mostly measure that cache's misses.
# Set CLOUDMIGRATE_PG_SHARED_BUFFERS=256MB to see that case.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rows=${1:-2000000}
writes=${2:-100000}
singles=$((writes / 10))
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
.ci/build-release -q
bin=$CARGO_TARGET_DIR/release/cloudmigrate
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
export CLOUDMIGRATE_PG_SHARED_BUFFERS=${CLOUDMIGRATE_PG_SHARED_BUFFERS:-$((mem_kb / 4 / 1024))MB}
state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-tracking.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db"
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
export CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD
pg=${CLOUDMIGRATE_TEST_PG_URL%/*}
my=${CLOUDMIGRATE_TEST_MYSQL_URL%/*}
my_port=${my##*:}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg/$1" "${@:2}"; }
mysql_() { mariadb --no-defaults -h 127.0.0.1 -P "$my_port" -u cloudmigrate -p"$PGPASSWORD" "$@"; }
secs() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f} rows/s')"; } # rows start end

ledger='CRONUS International Ltd_$G_L Entry'
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
echo "1. incremental against full, $rows-row ledger" >&2
psql_ postgres -c "CREATE DATABASE src" -c "CREATE DATABASE dst"
PGOPTIONS="-c bench.small_tables=0" psql_ src -v ledger_rows="$rows" -f benches/bc_like.sql
# A production database has been read and vacuumed many times: settle the fresh one the same way,
# so that the first full run does not pay for setting hint bits on two million new rows.
psql_ src -c "VACUUM ANALYZE"
pg_dump --schema-only --no-owner "$pg/src" | psql_ dst >/dev/null
cat >"$state/m.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: bench}
spec:
  source: {url: "$pg/src", passwordSecretRef: {name: x}}
  target: {url: "$pg/dst", passwordSecretRef: {name: x}}
  tables: {include: ["G_L Entry"]}
YAML
# Five full runs (the first run, then four with --type full) and five incremental runs, each
# after a fresh 1% of changes; the medians are compared. Runs of a fifth of a second vary by a
# few hundredths here: fewer rounds would let one slow run decide.
# Before each timed run the server writes out its dirty pages (CHECKPOINT), as it does every few
# minutes in production: no run pays for flushing what the setup or an earlier run wrote.
fulls=()
for type in auto full full full full; do
  psql_ postgres -c CHECKPOINT
  t0=$(secs); "$bin" run -f "$state/m.yaml" --type "$type" --only-problems >/dev/null; t1=$(secs)
  fulls+=("$(elapsed "$t0" "$t1")")
done
# Incremental runs come hours after the full copy, when autovacuum has long finished with it.
psql_ dst -c "VACUUM ANALYZE"
n=$((rows / 100))
incs=()
for round in 0 1 2 3 4; do
  # 1% of the rows: half updated, a quarter inserted, a quarter deleted.
  psql_ src <<SQL
UPDATE "$ledger" SET "Description" = 'changed $round', "Amount" = "Amount" + 1 WHERE "Entry No_" % 200 = 7 + $round;
INSERT INTO "$ledger" ("Entry No_", "G_L Account No_", "Description", "Amount", "Posting Date", "\$systemId")
  SELECT $rows + $round * $n + i, '9999', 'new', i, now(), md5('n$round' || i)::uuid FROM generate_series(1, $n / 4) i;
DELETE FROM "$ledger" WHERE "Entry No_" % 400 = 31 + $round;
SQL
  psql_ postgres -c CHECKPOINT
  t0=$(secs); "$bin" run -f "$state/m.yaml" >"$state/inc.out"; t1=$(secs)
  incs+=("$(elapsed "$t0" "$t1")")
  grep -o 'changes +[0-9]* ~[0-9]* -[0-9]*' "$state/inc.out" >&2 || true
done
check="SELECT count(*), md5(string_agg(\"Entry No_\"::text || \"Description\" || \"Amount\"::text, ',' ORDER BY \"Entry No_\")) FROM \"$ledger\""
[[ $(psql_ src -Atc "$check") == $(psql_ dst -Atc "$check") ]] || echo "WARNING: source and target differ after the incremental runs" >&2
full=$(median "${fulls[@]}")
incremental=$(median "${incs[@]}")
pct=$(python3 -c "print(f'{100 * $incremental / $full:.1f}')")
large=()
for every in 5 2; do
  psql_ src -c "UPDATE \"$ledger\" SET \"Description\" = 'year-end $every', \"Amount\" = \"Amount\" + 1 WHERE \"Entry No_\" % $every = 0"
  psql_ src -c "ANALYZE \"$ledger\""
  keys=$(psql_ src -Atc "SELECT count(*) FROM \"$ledger\" WHERE \"Entry No_\" % $every = 0")
  # The run as it comes (by its changes, or in full past 30%), then a full run of the same
  # source (with the same dead rows from the UPDATE to read past) for comparison.
  for type in auto full; do
    psql_ postgres -c CHECKPOINT
    /usr/bin/time -f "%e %M" -o "$state/time" "$bin" run -f "$state/m.yaml" --type "$type" >"$state/large.out"
    read -r s kb <"$state/time"
    how=$(grep -o 'changes +[0-9]* ~[0-9]* -[0-9]*\|full: [A-Za-z]*' "$state/large.out" | head -1 || true)
    large+=("| $keys keys updated | --type $type: ${how:-?} | $s s | $((kb / 1024)) MiB |")
    [[ $(psql_ src -Atc "$check") == $(psql_ dst -Atc "$check") ]] || echo "WARNING: source and target differ after $keys changed keys" >&2
  done
done

echo "2. a run that finds nothing changed, 900 small tables" >&2
psql_ postgres -c "CREATE DATABASE src2" -c "CREATE DATABASE dst2"
PGOPTIONS="-c bench.small_tables=900" psql_ src2 -v ledger_rows=1000 -f benches/bc_like.sql
pg_dump --schema-only --no-owner "$pg/src2" | psql_ dst2 >/dev/null
sed "s|/src\"|/src2\"|; s|/dst\"|/dst2\"|; /tables:/d" "$state/m.yaml" >"$state/m2.yaml"
"$bin" run -f "$state/m2.yaml" --only-problems >/dev/null
quiet=()
for _ in 1 2 3; do
  psql_ postgres -c CHECKPOINT
  t0=$(secs); "$bin" run -f "$state/m2.yaml" --only-problems >/dev/null; t1=$(secs)
  quiet+=("$(elapsed "$t0" "$t1")")
done
tables2=$(psql_ src2 -Atc "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'cloudmigrate%'")

echo "3. trigger overhead on writes, $writes rows" >&2
cols='"Entry No_" bigint PRIMARY KEY, "G_L Account No_" varchar(20), "Description" varchar(100), "Amount" numeric(38,20), "Posting Date" timestamp, "$systemId" uuid'
results=()
pg_case() { # label tracked
  psql_ postgres -c "DROP DATABASE IF EXISTS w" -c "CREATE DATABASE w"
  psql_ w -c "CREATE TABLE \"CRONUS\$Entry\" ($cols)"
  if [[ $2 == yes ]]; then
    cat >"$state/w.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: w}
spec:
  source: {url: "$pg/w", passwordSecretRef: {name: x}}
  target: {url: "sqlite://$state/w-pg.db", createMissingTables: true}
YAML
    "$bin" run -f "$state/w.yaml" --only-problems >/dev/null
  fi
  local a b c e
  a=$(secs)
  psql_ w -c "INSERT INTO \"CRONUS\$Entry\" SELECT i, '1000', 'entry ' || i, i / 3.0, now(), md5(i::text)::uuid FROM generate_series(1, $writes) i"
  b=$(secs)
  psql_ w -c "UPDATE \"CRONUS\$Entry\" SET \"Description\" = 'changed', \"Amount\" = \"Amount\" + 1"
  c=$(secs)
  psql_ w -c "DO \$\$ BEGIN FOR i IN $((writes + 1))..$((writes + singles)) LOOP
    INSERT INTO \"CRONUS\$Entry\" VALUES (i, '1000', 'entry ' || i, i / 3.0, now(), md5(i::text)::uuid); END LOOP; END \$\$"
  e=$(secs)
  results+=("| PostgreSQL | $1 | $(rate "$writes" "$a" "$b") | $(rate "$writes" "$b" "$c") | $(rate "$singles" "$c" "$e") |")
}
my_case() { # label tracked
  mysql_ -e "DROP DATABASE IF EXISTS w; CREATE DATABASE w"
  mysql_ w -e "CREATE TABLE \`CRONUS\$Entry\` (\`Entry No_\` BIGINT PRIMARY KEY, \`G_L Account No_\` VARCHAR(20), \`Description\` VARCHAR(100), \`Amount\` DECIMAL(38,20), \`Posting Date\` DATETIME(6), \`\$systemId\` CHAR(36))"
  if [[ $2 == yes ]]; then
    cat >"$state/w.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: w}
spec:
  source: {url: "$my/w", passwordSecretRef: {name: x}}
  target: {url: "sqlite://$state/w-my.db", createMissingTables: true}
YAML
    "$bin" run -f "$state/w.yaml" --only-problems >/dev/null
  fi
  local a b c e
  a=$(secs)
  mysql_ w -e "INSERT INTO \`CRONUS\$Entry\` SELECT seq, '1000', CONCAT('entry ', seq), seq / 3, NOW(6), UUID() FROM seq_1_to_$writes"
  b=$(secs)
  mysql_ w -e "UPDATE \`CRONUS\$Entry\` SET \`Description\` = 'changed', \`Amount\` = \`Amount\` + 1"
  c=$(secs)
  mysql_ w <<SQL
DELIMITER //
START TRANSACTION//
BEGIN NOT ATOMIC
  DECLARE i INT DEFAULT $((writes + 1));
  WHILE i <= $((writes + singles)) DO
    INSERT INTO \`CRONUS\$Entry\` VALUES (i, '1000', CONCAT('entry ', i), i / 3, NOW(6), UUID());
    SET i = i + 1;
  END WHILE;
END//
COMMIT//
SQL
  e=$(secs)
  results+=("| MariaDB | $1 | $(rate "$writes" "$a" "$b") | $(rate "$writes" "$b" "$c") | $(rate "$singles" "$c" "$e") |")
}
pg_case "without change tracking" no
pg_case "with change tracking" yes
my_case "without change tracking" no
my_case "with change tracking" yes

echo
echo "PostgreSQL shared_buffers: $CLOUDMIGRATE_PG_SHARED_BUFFERS"
echo
echo "| Ledger | Full run (median of ${fulls[*]}) | Incremental run, 1% changed (median of ${incs[*]}) | Incremental / full |"
echo "|---|---|---|---|"
echo "| $rows rows | $full s | $incremental s | $pct % |"
echo
echo "| Change set | Run: how it copied | Time | Peak memory |"
echo "|---|---|---|---|"
printf '%s\n' "${large[@]}"
echo
echo "A run with nothing changed, $tables2 tables: $(median "${quiet[@]}") s (median of ${quiet[*]})"
echo
echo "| Database | Change tracking | INSERT ($writes rows, one statement) | UPDATE (all rows, one statement) | INSERT ($singles statements of one row, one transaction) |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
