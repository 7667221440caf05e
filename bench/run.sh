#!/usr/bin/env bash
# Extraction benchmark: Sluice against the raw binary COPY limit, measured in
# the same run on the same PostgreSQL.
#
#   bench/run.sh [ROWS ...]      default: 1000000   (e.g. bench/run.sh 1000000 10000000)
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_REPEAT=n               runs of each step (default 3): the median time is
#                                reported, and the highest peak RSS and heap
#
# For each size it creates a table (id bigint, created_at timestamptz (indexed: the cursor),
# customer_id int, amount numeric(12,2), status text, note text) in a temporary
# PostgreSQL, then measures:
#   copy-limit    psql \copy (select * from t) to /dev/null with (format binary)
#   snapshot      RUN ETL JOB (SNAPSHOT) into the local warehouse
#   snapshot-par2 the same with WITH (parallelism = 2): two key-range COPY streams
#   incremental   first incremental run (all rows), then a no-op run
#   incr-unguard  the same first run with WITH (commit_guard = 'off'), to show
#                 what the commit guard costs a run with nothing to guard
# and prints wall time, rows/s, MB/s (of the binary COPY stream), the server's
# peak RSS during the step (VmHWM: heap plus the pages of the binary's code
# that were touched), its peak heap (RssAnon, sampled every 20 ms) and the
# ratio to the COPY limit, and the CPU seconds the server used (user + system;
# steadier than wall time on a busy machine, for comparing builds).
# Needs PostgreSQL (initdb, pg_ctl, psql); run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=("${@:-1000000}")
REPEAT=${BENCH_REPEAT:-3}
PG_EXTRA="-c shared_buffers=256MB"
# shellcheck source=bench/lib.sh
source bench/lib.sh
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
reset_peak() { echo 5 > "/proc/$SLUICE_PID/clear_refs"; }
peak_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }
# CPU seconds (user + system) the server has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$SLUICE_PID/stat"; }
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

printf '%-13s %12s %10s %12s %10s %12s %12s %8s %8s\n' step rows seconds rows/s MB/s peak_RSS_MB peak_heap_MB cpu_s vs_COPY
for N in "${SIZES[@]}"; do
  pgsql -c "SET client_min_messages = warning; DROP TABLE IF EXISTS t; CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int, amount numeric(12,2), status text, note text);
            INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 second', g % 10000, (g % 100000) / 100.0,
                   (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], 'order note number ' || g
            FROM generate_series(1, $N) g;"
  pgsql -c "CREATE INDEX ON t (created_at)"
  pgsql -c "VACUUM ANALYZE t"
  MB=$(pgsql -At -c "\\copy (select * from t) to stdout with (format binary)" | wc -c | awk '{printf "%.1f", $1/1048576}')
  report() { # step rows seconds peak heap cpu
    printf '%-13s %12d %10.3f %12.0f %10.1f %12s %12s %8s %8.2f\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" \
      "$(echo "$MB / $3" | bc -l)" "$4" "$5" "$6" "$(echo "$3 / $COPY_S" | bc -l)"
  }
  times=()
  for _ in $(seq "$REPEAT"); do
    t0=$(now); pgsql -c "\\copy (select * from t) to /dev/null with (format binary)"; t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  COPY_S=$(median "${times[@]}")
  report copy-limit "$N" "$COPY_S" - - -

  slsql -c "DROP ETL JOB IF EXISTS snap; DROP ETL JOB IF EXISTS snap2" >/dev/null 2>&1
  slsql -c "CREATE ETL JOB snap FROM bench.public.t INTO warehouse.t_snap_$N SNAPSHOT" \
        -c "CREATE ETL JOB snap2 FROM bench.public.t INTO warehouse.t_snap2_$N SNAPSHOT WITH (parallelism = 2)"
  for step in snapshot snapshot-par2 incremental no-op-incr incr-unguard; do
    times=(); cpus=(); peak=0; heap=0
    for r in $(seq "$REPEAT"); do
      case $step in
        snapshot) job=snap ;;
        snapshot-par2) job=snap2 ;;
        incremental) # a new job each time: its first run loads all rows
          job=inc
          slsql -c "DROP ETL JOB IF EXISTS inc" >/dev/null 2>&1
          slsql -c "CREATE ETL JOB inc FROM bench.public.t INTO warehouse.t_inc_${N}_$r INCREMENTAL BY created_at ALL" ;;
        no-op-incr) job=inc ;; # the last incremental job, which has loaded everything
        incr-unguard)
          job=incu
          slsql -c "DROP ETL JOB IF EXISTS incu" >/dev/null 2>&1
          slsql -c "CREATE ETL JOB incu FROM bench.public.t INTO warehouse.t_incu_${N}_$r INCREMENTAL BY created_at ALL WITH (commit_guard = 'off')" ;;
      esac
      reset_peak; start_heap; c0=$(cpu_s); t0=$(now); slsql -c "RUN ETL JOB $job" >/dev/null 2>&1; t1=$(now)
      times+=("$(echo "$t1 - $t0" | bc -l)"); cpus+=("$(echo "$(cpu_s) - $c0" | bc -l)")
      p=$(peak_mb); h=$(heap_mb)
      (( p > peak )) && peak=$p
      (( h > heap )) && heap=$h
    done
    if [ "$step" = no-op-incr ]; then
      printf '%-13s %12d %10.3f %12s %10s %12s %12s %8.2f %8s\n' no-op-incr 0 "$(median "${times[@]}")" - - "$peak" "$heap" \
        "$(median "${cpus[@]}")" -
    else
      report "$step" "$N" "$(median "${times[@]}")" "$peak" "$heap" "$(printf '%.2f' "$(median "${cpus[@]}")")"
    fi
  done
done
