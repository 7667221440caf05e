#!/usr/bin/env bash
# MySQL/MariaDB extraction benchmark: Sluice against the `mariadb` client
# reading the same table, measured in the same run on the same MariaDB.
#
#   bench/mysql.sh [ROWS ...]    default: 1000000   (e.g. bench/mysql.sh 1000000 10000000)
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_REPEAT=n               runs of each step (default 3): the median time is
#                                reported, and the highest peak RSS
#   BENCH_SHAPES="a b"           table shapes (default: orders randtext)
#   BENCH_PERF=1                 after the measured steps, one more snapshot run
#                                under `perf record -g -p <sluice>`, and its top 10
#                                self-time symbols (not part of the figures)
#
# It starts a throw-away MariaDB (mariadbd --no-defaults) on a free loopback
# port in the bench's temp dir, with a user `bench` that Sluice and the client
# log in as over TCP (no TLS: the server has no certificate). For each shape
# and size it creates a table `bench.t` (InnoDB) with `id bigint` primary key
# and an indexed `created_at timestamp(6)` (the cursor):
#   orders        customer_id int, amount decimal(12,2), status varchar(16),
#                 note text ('order note number N': compressible text)
#   randtext      the same, with note = 32 random hex characters (md5)
# filled from MariaDB's sequence engine (INSERT ... SELECT FROM seq_1_to_N),
# then measures:
#   raw-read      mariadb --quick -e 'select * from t' > /dev/null over TCP on
#                 127.0.0.1: the client streaming the rows (text protocol,
#                 unbuffered) and throwing them away, the reference
#   snapshot      RUN ETL JOB (SNAPSHOT) from a `TYPE mysql` connection into
#                 the local warehouse
#   incremental   the first run of an INCREMENTAL BY created_at ALL job (all
#                 rows; a new job each repetition)
# and prints wall time, rows/s, MB/s (of the client's tab-separated output),
# the server's peak RSS during the step (VmHWM after clear_refs), the CPU
# seconds the Sluice server used (user + system; for raw-read those of the
# `mariadb` client), those mariadbd used (what
# each reader costs the source) and the ratio to raw-read.
# Each Sluice run is checked to have succeeded with all ROWS rows.
# Needs MariaDB (mariadb-install-db, mariadbd, mariadb); run as root or as a
# user that can run mariadbd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=("${@:-1000000}")
REPEAT=${BENCH_REPEAT:-3}
# shellcheck disable=SC2206
SHAPES=(${BENCH_SHAPES:-orders randtext})
BENCH_NO_PG=1
# shellcheck source=bench/lib.sh
source bench/lib.sh
reset_peak() { echo 5 > "/proc/$SLUICE_PID/clear_refs"; }
peak_mb() { peak_mb_of "$SLUICE_PID"; }
# CPU seconds (user + system) process $1 has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
cpu_s() { cpu_of "$SLUICE_PID"; }
db_cpu_s() { cpu_of "$(cat "$MYDIR/mysqld.pid")"; }
as_my() { if [ "$(id -u)" = 0 ]; then runuser -u mysql -- "$@"; else "$@"; fi; }

MYDIR=$WORK/mariadb
MYPORT=$(free_port)
MYPW=bench_pw_123
mkdir -p "$MYDIR"
[ "$(id -u)" = 0 ] && chown mysql: "$MYDIR"
# root over the socket (no password); `bench` over TCP.
myroot() { mariadb --no-defaults --default-character-set=utf8mb4 --socket="$MYDIR/mysqld.sock" -u root "$@"; }
mytcp() { mariadb --no-defaults --default-character-set=utf8mb4 --protocol=TCP -h 127.0.0.1 -P "$MYPORT" -u bench -p"$MYPW" "$@"; }
stop_mariadb() {
  myroot -e 'SHUTDOWN' >/dev/null 2>&1 || { [ -f "$MYDIR/mysqld.pid" ] && kill "$(cat "$MYDIR/mysqld.pid")"; } || true
  for _ in $(seq 100); do [ -e "$MYDIR/mysqld.pid" ] || break; sleep 0.1; done
}
CLEANUP_EXTRA=stop_mariadb
as_my mariadb-install-db --no-defaults --datadir="$MYDIR/data" --auth-root-authentication-method=normal \
  --skip-test-db --skip-name-resolve >"$MYDIR/install.log" 2>&1
# A buffer pool that holds the whole table: every step reads from memory.
as_my mariadbd --no-defaults --datadir="$MYDIR/data" --socket="$MYDIR/mysqld.sock" --port="$MYPORT" \
  --bind-address=127.0.0.1 --pid-file="$MYDIR/mysqld.pid" --log-error="$MYDIR/err.log" --skip-name-resolve \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --innodb-buffer-pool-size=2G \
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-log-file-size=512M </dev/null >/dev/null 2>&1 &
for _ in $(seq 300); do myroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
myroot -e "CREATE DATABASE bench CHARACTER SET utf8mb4;
           CREATE USER 'bench'@'%' IDENTIFIED BY '$MYPW';
           GRANT ALL PRIVILEGES ON *.* TO 'bench'@'%';"

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN='' SLUICE_DEMO_DIR='' "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_for_sluice
slsql -c "CREATE CONNECTION my TYPE mysql OPTIONS (host '127.0.0.1', port $MYPORT, database 'bench', user 'bench', password '$MYPW', ssl_mode 'disabled')"

