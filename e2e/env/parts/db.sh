# MariaDB and PostgreSQL from Debian's packages, each a private server on loopback
# with a test database `riskpipe_test` owned by user `riskpipe` (password `riskpipe`).

DB_USER=riskpipe
DB_PASSWORD=riskpipe
DB_NAME=riskpipe_test

ensure_db_packages() {
  # The *-core packages: the server binaries without a system service to start.
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || env_apt_install mariadb-server-core
  command -v mariadb >/dev/null 2>&1 || env_apt_install mariadb-client-core
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/postgres" ]; then
    env_apt_install postgresql
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  command -v psql >/dev/null 2>&1 || env_apt_install postgresql-client
}

start_mariadb() {
  local dir="$RUN_DIR/mariadb" user_args=()
  [ "$(id -u)" -eq 0 ] && user_args=(--user=root)
  mkdir -p "$dir/data"
  if ! mariadb-install-db --no-defaults --datadir="$dir/data" "${user_args[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >>"$LOG_DIR/mariadb.log" 2>&1; then
    env_die "mariadb-install-db failed; see $LOG_DIR/mariadb.log"
  fi
  start_bg mariadb "$LOG_DIR/mariadb.log" /usr/sbin/mariadbd --no-defaults "${user_args[@]}" \
    --datadir="$dir/data" --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
    --port="$MARIADB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2
}

mariadb_sql() { mariadb --no-defaults --socket="$RUN_DIR/mariadb/mariadb.sock" -uroot -e "$1"; }
mariadb_ready() { mariadb_sql "SELECT 1"; }

create_mariadb_db() {
  mariadb_sql "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
    GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'%';" >>"$LOG_DIR/mariadb.log" 2>&1 ||
    env_die "creating the MariaDB test database failed; see $LOG_DIR/mariadb.log"
}

# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user
# (created by Debian's package), and its data lives where that user can reach it.
pg_data_dir() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$RUN_DIR/postgres"
  else
    echo "${RISKPIPE_PG_DIR:-/var/tmp/riskpipe-e2e-$(printf '%s' "$RUN_DIR" | md5sum | cut -c1-8)/postgres}"
  fi
}

pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local data
  data="$(pg_data_dir)"
  rm -rf "$data"
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$(dirname "$data")"
  echo "$data" >"$RUN_DIR/postgres-data-dir"
  local pwfile="$data.pw"
  printf '%s\n' "$DB_PASSWORD" >"$pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pwfile"
  if ! pg_as_owner "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >>"$LOG_DIR/postgres.log" 2>&1; then
    env_die "initdb failed; see $LOG_DIR/postgres.log"
  fi
  rm -f "$pwfile"
  # fsync off: test data only.
  local cmd=("$PG_BIN/postgres" -D "$data" -p "$POSTGRES_PORT" -k "$data"
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  [ "$(id -u)" -eq 0 ] && cmd=(setpriv --reuid=postgres --regid=postgres --init-groups -- "${cmd[@]}")
  start_bg postgres "$LOG_DIR/postgres.log" "${cmd[@]}"
}

postgres_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; }

create_postgres_db() {
  local data
  data="$(pg_data_dir)"
  {
    pg_as_owner "$PG_BIN/psql" -h "$data" -p "$POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -q \
      -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD'" &&
      pg_as_owner "$PG_BIN/psql" -h "$data" -p "$POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -q \
        -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
  } >>"$LOG_DIR/postgres.log" 2>&1 || env_die "creating the PostgreSQL test database failed; see $LOG_DIR/postgres.log"
}
