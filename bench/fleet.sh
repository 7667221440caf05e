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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
TABLES=${1:-200}
TARGET_S=60

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build --release --quiet
  BIN="$CARGO_TARGET_DIR/release/sluice"
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/sluice-fleet-XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PGPORT=$(free_port)
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/pg.log" \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off" -w start >/dev/null

SLPORT=$(free_port)
SLUICE_PID=
cleanup() {
  [ -n "$SLUICE_PID" ] && kill "$SLUICE_PID" 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pgsql() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
slsql() { PGPASSWORD=bench "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$SLPORT" -U admin -d sluice -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

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
for _ in $(seq 100); do slsql -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
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
