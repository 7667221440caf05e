# Shared set-up of the bench scripts (sourced, not run): the release binary
# (or $BENCH_BIN), a throw-away PostgreSQL on a free port with extra server
# settings in $PG_EXTRA (none with BENCH_NO_PG=1), a free port for Sluice,
# clean-up on exit (plus $CLEANUP_EXTRA and the processes given to
# track_pid), psql helpers for both, a server starter, and per-process
# measures (peak RSS, CPU seconds). Sets BIN, PGBIN, WORK, PGPORT, SLPORT,
# SLUICE_PID.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN # a binary built elsewhere, e.g. to compare two builds
else
  # shellcheck disable=SC2086 # BENCH_FEATURES: a bench's cargo features, e.g. cluster
  cargo build --release --quiet -p sluice ${BENCH_FEATURES:+--features $BENCH_FEATURES}
  BIN="$CARGO_TARGET_DIR/release/sluice"
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/sluice-bench-XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PGPORT=
if [ -z "${BENCH_NO_PG:-}" ]; then # BENCH_NO_PG=1: a bench without a PostgreSQL source
  PGPORT=$(free_port)
  mkdir -p "$WORK/pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
  as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/pg.log" \
    -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off ${PG_EXTRA:-}" -w start >/dev/null
fi

SLPORT=$(free_port)
SLUICE_PID=
CLEANUP_EXTRA=: # a bench's own clean-up (a command), run first
BENCH_PIDS=()   # other background processes of a bench (track_pid), killed on exit
track_pid() { BENCH_PIDS+=("$1"); }
cleanup() {
  $CLEANUP_EXTRA || true
  local pid
  for pid in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  [ -n "$SLUICE_PID" ] && kill "$SLUICE_PID" 2>/dev/null || true
  [ -n "$PGPORT" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pgsql() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
slsql() { PGPASSWORD=bench "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$SLPORT" -U admin -d sluice -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
# Waits (up to 10 s) until the Sluice just started answers.
wait_for_sluice() { for _ in $(seq 100); do slsql -c 'select 1' >/dev/null 2>&1 && return; sleep 0.1; done; }
# Starts `sluice serve` on SLPORT with the data dir $1 and the further
# arguments (its log: $1.log), sets SLUICE_PID and SLUICE_DIR and waits until it answers;
# fails with its log if it does not.
start_sluice() {
  local dir=$1; shift
  # shellcheck disable=SC2034 # read by the bench (its log: $SLUICE_DIR.log)
  SLUICE_DIR=$dir
  SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN='' SLUICE_DEMO_DIR='' "$BIN" serve --listen "127.0.0.1:$SLPORT" \
    --data-dir "$dir" "$@" >"$dir.log" 2>&1 &
  SLUICE_PID=$!
  wait_for_sluice
  slsql -c 'select 1' >/dev/null 2>&1 || { echo "sluice serve did not start:" >&2; tail -20 "$dir.log" >&2; exit 1; }
}
stop_sluice() { kill "$SLUICE_PID" 2>/dev/null || true; wait "$SLUICE_PID" 2>/dev/null || true; SLUICE_PID=; }
# Waits (up to 60 s) until 127.0.0.1:$1 accepts connections; fails otherwise.
wait_for_port() {
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
  echo "nothing listens on port $1" >&2; exit 1
}

# Per-process measures, by PID: the peak RSS is reset by reset_peak_of and
# read back (VmHWM, MB) by peak_mb_of, rss_mb_of is the RSS now; cpu_of is the CPU seconds (user +
# system) used so far, and tree_cpu_of the same for a process and its
# children, live and exited (e.g. a postmaster and its backends).
reset_peak_of() { echo 5 > "/proc/$1/clear_refs"; }
peak_mb_of() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mb_of() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
tree_cpu_of() {
  local pids
  pids=$(ps -o pid= --ppid "$1" | tr -d ' ' | sed 's|.*|/proc/&/stat|')
  # shellcheck disable=SC2086 # one path per child
  { cat "/proc/$1/stat" $pids 2>/dev/null || true; } | # a child may exit meanwhile
    awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); s += $12 + $13 + $14 + $15} END {printf "%.2f", s / hz}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
