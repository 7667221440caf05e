#!/usr/bin/env bash
# Change data capture at a steady rate: end-to-end lag of a CONTINUOUS job
# (a commit at the source to the change visible in the warehouse), the
# server's memory over time, and whether the stream keeps up.
#
#   bench/cdc_lag.sh [SECONDS]     default: 600 (the issue's 10 minutes)
#   BENCH_BIN=path                 measure this sluice binary instead of building one
#   BENCH_RATE=n                   changes per second (default 10000)
#   BENCH_MODE=HISTORY|MERGE       the job's mode (default HISTORY)
#   BENCH_ROWS=n                   rows of the table (default 100000)
#   BENCH_FLUSH_INTERVAL=text      the job's flush_interval (default '1 second')
#
# It creates `items` (id bigint primary key, amount numeric(12,2), note
# text, updated_at timestamptz) with BENCH_ROWS rows in a temporary
# PostgreSQL (wal_level=logical) and a `CDC <mode> CONTINUOUS` job into the
# local warehouse, waits for its first load, then runs pgbench at a fixed
# rate of transactions that each update 100 consecutive rows (BENCH_RATE
# changes per second) for SECONDS. Twice a second it samples
#   lag   now() minus the newest `_sluice_commit_ts` visible in the warehouse
#         (the source's commit time of the newest applied change): at a steady
#         rate, how far the destination is behind the source
#   rss   the server's resident memory, and of it the heap (`RssAnon`)
# and prints per-minute lines (p50/p95/max lag, RSS and heap low-high) and a summary: changes
# made and applied (HISTORY: the rows appended; MERGE: whether the table
# equals the source), changes/s, lag p50/p95/max, RSS at the first and last
# minute and its peak.
# Needs PostgreSQL (initdb, pg_ctl, psql, pgbench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_TOTAL=${1:-600}
RATE=${BENCH_RATE:-10000}
MODE=${BENCH_MODE:-HISTORY}
ROWS=${BENCH_ROWS:-100000}
FLUSH=${BENCH_FLUSH_INTERVAL:-1 second}
PG_EXTRA="-c shared_buffers=256MB -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 -c max_wal_size=4GB"
# shellcheck source=bench/lib.sh
source bench/lib.sh

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_for_sluice

pgsql -c "CREATE TABLE items (id bigint PRIMARY KEY, amount numeric(12,2), note text, updated_at timestamptz NOT NULL);
          INSERT INTO items SELECT g, (g % 100000) / 100.0, 'item note number ' || g, now() FROM generate_series(1, $ROWS) g;"
pgsql -c "VACUUM ANALYZE items"
slsql -c "CREATE CONNECTION bench TYPE postgres OPTIONS (host '127.0.0.1', port $PGPORT, database 'postgres', user 'postgres', sslmode 'disable')" \
      -c "CREATE ETL JOB stream FROM bench.public.items INTO warehouse.items_stream CDC $MODE CONTINUOUS WITH (flush_interval = '$FLUSH')"
TABLE=items_stream
[ "$MODE" = HISTORY ] && APPLIED_SQL="SELECT count(*) - $ROWS FROM warehouse.$TABLE" || APPLIED_SQL=
for _ in $(seq 600); do
  [ "$(slsql -c "SELECT count(*) FROM sluice.jobs WHERE name = 'stream' AND cdc_state = 'streaming'" 2>/dev/null)" = 1 ] && break
  sleep 0.5
done
echo "mode $MODE, $ROWS rows, $RATE changes/s for $SECONDS_TOTAL s, flush_interval '$FLUSH'"

# Each transaction updates 100 consecutive rows: RATE/100 transactions a second.
cat >"$WORK/update.sql" <<SQL
\set start random(1, $ROWS - 99)
UPDATE items SET amount = amount + 1, updated_at = clock_timestamp() WHERE id BETWEEN :start AND :start + 99;
SQL
TPS=$((RATE / 100))
"$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U postgres -c 2 -j 1 -R "$TPS" -T "$SECONDS_TOTAL" \
  -f "$WORK/update.sql" postgres >"$WORK/pgbench.log" 2>&1 &
