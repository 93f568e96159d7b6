#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 and MariaDB server on free loopback ports, with their data
# in STATE_DIR, and writes STATE_DIR/env with the URLs the tests read:
#   CLOUDMIGRATE_TEST_PG_URL     postgres://cloudmigrate@127.0.0.1:PORT/postgres (password in
#   CLOUDMIGRATE_TEST_MYSQL_URL  mysql://cloudmigrate@127.0.0.1:PORT/mysql        ..._PASSWORD)
#   CLOUDMIGRATE_TEST_DB_PASSWORD
# Stop them with: kill $(cat STATE_DIR/pids)    (the servers' own process ids)
#
# Usage: start.sh STATE_DIR
# PostgreSQL's shared_buffers is 256MB unless CLOUDMIGRATE_PG_SHARED_BUFFERS says otherwise: the
# tests need little, a benchmark may want a production-sized cache.
set -euo pipefail

state=${1:?usage: start.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)
: >"$state/pids"
password=cm-test-$RANDOM$RANDOM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Servers refuse to run as root; as root, run them as their packages' system users.
as_user() {
  local user=$1
  shift
  if [[ $(id -u) == 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[[ -x $pg_bin/initdb ]] || { echo "databases: PostgreSQL server binaries not found (package postgresql)" >&2; exit 1; }
command -v mariadbd >/dev/null || { echo "databases: mariadbd not found (package mariadb-server)" >&2; exit 1; }

# PostgreSQL: password login over TCP, tuned for tests (no fsync).
pg=$state/pg
mkdir -p "$pg"
[[ $(id -u) == 0 ]] && chown postgres "$pg"
printf '%s\n' "$password" >"$state/pg.pw"
chmod 644 "$state/pg.pw"
as_user postgres "$pg_bin/initdb" -D "$pg/data" -U cloudmigrate --pwfile="$state/pg.pw" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$state/pg-init.log" 2>&1
pg_port=$(free_port)
as_user postgres "$pg_bin/postgres" -D "$pg/data" -p "$pg_port" -k "$pg" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
  -c shared_buffers="${CLOUDMIGRATE_PG_SHARED_BUFFERS:-256MB}" >"$state/pg.log" 2>&1 &
starters=($!)

# MariaDB: a user with a password, utf8mb4, strict mode.
my=$state/mariadb
mkdir -p "$my"
[[ $(id -u) == 0 ]] && chown mysql "$my"
as_user mysql mariadb-install-db --no-defaults --datadir="$my/data" --auth-root-authentication-method=normal \
  --skip-test-db >"$state/mariadb-init.log" 2>&1
my_port=$(free_port)
as_user mysql mariadbd --no-defaults --datadir="$my/data" --port="$my_port" --bind-address=127.0.0.1 \
  --socket="$my/mysqld.sock" --pid-file="$my/mysqld.pid" --skip-log-bin \
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-buffer-pool-size=256M \
  --max-connections=300 --max-allowed-packet=256M --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
  --sql-mode=STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION >"$state/mariadb.log" 2>&1 &
starters+=($!)

for _ in $(seq 1 150); do
  pg_ok=0 my_ok=0
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && pg_ok=1
  [[ -S $my/mysqld.sock ]] && mariadb --no-defaults -S "$my/mysqld.sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && my_ok=1
  ((pg_ok && my_ok)) && break
  sleep 0.2
done
# runuser does not pass signals on: record the servers' own process ids for stopping them.
head -n1 "$pg/data/postmaster.pid" 2>/dev/null >>"$state/pids" || true
cat "$my/mysqld.pid" 2>/dev/null >>"$state/pids" || true
if ! ((pg_ok && my_ok)); then
  echo "databases: ERROR: servers not ready after 30 s (postgres=$pg_ok mariadb=$my_ok)" >&2
  tail -n 20 "$state/pg.log" "$state/mariadb.log" >&2
  kill $(cat "$state/pids") "${starters[@]}" 2>/dev/null || true
  exit 1
fi
mariadb --no-defaults -S "$my/mysqld.sock" -u root <<SQL
CREATE USER 'cloudmigrate'@'127.0.0.1' IDENTIFIED BY '$password';
CREATE USER 'cloudmigrate'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'cloudmigrate'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'cloudmigrate'@'localhost' WITH GRANT OPTION;
SQL

cat >"$state/env" <<EOF
export CLOUDMIGRATE_TEST_PG_URL=postgres://cloudmigrate@127.0.0.1:$pg_port/postgres
export CLOUDMIGRATE_TEST_MYSQL_URL=mysql://cloudmigrate@127.0.0.1:$my_port/mysql
export CLOUDMIGRATE_TEST_DB_PASSWORD=$password
EOF
echo "databases: PostgreSQL on 127.0.0.1:$pg_port, MariaDB on 127.0.0.1:$my_port" >&2
