#!/usr/bin/env bash
# Many-jobs benchmark (issue #16): what N jobs on one PostgreSQL connection
# cost the catalog, the system tables and the scheduler.
#
#   bench/scale.sh [N ...]       default: 1000 10000
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_RUNS=r                 manual runs of every job before the measurements
#                                (default 3), to give the catalog a run history
#   BENCH_BURST=n                jobs made due at the same minute (default: min(N, 1000))
#
# For each N it starts a fresh server, creates N snapshot jobs of one 100-row
# table (each into its own warehouse table), runs each BENCH_RUNS times, and
# prints:
#   create_ms      CREATE ETL JOB, mean per job (one psql session, N statements)
#   run_ms         RUN ETL JOB of a 100-row table, mean per run
#   jobs_ms        SELECT * FROM sluice.jobs                              target <= 50
#   show_ms        SHOW ETL JOBS                                          target <= 50
#   lookup_ms      SELECT * FROM sluice.jobs WHERE name = 'jN/2'          target <= 5
#   runs_ms        SELECT * FROM sluice.runs WHERE job = 'jN/2'
#                  (each query: medians of 5, "server CPU ms/wall ms", the
#                  wall time with psql's start-up subtracted)
#   burst_s        BENCH_BURST jobs due at the same minute: seconds from the
#                  minute to the last scheduled start                    target <= 10
#   pass_ms        one scheduler pass over all N jobs, mean of the passes during
#                  the burst (the server's sluice_scheduler_pass_seconds metric)
#   catalog_mb     the catalog's size on disk after all of the above
#   idle_mb        the server's resident memory when idle after the runs (VmRSS),
#                  25 s after the burst (Tokio ends idle blocking threads after 10 s;
#                  the server gives freed heap back every 10 s), and its two parts:
#   heap_mb        anonymous memory (RssAnon): the heap, stacks, caches
#   code_mb        file-backed pages (RssFile): the binary's and libraries' code
#                  and data the server touched, clean and shared with the page cache
#   threads        the server's threads at that moment
#   peak_mb        its peak resident memory over the whole step (VmHWM)
# The scheduler starts runs
# within the limits SLUICE_MAX_CONCURRENT_RUNS and
# SLUICE_MAX_RUNS_PER_CONNECTION; this bench raises both to the burst size so
# that the limits do not hide the scheduler's own latency.
# Needs PostgreSQL (initdb, pg_ctl, psql); run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=("${@:-1000 10000}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
RUNS=${BENCH_RUNS:-3}
# shellcheck source=bench/lib.sh
source bench/lib.sh
ms_since() { echo "($(now) - $1) * 1000" | bc -l; }
# CPU nanoseconds the server's threads have used so far.
cpu_ns() { cat /proc/"$SLUICE_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
# Median milliseconds of a query: the server's CPU time for it (steady on a
# busy machine) and the wall time with psql's own start-up subtracted.
query_ms() {
  local cpu=() wall=() base=() t0 c0
  for _ in 1 2 3 4 5; do
    t0=$(now); slsql -c 'SELECT 1' >/dev/null; base+=("$(ms_since "$t0")")
    c0=$(cpu_ns); t0=$(now); slsql -c "$1" >/dev/null; wall+=("$(ms_since "$t0")")
    cpu+=("$(echo "($(cpu_ns) - $c0) / 1000000" | bc -l)")
  done
  printf '%.1f/%.1f' "$(median "${cpu[@]}")" "$(echo "$(median "${wall[@]}") - $(median "${base[@]}")" | bc -l)"
}

pgsql -c "CREATE TABLE t (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, note text);
          INSERT INTO t SELECT g, now() - g * interval '1 minute', 'row ' || g FROM generate_series(1, 100) g;" >/dev/null

# "count sum" of the scheduler's pass-duration histogram so far.
passes() {
  curl -s "http://127.0.0.1:$MPORT/metrics" | awk '/^sluice_scheduler_pass_seconds_count/ {c = $2} /^sluice_scheduler_pass_seconds_sum/ {s = $2} END {print c + 0, s + 0}'
}

printf '%-7s %9s %8s %13s %13s %13s %13s %8s %8s %10s %8s %8s %8s %8s %8s\n' \
  jobs create_ms run_ms jobs_ms show_ms lookup_ms runs_ms burst_s pass_ms catalog_mb idle_mb heap_mb code_mb peak_mb threads
for N in "${SIZES[@]}"; do
  BURST=${BENCH_BURST:-$(( N < 1000 ? N : 1000 ))}
  DATA="$WORK/sluice-$N"
  MPORT=$(free_port)
  SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN="127.0.0.1:$MPORT" SLUICE_DEMO_DIR= SLUICE_RETEST_INTERVAL=86400 \
    SLUICE_MAX_CONCURRENT_RUNS=$BURST SLUICE_MAX_RUNS_PER_CONNECTION=$BURST \
    "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$DATA" >"$WORK/sluice-$N.log" 2>&1 &
  SLUICE_PID=$!
  wait_for_sluice
  slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')" >/dev/null

  seq 1 "$N" | awk '{printf "CREATE ETL JOB j%d FROM bench.public.t INTO warehouse.t%d SNAPSHOT;\n", $1, $1}' > "$WORK/create.sql"
  t0=$(now); slsql -f "$WORK/create.sql" >/dev/null
  CREATE_MS=$(echo "$(ms_since "$t0") / $N" | bc -l)

  # Runs one after another through one session, so the figure is a run's own cost.
  for _ in $(seq "$RUNS"); do seq 1 "$N" | awk '{printf "RUN ETL JOB j%d;\n", $1}'; done > "$WORK/run.sql"
  t0=$(now); slsql -f "$WORK/run.sql" >/dev/null 2>&1
  RUN_MS=$(echo "$(ms_since "$t0") / ($N * $RUNS)" | bc -l)
  [ "$RUNS" = 0 ] && RUN_MS=0

  JOBS_MS=$(query_ms "SELECT * FROM sluice.jobs")
  SHOW_MS=$(query_ms "SHOW ETL JOBS")
  LOOKUP_MS=$(query_ms "SELECT * FROM sluice.jobs WHERE name = 'j$(( N / 2 ))'")
  RUNS_MS=$(query_ms "SELECT * FROM sluice.runs WHERE job = 'j$(( N / 2 ))'")

  # The burst: BURST jobs scheduled every minute; the first whole minute
  # after the change fires them all. Then they are paused again.
  PASSES0=$(passes)
  slsql -c "ALTER ETL JOBS WHERE name IN ($(seq 1 "$BURST" | awk '{printf "%s'"'"'j%d'"'"'", (NR>1?",":""), $1}')) SET SCHEDULE EVERY 1 MINUTES" >/dev/null
  MINUTE=$(( ($(date +%s) / 60 + 1) * 60 ))
  for _ in $(seq 240); do
    started=$(slsql -c "SELECT count(*) FROM sluice.runs WHERE trigger = 'schedule' AND started_at >= to_timestamp($MINUTE)")
    [ "$started" -ge "$BURST" ] && break
    sleep 1
  done
  BURST_S=$(slsql -c "SELECT extract(epoch FROM max(started_at)) - $MINUTE FROM sluice.runs WHERE trigger = 'schedule' AND started_at >= to_timestamp($MINUTE)")
  [ "$started" -ge "$BURST" ] || BURST_S="only $started of $BURST started"
  PASS_MS=$(passes | awk -v before="$PASSES0" 'BEGIN {split(before, b)} {n = $1 - b[1]; printf "%.1f", (n > 0 ? ($2 - b[2]) * 1000 / n : 0)}')
  slsql -c "ALTER ETL JOBS WHERE name LIKE 'j%' PAUSE" >/dev/null
  sleep 25

  CATALOG_MB=$(du -sm "$DATA/catalog" 2>/dev/null | cut -f1)
  IDLE_MB=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status")
  HEAP_MB=$(awk '/RssAnon/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status")
  CODE_MB=$(awk '/RssFile/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status")
  THREADS=$(awk '/^Threads/ {print $2}' "/proc/$SLUICE_PID/status")
  PEAK_MB=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status")
  printf '%-7d %9.1f %8.1f %13s %13s %13s %13s %8.8s %8s %10s %8s %8s %8s %8s %8s\n' "$N" "$CREATE_MS" "$RUN_MS" \
    "$JOBS_MS" "$SHOW_MS" "$LOOKUP_MS" "$RUNS_MS" "$BURST_S" "$PASS_MS" "$CATALOG_MB" "$IDLE_MB" "$HEAP_MB" "$CODE_MB" \
    "$PEAK_MB" "$THREADS"
  kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true; SLUICE_PID=
done
