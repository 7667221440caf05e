#!/usr/bin/env bash
# Change data capture benchmark: how fast a CDC job applies a burst of
# changes, next to the raw limit of the same changes, measured in the same
# run on the same PostgreSQL.
#
#   bench/cdc.sh [ROWS ...]      default: 1000000 (table rows; as many changes)
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_FLUSH_ROWS=n           the jobs' flush_rows (default: the default, 10000)
#
# For each size it creates `items` (id bigint primary key, amount
# numeric(12,2), note text, updated_at timestamptz) with ROWS rows in a
# temporary PostgreSQL (wal_level=logical), and two CDC jobs, `CDC MERGE`
# and `CDC HISTORY`, into the local warehouse. Then it measures:
#   copy-limit     psql \copy (select * from items) to /dev/null (binary)
#   snapshot-merge the MERGE job's first run: snapshot and slot
#   snapshot-hist  the HISTORY job's first run
# then commits two bursts of changes, one after the other (small first: a
# run after the big one pays at the source for re-reading its WAL until the
# slot's restart_lsn moves past it, see docs/performance.md):
#   small          ROWS/10 updates in transactions of 100 rows each
#   big            ROWS updates in one transaction, then ROWS/10 inserts and
#                  ROWS/10 deletes in one transaction each
# and for each measures:
#   decode-limit   pg_recvlogical reading the burst through pgoutput from a
#                  slot that stood where the jobs' slots stood, to /dev/null:
#                  what PostgreSQL takes to decode and send the changes
#   drain-merge    RUN ETL JOB of the MERGE job: the changes applied, the
#                  table rewritten to the source's state
#   drain-hist     RUN ETL JOB of the HISTORY job: the changes appended
# and last a run of each job with nothing to apply (idle-*: its changes/s
# column is meaningless, its seconds are a drain's fixed cost), and prints wall time, changes/s, the server's peak RSS during the step, its
# CPU seconds and the ratio to the limit (copy-limit for snapshots,
# decode-limit for drains).
# Needs PostgreSQL (initdb, pg_ctl, psql, pg_recvlogical).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=("${@:-1000000}")
PG_EXTRA="-c shared_buffers=256MB -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 -c max_wal_size=4GB"
# shellcheck source=bench/lib.sh
source bench/lib.sh
reset_peak() { echo 5 > "/proc/$SLUICE_PID/clear_refs"; }
peak_mb() { peak_mb_of "$SLUICE_PID"; }
cpu_s() { cpu_of "$SLUICE_PID"; }

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_for_sluice
slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')"

printf '%-9s %-15s %10s %10s %12s %12s %8s %9s\n' rows step changes seconds changes/s peak_RSS_MB cpu_s vs_limit
report() { # size step changes seconds peak cpu limit_seconds
  printf '%-9s %-15s %10d %10.3f %12.0f %12s %8s %9s\n' "$1" "$2" "$3" "$4" "$(echo "$3 / $4" | bc -l)" "$5" "$6" \
    "$([ "$7" = - ] && echo - || printf '%.2f' "$(echo "$4 / $7" | bc -l)")"
}
# Runs a job, reporting it as `step` against `limit` seconds.
measure_run() { # size step job changes limit
  local t0 t1 c0
  reset_peak; c0=$(cpu_s); t0=$(now)
  slsql -c "RUN ETL JOB $3" >/dev/null 2>&1
  t1=$(now)
  report "$1" "$2" "$4" "$(echo "$t1 - $t0" | bc -l)" "$(peak_mb)" "$(printf '%.2f' "$(echo "$(cpu_s) - $c0" | bc -l)")" "$5"
}

