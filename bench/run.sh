#!/usr/bin/env bash
# Extraction benchmark: Sluice against the raw binary COPY limit, measured in
# the same run on the same PostgreSQL.
#
#   bench/run.sh [ROWS ...]      default: 1000000   (e.g. bench/run.sh 1000000 10000000)
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_REPEAT=n               runs of each step (default 3): the median time is
#                                reported, and the highest peak RSS and heap
#   BENCH_SHAPES="a b"           table shapes (default: orders randtext wide jsonb)
#   BENCH_DUCKDB=0               leave DuckDB out
#
# For each shape and size it creates a table in a temporary PostgreSQL, each
# with `id bigint` primary key and an indexed `created_at timestamptz` (the cursor):
#   orders        customer_id int, amount numeric(12,2), status text, note text
#                 ('order note number N': compressible text)
#   randtext      the same, with note = 32 random hex characters (md5)
#   wide          48 more columns: 12 each of int, numeric(12,2), text, double
#   jsonb         doc jsonb (a nested object), tags text[], scores int[]
# then measures:
#   copy-limit    psql \copy (select * from t) to /dev/null with (format binary)
#   duckdb        DuckDB 1.4.4 + its postgres extension: COPY (SELECT * FROM
#                 pg.public.t) TO a Parquet file (bench/duckdb_copy.py; wall time
#                 of the COPY and the DuckDB process's peak RSS)
#   snapshot      RUN ETL JOB (SNAPSHOT) into the local warehouse
#   snapshot-par2 the same with WITH (parallelism = 2): two key-range COPY streams
#   incremental   first incremental run (all rows), then a no-op run
#   incr-unguard  the same first run with WITH (commit_guard = 'off'), to show
#                 what the commit guard costs a run with nothing to guard
# and prints wall time, rows/s, MB/s (of the binary COPY stream), the server's
# peak RSS during the step (VmHWM: heap plus the pages of the binary's code
# that were touched), its peak heap (RssAnon, sampled every 20 ms) and the
# ratio to the COPY limit and to DuckDB, and the CPU seconds the server used
# (user + system; steadier than wall time on a busy machine, for comparing builds).
# Needs PostgreSQL (initdb, pg_ctl, psql); run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=("${@:-1000000}")
REPEAT=${BENCH_REPEAT:-3}
# shellcheck disable=SC2206
SHAPES=(${BENCH_SHAPES:-orders randtext wide jsonb})
PG_EXTRA="-c shared_buffers=256MB"
# shellcheck source=bench/lib.sh
source bench/lib.sh
if [ "${BENCH_DUCKDB:-1}" != 0 ]; then
  # shellcheck source=bench/duckdb-venv.sh
  source bench/duckdb-venv.sh
fi
reset_peak() { echo 5 > "/proc/$SLUICE_PID/clear_refs"; }
peak_mb() { peak_mb_of "$SLUICE_PID"; }
# CPU seconds (user + system) the server has used so far.
cpu_s() { cpu_of "$SLUICE_PID"; }
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
wait_for_sluice
slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')"

# The columns after id and created_at, and the expression of each, by shape.
shape_columns() {
  case $1 in
    orders) echo "customer_id int, amount numeric(12,2), status text, note text" ;;
    randtext) echo "customer_id int, amount numeric(12,2), status text, note text" ;;
    wide) for k in $(seq 12); do printf 'i%d int, n%d numeric(12,2), s%d text, f%d double precision, ' "$k" "$k" "$k" "$k"; done | sed 's/, $//' ;;
    jsonb) echo "doc jsonb, tags text[], scores int[]" ;;
  esac
}
shape_values() {
  case $1 in
    orders) echo "g % 10000, (g % 100000) / 100.0, (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], 'order note number ' || g" ;;
    randtext) echo "g % 10000, (g % 100000) / 100.0, (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], md5(random()::text)" ;;
    wide) for k in $(seq 12); do printf "(g * %d) %% 100000, ((g * %d) %% 100000) / 100.0, 'value ' || (g %% %d), g / %d.0, " "$k" "$k" "$((k * 997))" "$k"; done | sed 's/, $//' ;;
    jsonb) echo "jsonb_build_object('id', g, 'customer', jsonb_build_object('name', 'customer ' || (g % 1000), 'tier', g % 3), 'total', (g % 100000) / 100.0), ARRAY['tag' || (g % 7), 'tag' || (g % 11)], ARRAY[g % 10, g % 100, g % 1000]" ;;
  esac
}

