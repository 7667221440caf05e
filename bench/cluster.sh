#!/usr/bin/env bash
# Cluster extraction benchmark (docs/cluster.md): the same PostgreSQL table
# extracted into a warehouse in S3 (moto) by the server alone and by a
# Ballista cluster of 1 and of 2 executors, next to the raw binary COPY
# limit, all measured in the same run on the same PostgreSQL.
#
#   bench/cluster.sh [ROWS]      default: 1000000
#   BENCH_BIN=path               measure this sluice binary (built with
#                                `--features cluster`) instead of building one
#   BENCH_REPEAT=n               runs of each step (default 3): the median time
#                                and CPU seconds are reported, and the highest
#                                peak RSS
#
# The table is bench/run.sh's `orders` shape: id bigint primary key, an
# indexed created_at timestamptz, customer_id int, amount numeric(12,2),
# status text, note text ('order note number N'). Steps:
#   copy-limit  psql \copy (select * from t) to /dev/null with (format binary)
#   inproc-par2 `sluice serve --warehouse s3://bench/inproc` (no cluster), a
#               SNAPSHOT job WITH (parallelism = 2)
#   cluster-1ex `sluice serve --cluster ... --warehouse s3://bench/cluster`,
#               `sluice scheduler` and one `sluice executor --tasks 2`, a
#               SNAPSHOT job WITH (parallelism = 4, execution = 'cluster')
#   cluster-2ex the same with a second executor (--tasks 2) started
# Each process is on free loopback ports and reaches moto with AWS_* in its
# environment. Per step it prints wall seconds, rows/s, the ratio to the COPY
# limit, the tasks each executor finished (from their logs), the peak RSS
# (VmHWM, reset with clear_refs before each run) and CPU seconds (user +
# system) of the server and of each executor, the CPU seconds of the
# scheduler, of PostgreSQL (postmaster and backends) and of moto. Each run's
# warehouse table is counted (SELECT count(*)) and must equal the source's.
# Lines starting with # give each process's RSS when it started (idle).
# Needs PostgreSQL (initdb, pg_ctl, psql), python3 and moto from
# scripts/install-emulators.sh; run as root or as a user that can run initdb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-1000000}
REPEAT=${BENCH_REPEAT:-3}
PG_EXTRA="-c shared_buffers=256MB -c max_connections=100"
BENCH_FEATURES=cluster
# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=bench/moto.sh
source bench/moto.sh
make_bucket bench
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="$MOTO_ENDPOINT" AWS_ALLOW_HTTP=true
PG_PID=$(head -1 "$WORK/pg/data/postmaster.pid")

pgsql -c "CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int, amount numeric(12,2), status text, note text);
          INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 second', g % 10000, (g % 100000) / 100.0,
            (ARRAY['open','paid','shipped','refunded'])[1 + g % 4], 'order note number ' || g
          FROM generate_series(1, $N) g;"
pgsql -c "CREATE INDEX ON t (created_at)"
pgsql -c "VACUUM ANALYZE t"
SOURCE_ROWS=$(pgsql -At -c "SELECT count(*) FROM t")
connect_source() {
  slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')"
}

