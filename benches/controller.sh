#!/usr/bin/env bash
# The controller, measured: what it costs on top of the engine, on the local API server and a
# local PostgreSQL, with the in-process runner.
#   1. The controller's memory at rest.
#   2. A run request on a Business Central-like database (a ledger and TABLES small tables):
#      time from the request to the run's end, against `cloudmigrate run -f` on the same data.
#   3. The controller's peak memory over that run, the size of the run's status, and the
#      reconciles it took.
#
# Usage: benches/controller.sh [LEDGER_ROWS] [TABLES]      (default 200000 2500)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rows=${1:-200000}
tables=${2:-2500}
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
.ci/build-release -q
bin=$CARGO_TARGET_DIR/release/cloudmigrate
state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-controller-bench.XXXXXX")
chmod 755 "$state"
controller=
cleanup() {
  [[ -n $controller ]] && kill "$controller" 2>/dev/null
  kill $(cat "$state"/db/pids "$state"/api/pids 2>/dev/null) 2>/dev/null
  sleep 0.5
  rm -rf "$state"
}
trap cleanup EXIT
tests/databases/start.sh "$state/db" >&2
tests/apiserver/start.sh "$state/api" >&2
export KUBECONFIG=$state/api/kubeconfig
. "$state/db/env"
export PGPASSWORD=$CLOUDMIGRATE_TEST_DB_PASSWORD
export CLOUDMIGRATE_SOURCE_PASSWORD=$PGPASSWORD CLOUDMIGRATE_TARGET_PASSWORD=$PGPASSWORD
pg=${CLOUDMIGRATE_TEST_PG_URL%/*}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$pg/$1" "${@:2}"; }
k() { kubectl "$@" 2> >(grep -v "version difference" >&2); }
secs() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

"$bin" crds | k apply --server-side -f - >/dev/null
for db in src dst cli; do psql_ postgres -c "CREATE DATABASE $db"; done
PGOPTIONS="-c bench.small_tables=$tables" psql_ src -v ledger_rows="$rows" -f benches/bc_like.sql
psql_ src -c "VACUUM ANALYZE"
for db in dst cli; do pg_dump --schema-only --no-owner "$pg/src" | psql_ "$db" >/dev/null; done
all=$((tables + 2))

echo "1. the controller at rest" >&2
"$bin" controller --namespace bench --listen 127.0.0.1:18089 2>"$state/controller.log" &
controller=$!
until curl -sf 127.0.0.1:18089/readyz >/dev/null; do sleep 0.1; done
sleep 2
idle=$(rss "$controller")

echo "2. a run request on $all tables" >&2
cat >"$state/schedule.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: bench, namespace: bench}
spec:
  source: {url: "$pg/src"}
  target: {url: "$pg/dst"}
  schedule: "0 2 * * *"
  runtime: {runner: InProcess, parallelism: 4}
YAML
k apply -f "$state/schedule.yaml" >/dev/null
t0=$(secs)
k -n bench patch msched bench --type=merge -p '{"spec":{"runRequest":"bench"}}' >/dev/null
until [[ -n ${run:-} ]]; do run=$(k -n bench get msched bench -o jsonpath='{.status.activeRun}'); done
# One watching kubectl, not a polling loop: kubectl's own starts would compete for the CPU.
k -n bench wait "mrun/$run" --for=condition=Running=false --timeout=3600s >/dev/null
t1=$(secs)
via_controller=$(elapsed "$t0" "$t1")
result=$(k -n bench get mrun "$run" -o jsonpath='{.status.result} {.status.progress.tables}')
status_bytes=$(k -n bench get mrun "$run" -o json | wc -c)
peak=$(hwm "$controller")
reconciles=$(curl -s 127.0.0.1:18089/metrics | awk '/^cloudmigrate_reconciles_total/ {n += $2} END {print n}')

cat >"$state/cli.yaml" <<YAML
apiVersion: cloudmigrate.io/v1alpha1
kind: MigrationSchedule
metadata: {name: cli}
spec:
  source: {url: "$pg/src", passwordSecretRef: {name: x}}
  target: {url: "$pg/cli", passwordSecretRef: {name: x}}
  runtime: {parallelism: 4}
YAML
t0=$(secs); "$bin" run -f "$state/cli.yaml" --only-problems >/dev/null || true; t1=$(secs)
via_cli=$(elapsed "$t0" "$t1")

echo
echo "| What | Figure |"
echo "|---|---|"
echo "| Controller memory at rest | $idle MiB |"
echo "| Run request to run end, $all tables, ledger of $rows rows (result: $result) | $via_controller s |"
echo "| The same migration with \`cloudmigrate run -f\` | $via_cli s |"
echo "| Controller peak memory, run included | $peak MiB |"
echo "| The run's object with its status (\`kubectl get -o json\`) | $status_bytes bytes |"
echo "| Reconciles for the schedule and the run | $reconciles |"