# The expression of `note`, by shape.
note_value() {
  case $1 in
    orders) echo "CONCAT('order note number ', seq)" ;;
    randtext) echo "MD5(RAND())" ;;
  esac
}

# Runs job $1 and checks that it succeeded with $2 rows.
run_job() {
  local out
  out=$(slsql -c "RUN ETL JOB $1" 2>/dev/null)
  IFS='|' read -r _ status rows _ <<<"$out"
  if [ "$status" != succeeded ] || [ "$rows" != "$2" ]; then
    echo "RUN ETL JOB $1: expected succeeded with $2 rows, got: $out" >&2
    exit 1
  fi
}

printf '%-8s %-11s %12s %10s %12s %8s %12s %8s %9s %9s\n' shape step rows seconds rows/s MB/s peak_RSS_MB cpu_s db_cpu_s vs_raw
for SHAPE in "${SHAPES[@]}"; do
for N in "${SIZES[@]}"; do
  myroot bench -e "DROP TABLE IF EXISTS t;
    CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamp(6) NOT NULL, customer_id int,
                    amount decimal(12,2), status varchar(16), note text) ENGINE=InnoDB;
    SET time_zone = '+00:00';
    INSERT INTO t SELECT seq, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq % 10000,
                         (seq % 100000) / 100, ELT(1 + seq % 4, 'open', 'paid', 'shipped', 'refunded'),
                         $(note_value "$SHAPE")
                  FROM seq_1_to_$N;
    CREATE INDEX t_created_at ON t (created_at);
    ANALYZE TABLE t;" >/dev/null
  MB=$(mytcp --quick bench -e 'select * from t' | wc -c | awk '{printf "%.1f", $1/1048576}')
  report() { # step rows seconds peak cpu db_cpus...
    printf '%-8s %-11s %12d %10.3f %12.0f %8.1f %12s %8s %9.2f %9.2f\n' "$SHAPE" "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" \
      "$(echo "$MB / $3" | bc -l)" "$4" "$5" "$(median "${@:6}")" "$(echo "$3 / $RAW_S" | bc -l)"
  }
  times=(); cpus=(); dbcpus=()
  for _ in $(seq "$REPEAT"); do
    d0=$(db_cpu_s); t0=$(now)
    client=$( { TIMEFORMAT='%U + %S'; time mytcp --quick bench -e 'select * from t' >/dev/null; } 2>&1 )
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)"); cpus+=("$(echo "$client" | bc -l)"); dbcpus+=("$(echo "$(db_cpu_s) - $d0" | bc -l)")
  done
  RAW_S=$(median "${times[@]}")
  report raw-read "$N" "$RAW_S" - "$(printf '%.2f' "$(median "${cpus[@]}")")" "${dbcpus[@]}"

  slsql -c "DROP ETL JOB IF EXISTS snap" >/dev/null 2>&1
  slsql -c "CREATE ETL JOB snap FROM my.bench.t INTO warehouse.t_snap_${SHAPE}_$N SNAPSHOT"
  for step in snapshot incremental; do
    times=(); cpus=(); dbcpus=(); peak=0
    for r in $(seq "$REPEAT"); do
      case $step in
        snapshot) job=snap ;;
        incremental) # a new job each time: its first run loads all rows
          job=inc
          slsql -c "DROP ETL JOB IF EXISTS inc" >/dev/null 2>&1
          slsql -c "CREATE ETL JOB inc FROM my.bench.t INTO warehouse.t_inc_${SHAPE}_${N}_$r INCREMENTAL BY created_at ALL" ;;
      esac
      reset_peak; c0=$(cpu_s); d0=$(db_cpu_s); t0=$(now); run_job "$job" "$N"; t1=$(now)
      times+=("$(echo "$t1 - $t0" | bc -l)"); cpus+=("$(echo "$(cpu_s) - $c0" | bc -l)")
      dbcpus+=("$(echo "$(db_cpu_s) - $d0" | bc -l)")
      p=$(peak_mb)
      (( p > peak )) && peak=$p
    done
    report "$step" "$N" "$(median "${times[@]}")" "$peak" "$(printf '%.2f' "$(median "${cpus[@]}")")" "${dbcpus[@]}"
  done

  if [ -n "${BENCH_PERF:-}" ]; then
    perf record -q -g -p "$SLUICE_PID" -o "$WORK/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 1 # perf attaches
    run_job snap "$N"
    kill -INT "$PERF_PID"; wait "$PERF_PID" || true
    echo "perf: top 10 self-time symbols of a snapshot run ($SHAPE, $N rows)"
    perf report -i "$WORK/perf.data" --no-children -g none --sort symbol --stdio 2>/dev/null \
      | awk '/^ +[0-9.]+%/ && n++ < 10 {sub(/[ -]+$/, ""); print}'
  fi
done
done