for N in "${SIZES[@]}"; do
  slsql -c "DROP ETL JOB IF EXISTS cdc_merge; DROP ETL JOB IF EXISTS cdc_hist" >/dev/null 2>&1
  pgsql -c "SELECT pg_drop_replication_slot('bench_raw') FROM pg_replication_slots WHERE slot_name = 'bench_raw'" >/dev/null
  pgsql -c "SET client_min_messages = warning; DROP PUBLICATION IF EXISTS bench_pub; DROP TABLE IF EXISTS items;
            CREATE TABLE items (id bigint PRIMARY KEY, amount numeric(12,2), note text, updated_at timestamptz NOT NULL);
            INSERT INTO items SELECT g, (g % 100000) / 100.0, 'item note number ' || g, timestamptz '2024-01-01' + g * interval '1 second'
            FROM generate_series(1, $N) g;"
  pgsql -c "VACUUM ANALYZE items"
  t0=$(now); pgsql -c "\\copy (select * from items) to /dev/null with (format binary)"; t1=$(now)
  COPY_S=$(echo "$t1 - $t0" | bc -l)
  report "$N" copy-limit "$N" "$COPY_S" - - -
  WITH=${BENCH_FLUSH_ROWS:+WITH (flush_rows = $BENCH_FLUSH_ROWS)}
  slsql -c "CREATE ETL JOB cdc_merge FROM bench.public.items INTO warehouse.items_merge_$N CDC MERGE $WITH" \
        -c "CREATE ETL JOB cdc_hist FROM bench.public.items INTO warehouse.items_hist_$N CDC HISTORY $WITH"
  measure_run "$N" snapshot-merge cdc_merge "$N" "$COPY_S"
  measure_run "$N" snapshot-hist cdc_hist "$N" "$COPY_S"

  pgsql -c "CREATE PUBLICATION bench_pub FOR TABLE items" >/dev/null
  INSERTS=$((N / 10)); DELETES=$((N / 10)); SMALL=$((N / 10))
  for burst in small big; do
    # The raw reader's slot starts where the jobs' slots stand now.
    pgsql -c "SELECT pg_drop_replication_slot('bench_raw') FROM pg_replication_slots WHERE slot_name = 'bench_raw'" \
          -c "SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')" >/dev/null
    case $burst in
      big)
        CHANGES=$((N + INSERTS + DELETES))
        pgsql -c "UPDATE items SET amount = amount + 1, updated_at = updated_at + interval '1 day'" \
              -c "INSERT INTO items SELECT g, 1, 'new item ' || g, timestamptz '2025-01-01' + g * interval '1 second' FROM generate_series($N + 1, $N + $INSERTS) g" \
              -c "DELETE FROM items WHERE id <= $DELETES" ;;
      small)
        CHANGES=$SMALL
        pgsql -c "DO \$\$ BEGIN FOR i IN 0..$((SMALL / 100 - 1)) LOOP
                    UPDATE items SET amount = amount + 1 WHERE id > $DELETES + i * 100 AND id <= $DELETES + (i + 1) * 100;
                    COMMIT;
                  END LOOP; END \$\$" ;;
    esac
    END_LSN=$(pgsql -At -c "SELECT pg_current_wal_lsn()")
    WAL_MB=$(pgsql -At -c "SELECT round(pg_wal_lsn_diff('$END_LSN', confirmed_flush_lsn) / 1048576.0, 1) FROM pg_replication_slots WHERE slot_name = 'bench_raw'")
    t0=$(now)
    as_pg "$PGBIN/pg_recvlogical" -d "host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres" --slot bench_raw \
      --start --endpos "$END_LSN" -o proto_version=1 -o publication_names=bench_pub --no-loop -f /dev/null
    t1=$(now)
    DECODE_S=$(echo "$t1 - $t0" | bc -l)
    report "$N" "$burst-decode" "$CHANGES" "$DECODE_S" - - -
    measure_run "$N" "$burst-merge" cdc_merge "$CHANGES" "$DECODE_S"
    measure_run "$N" "$burst-hist" cdc_hist "$CHANGES" "$DECODE_S"
    echo "# $N rows, $burst burst: $WAL_MB MB of WAL"
  done
  # A run with nothing to apply: the fixed cost of a drain.
  measure_run "$N" idle-merge cdc_merge 1 -
  measure_run "$N" idle-hist cdc_hist 1 -
  # Both jobs hold the source's state.
  want=$(pgsql -At -c "SELECT count(*), sum(amount) FROM items")
  got=$(slsql -c "SELECT count(*), sum(amount) FROM warehouse.items_merge_$N" | tr '|' ' ')
  [ "$got" = "$(echo "$want" | tr '|' ' ')" ] || { echo "MERGE table differs: $got, source $want" >&2; exit 1; }
done