# The cluster's processes: a key every process shares, the scheduler, and
# executors started by start_executor (EXEC_PIDS, their logs exec-K.log).
KEY="$WORK/cluster.key"
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32), end="")' >"$KEY")
SCHED_PORT=$(free_port)
"$BIN" scheduler --listen "127.0.0.1:$SCHED_PORT" >"$WORK/scheduler.log" 2>&1 &
SCHED_PID=$!
track_pid "$SCHED_PID"
wait_for_port "$SCHED_PORT"
EXEC_PIDS=()
start_executor() {
  local k=$((${#EXEC_PIDS[@]} + 1)) port grpc
  port=$(free_port); grpc=$(free_port)
  mkdir -p "$WORK/exec-$k"
  "$BIN" executor --scheduler "127.0.0.1:$SCHED_PORT" --port "$port" --grpc-port "$grpc" --tasks 2 \
    --id "exec-$k" --heartbeat 1 --cluster-key-file "$KEY" --work-dir "$WORK/exec-$k" >"$WORK/exec-$k.log" 2>&1 &
  EXEC_PIDS+=("$!")
  track_pid "$!"
  wait_for_port "$port"
  sleep 3 # a few heartbeats: registered with the scheduler before the next run
  echo "# exec-$k started, RSS $(rss_mb_of "${EXEC_PIDS[-1]}") MB"
}
tasks_done() { grep -c 'task done' "$WORK/exec-$1.log" || true; }

# The measures of one step over its runs: times, CPU seconds and peaks by
# process, then one line of the table.
printf '%-12s %9s %8s %10s %7s %6s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n' step rows seconds rows/s vs_COPY tasks \
  srv_MB srv_cpu ex1_MB ex1_cpu ex2_MB ex2_cpu sch_cpu pg_cpu moto_cpu
dash_or() { if [ -n "$1" ]; then printf '%s' "$1"; else echo -; fi; }
report() { # step seconds tasks srv_MB srv_cpu ex1_MB ex1_cpu ex2_MB ex2_cpu sch_cpu pg_cpu moto_cpu
  printf '%-12s %9d %8.3f %10.0f %7.2f %6s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n' "$1" "$SOURCE_ROWS" "$2" \
    "$(echo "$SOURCE_ROWS / $2" | bc -l)" "$(echo "$2 / $COPY_S" | bc -l)" "$3" \
    "$(dash_or "$4")" "$(dash_or "$5")" "$(dash_or "$6")" "$(dash_or "$7")" "$(dash_or "$8")" "$(dash_or "$9")" \
    "$(dash_or "${10}")" "$(dash_or "${11}")" "$(dash_or "${12}")"
}
max() { if [ "$2" -gt "$1" ]; then echo "$2"; else echo "$1"; fi; }
sub() { printf '%.2f' "$(echo "$1 - $2" | bc -l)"; }

times=(); pgcpu=()
for _ in $(seq "$REPEAT"); do
  p0=$(tree_cpu_of "$PG_PID"); t0=$(now)
  pgsql -c "\\copy (select * from t) to /dev/null with (format binary)"
  t1=$(now)
  times+=("$(echo "$t1 - $t0" | bc -l)"); pgcpu+=("$(sub "$(tree_cpu_of "$PG_PID")" "$p0")")
done
COPY_S=$(median "${times[@]}")
report copy-limit "$COPY_S" - "" "" "" "" "" "" "" "$(median "${pgcpu[@]}")" ""

# Runs `job` (into warehouse.$table) REPEAT times and reports it as `step`.
measure() {
  local step=$1 job=$2 table=$3 r loaded count t0 t1 c0 s0 p0 m0 e0=() d0=() i
  local times=() srvcpu=() schcpu=() pgcpu=() motocpu=() excpu=() srvpeak=0 expeak=(0 0) tasks=
  for r in $(seq "$REPEAT"); do
    reset_peak_of "$SLUICE_PID"
    e0=(); d0=()
    for i in "${!EXEC_PIDS[@]}"; do
      reset_peak_of "${EXEC_PIDS[$i]}"; e0+=("$(cpu_of "${EXEC_PIDS[$i]}")"); d0+=("$(tasks_done $((i + 1)))")
    done
    c0=$(cpu_of "$SLUICE_PID"); s0=$(cpu_of "$SCHED_PID"); p0=$(tree_cpu_of "$PG_PID"); m0=$(cpu_of "$MOTO_PID")
    t0=$(now)
    loaded=$(slsql -c "RUN ETL JOB $job" 2>"$WORK/run.err" | cut -d'|' -f3) || {
      echo "RUN ETL JOB $job failed:" >&2; grep -v NOTICE "$WORK/run.err" >&2
      echo "--- server log:" >&2; tail -30 "$SLUICE_DIR.log" >&2; exit 1
    }
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
    srvcpu+=("$(sub "$(cpu_of "$SLUICE_PID")" "$c0")"); schcpu+=("$(sub "$(cpu_of "$SCHED_PID")" "$s0")")
    pgcpu+=("$(sub "$(tree_cpu_of "$PG_PID")" "$p0")"); motocpu+=("$(sub "$(cpu_of "$MOTO_PID")" "$m0")")
    srvpeak=$(max "$srvpeak" "$(peak_mb_of "$SLUICE_PID")")
    tasks=
    for i in "${!EXEC_PIDS[@]}"; do # excpu: "run:executor:seconds" lines
      excpu+=("$r:$i:$(sub "$(cpu_of "${EXEC_PIDS[$i]}")" "${e0[$i]}")")
      expeak[i]=$(max "${expeak[i]}" "$(peak_mb_of "${EXEC_PIDS[$i]}")")
      tasks+="${tasks:++}$(( $(tasks_done $((i + 1))) - d0[i] ))"
    done
    count=$(slsql -c "SELECT count(*) FROM warehouse.$table")
    if [ "$loaded" != "$SOURCE_ROWS" ] || [ "$count" != "$SOURCE_ROWS" ]; then
      echo "FAIL: $step run $r: RUN ETL JOB $job says $loaded rows, warehouse.$table has $count, the source $SOURCE_ROWS" >&2
      exit 1
    fi
  done
  local ex=() # peak MB and median CPU seconds of executor 1, then 2 (empty without it)
  for i in 0 1; do
    if [ "$i" -lt ${#EXEC_PIDS[@]} ]; then
      # shellcheck disable=SC2046 # one value a run
      ex+=("${expeak[i]}" "$(median $(printf '%s\n' "${excpu[@]}" | awk -F: -v i="$i" '$2 == i {print $3}'))")
    else
      ex+=("" "")
    fi
  done
  report "$step" "$(median "${times[@]}")" "$(dash_or "$tasks")" "$srvpeak" "$(median "${srvcpu[@]}")" \
    "${ex[@]}" "$(median "${schcpu[@]}")" "$(median "${pgcpu[@]}")" "$(median "${motocpu[@]}")"
}

# In process: a server without a cluster (the scheduler stands idle, no executor yet).
start_sluice "$WORK/sluice-inproc-par2" --warehouse s3://bench/inproc
echo "# in-process server started, RSS $(rss_mb_of "$SLUICE_PID") MB"
connect_source
slsql -c "CREATE ETL JOB inproc FROM bench.public.t INTO warehouse.t_inproc SNAPSHOT WITH (parallelism = 2)"
measure inproc-par2 inproc t_inproc
stop_sluice

# On the cluster, with one executor, then two.
start_executor
start_sluice "$WORK/sluice-cluster" --warehouse s3://bench/cluster --cluster "df://127.0.0.1:$SCHED_PORT" \
  --cluster-key-file "$KEY"
echo "# cluster server started, RSS $(rss_mb_of "$SLUICE_PID") MB"
connect_source
slsql -c "CREATE ETL JOB c1 FROM bench.public.t INTO warehouse.t_cluster1 SNAPSHOT WITH (parallelism = 4, execution = 'cluster')" \
      -c "CREATE ETL JOB c2 FROM bench.public.t INTO warehouse.t_cluster2 SNAPSHOT WITH (parallelism = 4, execution = 'cluster')"
measure cluster-1ex c1 t_cluster1
start_executor
measure cluster-2ex c2 t_cluster2
