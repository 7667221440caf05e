# Shared set-up of the bench scripts (sourced, not run): the release binary
# (or $BENCH_BIN), a throw-away PostgreSQL on a free port with extra server
# settings in $PG_EXTRA (none with BENCH_NO_PG=1), a free port for Sluice,
# clean-up on exit (plus $CLEANUP_EXTRA), and psql helpers for both. Sets
# BIN, PGBIN, WORK, PGPORT, SLPORT, SLUICE_PID.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN # a binary built elsewhere, e.g. to compare two builds
else
  cargo build --release --quiet
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
cleanup() {
  $CLEANUP_EXTRA || true
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