printf '%-8s %-13s %12s %10s %12s %10s %12s %12s %8s %8s %9s\n' shape step rows seconds rows/s MB/s peak_RSS_MB peak_heap_MB cpu_s vs_COPY vs_DuckDB
for SHAPE in "${SHAPES[@]}"; do
for N in "${SIZES[@]}"; do
  pgsql -c "SET client_min_messages = warning; DROP TABLE IF EXISTS t; CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, $(shape_columns "$SHAPE"));
            INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 second', $(shape_values "$SHAPE")
            FROM generate_series(1, $N) g;"
  pgsql -c "CREATE INDEX ON t (created_at)"
  pgsql -c "VACUUM ANALYZE t"
  MB=$(pgsql -At -c "\\copy (select * from t) to stdout with (format binary)" | wc -c | awk '{printf "%.1f", $1/1048576}')
  report() { # step rows seconds peak heap cpu
    printf '%-8s %-13s %12d %10.3f %12.0f %10.1f %12s %12s %8s %8.2f %9s\n' "$SHAPE" "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" \
      "$(echo "$MB / $3" | bc -l)" "$4" "$5" "$6" "$(echo "$3 / $COPY_S" | bc -l)" \
      "$([ -n "$DUCKDB_S" ] && printf '%.2f' "$(echo "$3 / $DUCKDB_S" | bc -l)" || echo -)"
  }
  times=()
  for _ in $(seq "$REPEAT"); do
    t0=$(now); pgsql -c "\\copy (select * from t) to /dev/null with (format binary)"; t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  COPY_S=$(median "${times[@]}")
  DUCKDB_S=
  report copy-limit "$N" "$COPY_S" - - -
  if [ -n "${DUCKDB_PY:-}" ]; then
    times=(); peak=0
    for _ in $(seq "$REPEAT"); do
      read -r secs mb < <("$DUCKDB_PY" bench/duckdb_copy.py "host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres" "$WORK/duckdb.parquet")
      rm -f "$WORK/duckdb.parquet"
      times+=("$secs"); (( mb > peak )) && peak=$mb
    done
    DUCKDB_S=$(median "${times[@]}")
    report duckdb "$N" "$DUCKDB_S" "$peak" - -
  fi

  slsql -c "DROP ETL JOB IF EXISTS snap; DROP ETL JOB IF EXISTS snap2" >/dev/null 2>&1
  slsql -c "CREATE ETL JOB snap FROM bench.public.t INTO warehouse.t_snap_${SHAPE}_$N SNAPSHOT" \
        -c "CREATE ETL JOB snap2 FROM bench.public.t INTO warehouse.t_snap2_${SHAPE}_$N SNAPSHOT WITH (parallelism = 2)"
  for step in snapshot snapshot-par2 incremental no-op-incr incr-unguard; do
    times=(); cpus=(); peak=0; heap=0
    for r in $(seq "$REPEAT"); do
      case $step in
        snapshot) job=snap ;;
        snapshot-par2) job=snap2 ;;
        incremental) # a new job each time: its first run loads all rows
          job=inc
          slsql -c "DROP ETL JOB IF EXISTS inc" >/dev/null 2>&1
          slsql -c "CREATE ETL JOB inc FROM bench.public.t INTO warehouse.t_inc_${SHAPE}_${N}_$r INCREMENTAL BY created_at ALL" ;;
        no-op-incr) job=inc ;; # the last incremental job, which has loaded everything
        incr-unguard)
          job=incu
          slsql -c "DROP ETL JOB IF EXISTS incu" >/dev/null 2>&1
          slsql -c "CREATE ETL JOB incu FROM bench.public.t INTO warehouse.t_incu_${SHAPE}_${N}_$r INCREMENTAL BY created_at ALL WITH (commit_guard = 'off')" ;;
      esac
      reset_peak; start_heap; c0=$(cpu_s); t0=$(now); slsql -c "RUN ETL JOB $job" >/dev/null 2>&1; t1=$(now)
      times+=("$(echo "$t1 - $t0" | bc -l)"); cpus+=("$(echo "$(cpu_s) - $c0" | bc -l)")
      p=$(peak_mb); h=$(heap_mb)
      (( p > peak )) && peak=$p
      (( h > heap )) && heap=$h
    done
    if [ "$step" = no-op-incr ]; then
      printf '%-8s %-13s %12d %10.3f %12s %10s %12s %12s %8.2f %8s %9s\n' "$SHAPE" no-op-incr 0 "$(median "${times[@]}")" - - "$peak" "$heap" \
        "$(median "${cpus[@]}")" - -
    else
      report "$step" "$N" "$(median "${times[@]}")" "$peak" "$heap" "$(printf '%.2f' "$(median "${cpus[@]}")")"
    fi
  done
done
done
