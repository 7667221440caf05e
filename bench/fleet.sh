#!/usr/bin/env bash
# Bulk job creation benchmark: CREATE ETL JOBS for a schema of many tables.
#
#   bench/fleet.sh [TABLES]      default: 200; the target is under a minute
#   BENCH_BIN=path               measure this sluice binary instead of building one
#
# Creates TABLES small tables in schema `fleet` of a temporary PostgreSQL
# (half with an indexed updated_at column, so they become incremental jobs,
# half without, so they become snapshots), then times, through psql:
#   dry-run   CREATE ETL JOBS FOR TABLES IN bench.fleet DRY RUN (plans only)
#   create    CREATE ETL JOBS FOR TABLES IN bench.fleet ALL (all jobs, one commit)
#   pause     ALTER ETL JOBS WHERE name LIKE 'fleet_%' PAUSE
# Needs PostgreSQL (initdb, pg_ctl, psql); run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TABLES=${1:-200}
TARGET_S=60
# shellcheck source=bench/lib.sh
source bench/lib.sh

pgsql -c "CREATE SCHEMA fleet" -c "
DO \$\$ BEGIN
  FOR i IN 1..$TABLES LOOP
    IF i % 2 = 0 THEN
      EXECUTE format('CREATE TABLE fleet.t%s (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, note text)', i);
      EXECUTE format('CREATE INDEX ON fleet.t%s (updated_at)', i);
    ELSE
      EXECUTE format('CREATE TABLE fleet.t%s (id bigint PRIMARY KEY, amount numeric(12,2), note text)', i);
    END IF;
  END LOOP;
END \$\$;" >/dev/null

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_for_sluice
slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')"

step() { # name sql: runs sql through psql and prints the wall time and rows returned
  local start end out
  start=$(now)
  out=$(slsql -c "$2" 2>/dev/null | wc -l)
  end=$(now)
  printf '%-8s %7.2f s  %4d rows\n' "$1" "$(echo "$end - $start" | bc)" "$out"
  LAST_S=$(echo "$end - $start" | bc)
}
echo "tables: $TABLES (target for create: under ${TARGET_S} s)"
step dry-run "CREATE ETL JOBS FOR TABLES IN bench.fleet DRY RUN"
step create "CREATE ETL JOBS FOR TABLES IN bench.fleet ALL"
CREATE_S=$LAST_S
step pause "ALTER ETL JOBS WHERE name LIKE 'fleet_%' PAUSE"
echo "jobs: $(slsql -c "SELECT count(*) FROM sluice.jobs") ($(slsql -c "SELECT count(*) FROM sluice.jobs WHERE load LIKE 'INCREMENTAL%'") incremental)"
if [ "$(echo "$CREATE_S < $TARGET_S" | bc)" = 1 ]; then echo "create: within target"; else echo "create: OVER TARGET"; exit 1; fi
