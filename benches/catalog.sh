#!/usr/bin/env bash
# How long reading the catalog of a large ERP database takes: N tables of 12 columns with a
# primary key (default 20000) in PostgreSQL, and a run whose table filter matches none of them,
# so that the time is the catalog, the plan and the run log of N excluded tables.
#
# Usage: benches/catalog.sh [TABLES]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
n=${1:-20000}
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
.ci/build-release -q
state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-catalog.XXXXXX")
chmod 755 "$state"
trap 'kill $(cat "$state"/db/pids) 2>/dev/null; sleep 0.5; rm -rf "$state"' EXIT
tests/databases/start.sh "$state/db"
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD CLOUDMIGRATE_SOURCE_PASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
base=${CLOUDMIGRATE_TEST_PG_URL%/*}
psql -X -q "$base/postgres" -c "CREATE DATABASE src"
echo "creating $n tables" >&2
psql -X -q "$base/src" <<SQL
DO \$\$ BEGIN
  FOR t IN 1..$n LOOP
    EXECUTE format('CREATE TABLE %I ("No_" varchar(20) PRIMARY KEY, "Name" varchar(100), "Name 2" varchar(50),
      "Address" varchar(100), "City" varchar(30), "Amount" numeric(38,20), "Quantity" numeric(38,20),
      "Posting Date" timestamp, "Blocked" boolean, "Type" int4, "\$systemId" uuid, "\$systemCreatedAt" timestamp)',
      'Company ' || (t % 50) || '\$Table ' || t);
    IF t % 500 = 0 THEN COMMIT; END IF;
  END LOOP;
END \$\$;
ANALYZE;
SQL
cat >"$state/m.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: catalog}
spec:
  source: {url: "$base/src", passwordSecretRef: {name: x}}
  target: {url: "sqlite://$state/target.db"}
  tables: {include: ["no table is called this"]}
YAML
/usr/bin/time -f "catalog of $n tables, plan and run log: %e s, %M KiB peak" \
  "$CARGO_TARGET_DIR/release/cloudmigrate" run -f "$state/m.yaml" --only-problems | tail -n 6
