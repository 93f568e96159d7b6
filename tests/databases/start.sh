#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 and MariaDB server on free loopback ports, with their data
# in STATE_DIR, and writes STATE_DIR/env with the URLs the tests read:
#   CLOUDMIGRATE_TEST_PG_URL     postgres://cloudmigrate@127.0.0.1:PORT/postgres (password in
#   CLOUDMIGRATE_TEST_MYSQL_URL  mysql://cloudmigrate@127.0.0.1:PORT/mysql        ..._PASSWORD)
#   CLOUDMIGRATE_TEST_DB_PASSWORD
#   CLOUDMIGRATE_TEST_CA_FILE        the CA that signed both servers' certificate (IP 127.0.0.1
#                                    only: the name "localhost" is a wrong host name)
#   CLOUDMIGRATE_TEST_WRONG_CA_FILE  a CA that signed nothing
# Both servers take TLS and plain connections. PostgreSQL asks the login
# cloudmigrate_cleartext for its password in clear text (pg_hba method "password").
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

# TLS: a CA made here, and one certificate for both servers that names only 127.0.0.1.
tls=$state/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cloudmigrate test CA" \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cloudmigrate wrong CA" \
  -keyout "$tls/wrong-ca.key" -out "$tls/wrong-ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=cloudmigrate test server" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 30 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
chmod 644 "$tls"/*.crt
# Each server reads its own copy of the key, owned by its user.
key_for() {
  local user=$1 dest=$2
  install -m 600 "$tls/server.key" "$dest"
  [[ $(id -u) == 0 ]] && chown "$user" "$dest"
  return 0
}

# PostgreSQL: password login over TCP, tuned for tests (no fsync).
pg=$state/pg
mkdir -p "$pg"
[[ $(id -u) == 0 ]] && chown postgres "$pg"
printf '%s\n' "$password" >"$state/pg.pw"
chmod 644 "$state/pg.pw"
as_user postgres "$pg_bin/initdb" -D "$pg/data" -U cloudmigrate --pwfile="$state/pg.pw" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$state/pg-init.log" 2>&1
# The clear-text login comes first: pg_hba takes the first line that matches.
sed -i '0,/^host/s//host    all             cloudmigrate_cleartext 127.0.0.1\/32           password\nhost/' "$pg/data/pg_hba.conf"
key_for postgres "$pg/server.key"
pg_port=$(free_port)
as_user postgres "$pg_bin/postgres" -D "$pg/data" -p "$pg_port" -k "$pg" -c listen_addresses=127.0.0.1 \
  -c ssl=on -c ssl_cert_file="$tls/server.crt" -c ssl_key_file="$pg/server.key" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
  -c shared_buffers="${CLOUDMIGRATE_PG_SHARED_BUFFERS:-256MB}" >"$state/pg.log" 2>&1 &
starters=($!)

# MariaDB: a user with a password, utf8mb4, strict mode.
my=$state/mariadb
mkdir -p "$my"
[[ $(id -u) == 0 ]] && chown mysql "$my"
as_user mysql mariadb-install-db --no-defaults --datadir="$my/data" --auth-root-authentication-method=normal \
  --skip-test-db >"$state/mariadb-init.log" 2>&1
key_for mysql "$my/server.key"
my_port=$(free_port)
as_user mysql mariadbd --no-defaults --datadir="$my/data" --port="$my_port" --bind-address=127.0.0.1 \
  --ssl-cert="$tls/server.crt" --ssl-key="$my/server.key" --ssl-ca="$tls/ca.crt" \
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

PGPASSWORD=$password "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U cloudmigrate -d postgres \
  -c "CREATE ROLE cloudmigrate_cleartext LOGIN PASSWORD '$password'" >/dev/null

cat >"$state/env" <<EOF
export CLOUDMIGRATE_TEST_PG_URL=postgres://cloudmigrate@127.0.0.1:$pg_port/postgres
export CLOUDMIGRATE_TEST_MYSQL_URL=mysql://cloudmigrate@127.0.0.1:$my_port/mysql
export CLOUDMIGRATE_TEST_DB_PASSWORD=$password
export CLOUDMIGRATE_TEST_CA_FILE=$tls/ca.crt
export CLOUDMIGRATE_TEST_WRONG_CA_FILE=$tls/wrong-ca.crt
EOF
echo "databases: PostgreSQL on 127.0.0.1:$pg_port, MariaDB on 127.0.0.1:$my_port" >&2
