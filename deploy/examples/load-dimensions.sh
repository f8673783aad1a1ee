#!/usr/bin/env bash
# Loads a folder of dimension CSV files (the seed's column names, a header row;
# e.g. deploy/examples/data/) into MySQL/MariaDB or PostgreSQL, creating the
# tables of dimensions-mysql.sql / dimensions-postgres.sql first.
#
#   load-dimensions.sh mysql    DIR  mariadb -h 127.0.0.1 -P 3306 -u riskpipe -p risk_db
#   load-dimensions.sh postgres DIR  psql "postgres://riskpipe@127.0.0.1:5432/risk_db"
#
# Everything after DIR is the client command line. An empty CSV cell is NULL.
set -euo pipefail
flavor="$1"
dir="$2"
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
tables=(user_risk_profiles merchant_risk_profiles blacklist_users blacklist_merchants blacklist_ips high_risk_locations)
case "$flavor" in
  mysql)
    "$@" <"$here/dimensions-mysql.sql"
    for t in "${tables[@]}"; do
      f="$dir/$t.csv"
      [ -f "$f" ] || continue
      cols="$(head -n 1 "$f" | tr -d '\r')"
      sets=""
      vars=""
      IFS=, read -ra names <<<"$cols"
      for c in "${names[@]}"; do
        vars+="${vars:+,}@$c"
        sets+="${sets:+,}$c = NULLIF(@$c, '')"
      done
      "$@" --local-infile=1 -e "LOAD DATA LOCAL INFILE '$f' REPLACE INTO TABLE $t
        CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'
        LINES TERMINATED BY '\n' IGNORE 1 LINES ($vars) SET $sets"
    done
    ;;
  postgres)
    "$@" -v ON_ERROR_STOP=1 -f "$here/dimensions-postgres.sql"
    for t in "${tables[@]}"; do
      f="$dir/$t.csv"
      [ -f "$f" ] || continue
      cols="$(head -n 1 "$f" | tr -d '\r')"
      "$@" -v ON_ERROR_STOP=1 -c "\\copy $t ($cols) FROM '$f' WITH (FORMAT csv, HEADER true)"
    done
    ;;
  *)
    echo "usage: $0 mysql|postgres DIR CLIENT..." >&2
    exit 2
    ;;
esac