PGBENCH_PID=$!
stop_pgbench() { kill "$PGBENCH_PID" 2>/dev/null; }
CLEANUP_EXTRA=stop_pgbench

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }
anon_mb() { awk '/RssAnon/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }
: >"$WORK/samples"
start=$(now)
while kill -0 "$PGBENCH_PID" 2>/dev/null; do
  lag=$(slsql -c "SELECT extract(epoch FROM now() - max(_sluice_commit_ts)) FROM warehouse.$TABLE" 2>/dev/null || echo)
  echo "$(echo "$(now) - $start" | bc -l) ${lag:-nan} $(rss_mb) $(anon_mb)" >>"$WORK/samples"
  sleep 0.5
done
wait "$PGBENCH_PID" || true
made=$(grep -oP 'number of transactions actually processed: \K[0-9]+' "$WORK/pgbench.log" || echo 0)
made=$((made * 100))
# Let the stream catch up, then count what it applied.
sleep 5
if [ -n "$APPLIED_SQL" ]; then
  applied=$(slsql -c "$APPLIED_SQL")
else # MERGE: the table equals the source
  [ "$(pgsql -At -c 'SELECT count(*), sum(amount) FROM items')" = "$(slsql -c "SELECT count(*), sum(amount) FROM warehouse.$TABLE")" ] \
    && applied="all (the table equals the source)" || applied="NOT ALL (the table differs from the source)"
fi

python3 - "$WORK/samples" "$SECONDS_TOTAL" "$made" "$applied" <<'PY'
import math, sys
path, total, made, applied = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
samples = []
for line in open(path):
    t, lag, rss, anon = line.split()
    samples.append((float(t), float(lag) if lag != "nan" else math.nan, int(rss), int(anon)))
# The first samples may come before the first change: lag is measured from the workload's start on.
def pct(values, p):
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(p / 100 * len(values)))]
# Memory per minute as its low and high: the low is what the server keeps
# between batches (flat if nothing accumulates), the high a batch's working
# set (a fold of the deltas into the table reads and writes it whole).
print(f"{'minute':>6} {'lag_p50_s':>10} {'lag_p95_s':>10} {'lag_max_s':>10} {'rss_mb':>11} {'heap_mb':>11}")
minutes = int(math.ceil(total / 60))
for m in range(minutes):
    part = [s for s in samples if m * 60 <= s[0] < (m + 1) * 60]
    if not part:
        continue
    lags = [s[1] for s in part if s[0] >= 5]
    rss = f"{min(s[2] for s in part)}-{max(s[2] for s in part)}"
    heap = f"{min(s[3] for s in part)}-{max(s[3] for s in part)}"
    print(f"{m + 1:>6} {pct(lags, 50):>10.2f} {pct(lags, 95):>10.2f} {pct(lags, 100):>10.2f} {rss:>11} {heap:>11}")
lags = [s[1] for s in samples if s[0] >= 5]
rss = [s[2] for s in samples]
first = [s[2] for s in samples if s[0] < 60] or rss
last = [s[2] for s in samples if s[0] >= total - 60] or rss
print(f"changes made {made} ({made / total:.0f}/s), applied {applied}")
print(f"lag p50 {pct(lags, 50):.2f} s, p95 {pct(lags, 95):.2f} s, max {pct(lags, 100):.2f} s")
print(f"RSS first minute {max(first)} MB, last minute {max(last)} MB, peak {max(rss)} MB")
low = lambda part: min(s[3] for s in samples if part(s[0])) if any(part(s[0]) for s in samples) else 0
print(f"heap low first minute {low(lambda t: t < 60)} MB, last minute {low(lambda t: t >= total - 60)} MB")
PY
