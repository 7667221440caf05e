#!/usr/bin/env bash
# Extraction benchmark: Sluice against the raw binary COPY limit, measured in
# the same run on the same PostgreSQL.
#
#   bench/run.sh [ROWS ...]      default: 1000000   (e.g. bench/run.sh 1000000 10000000)
#
# For each size it creates a table (id bigint, created_at timestamptz (indexed: the cursor),
# customer_id int, amount numeric(12,2), status text, note text) in a temporary
# PostgreSQL, then measures:
#   copy-limit    psql \copy (select * from t) to /dev/null with (format binary)
#   snapshot      RUN ETL JOB (SNAPSHOT) into the local warehouse
#   snapshot-par2 the same with WITH (parallelism = 2): two key-range COPY streams
#   incremental   first incremental run (all rows), then a no-op run
# and prints wall time, rows/s, MB/s (of the binary COPY stream), the server's
# peak RSS during the step (VmHWM: heap plus the pages of the binary's code
# that were touched), its peak heap (RssAnon, sampled every 20 ms) and the
# ratio to the COPY limit.
# Needs PostgreSQL (initdb, pg_ctl, psql); run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
SIZES=("${@:-1000000}")

cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/sluice"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/sluice-bench-XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PGPORT=$(free_port)
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/pg.log" \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB" -w start >/dev/null

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
reset_peak() { echo 5 > "/proc/$SLUICE_PID/clear_refs"; }
peak_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }
anon_kb() { awk '/RssAnon/ {print $2}' "/proc/$SLUICE_PID/status"; }
# Samples RssAnon in the background until stopped; heap_mb prints the peak.
start_heap() {
  echo 0 > "$WORK/heap"
  ( while :; do a=$(anon_kb); [ "$a" -gt "$(cat "$WORK/heap")" ] && echo "$a" > "$WORK/heap"; sleep 0.02; done ) &
  HEAP_PID=$!
}
heap_mb() { kill "$HEAP_PID" 2>/dev/null; wait "$HEAP_PID" 2>/dev/null || true; awk '{printf "%.0f", $1/1024}' "$WORK/heap"; }

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 100); do slsql -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')"

printf '%-13s %12s %10s %12s %10s %12s %12s %8s\n' step rows seconds rows/s MB/s peak_RSS_MB peak_heap_MB vs_COPY
for N in "${SIZES[@]}"; do
  pgsql -c "SET client_min_messages = warning; DROP TABLE IF EXISTS t; CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int, amount numeric(12,2), status text, note text);
            INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 second', g % 10000, (g % 100000) / 100.0,
                   (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], 'order note number ' || g
            FROM generate_series(1, $N) g;"
  pgsql -c "CREATE INDEX ON t (created_at)"
  pgsql -c "VACUUM ANALYZE t"
  MB=$(pgsql -At -c "\\copy (select * from t) to stdout with (format binary)" | wc -c | awk '{printf "%.1f", $1/1048576}')
  t0=$(now); pgsql -c "\\copy (select * from t) to /dev/null with (format binary)"; t1=$(now)
  COPY_S=$(echo "$t1 - $t0" | bc -l)
  report() { # step rows seconds peak heap
    printf '%-13s %12d %10.3f %12.0f %10.1f %12s %12s %8.2f\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" \
      "$(echo "$MB / $3" | bc -l)" "$4" "$5" "$(echo "$3 / $COPY_S" | bc -l)"
  }
  report copy-limit "$N" "$COPY_S" - -

  slsql -c "DROP ETL JOB IF EXISTS snap; DROP ETL JOB IF EXISTS snap2; DROP ETL JOB IF EXISTS inc" >/dev/null 2>&1
  slsql -c "CREATE ETL JOB snap FROM bench.public.t INTO warehouse.t_snap_$N SNAPSHOT" \
        -c "CREATE ETL JOB snap2 FROM bench.public.t INTO warehouse.t_snap2_$N SNAPSHOT WITH (parallelism = 2)" \
        -c "CREATE ETL JOB inc FROM bench.public.t INTO warehouse.t_inc_$N INCREMENTAL BY created_at ALL"
  for job in snap snap2 inc; do
    case $job in snap) step=snapshot ;; snap2) step=snapshot-par2 ;; inc) step=incremental ;; esac
    reset_peak; start_heap; t0=$(now); slsql -c "RUN ETL JOB $job" >/dev/null 2>&1; t1=$(now)
    report "$step" "$N" "$(echo "$t1 - $t0" | bc -l)" "$(peak_mb)" "$(heap_mb)"
  done
  reset_peak; start_heap; t0=$(now); slsql -c "RUN ETL JOB inc" >/dev/null 2>&1; t1=$(now)
  printf '%-13s %12d %10.3f %12s %10s %12s %12s %8s\n' no-op-incr 0 "$(echo "$t1 - $t0" | bc -l)" - - "$(peak_mb)" "$(heap_mb)" -
done
