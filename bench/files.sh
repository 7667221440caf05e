#!/usr/bin/env bash
# File-source benchmark: Parquet and gzipped CSV objects in moto (S3) loaded
# into the local warehouse by SNAPSHOT jobs, next to the raw read throughput
# of the same objects (every object read whole over HTTP, as `aws s3 cp` to
# /dev/null would) measured in the same run.
#
#   bench/files.sh [MB]     size of each format in MB (default: 1024); files of 64 MB
#   BENCH_BIN=path          measure this sluice binary instead of building one
#
# Prints per format: object MB, rows, seconds, MB/s (object bytes per
# second), the server's peak RSS during the load (VmHWM) and the ratio to the
# raw read. Targets (issue #11): Parquet within 1.5x of the raw read, peak RSS
# under 200 MB whatever the file count. Needs python3, and the emulators of
# scripts/install-emulators.sh (moto and boto3; pyarrow from the bqemulator
# venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
MB=${1:-1024}

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build --release --quiet
  BIN="$CARGO_TARGET_DIR/release/sluice"
fi
TOOLS=$(bash scripts/install-emulators.sh)
PY="$TOOLS/bqemu-venv/bin/python"  # pyarrow
S3PY="$TOOLS/moto-venv/bin/python" # boto3
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/sluice-bench-files-XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PORT=$(free_port)
SLPORT=$(free_port)
MOTO_PID=
SLUICE_PID=
cleanup() {
  [ -n "$SLUICE_PID" ] && kill "$SLUICE_PID" 2>/dev/null || true
  [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TOOLS/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
for _ in $(seq 100); do curl -s "$ENDPOINT" >/dev/null 2>&1 && break; sleep 0.1; done

slsql() { PGPASSWORD=bench "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$SLPORT" -U admin -d sluice -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
peak_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }

echo "writing ${MB} MB of Parquet and ${MB} MB of gzipped CSV to moto ..." >&2
read -r PQ_ROWS CSV_ROWS < <("$PY" bench/files.py make "$WORK/objects" "$MB")
"$S3PY" bench/files.py put "$ENDPOINT" bench "$WORK/objects"
rm -rf "$WORK/objects"

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" --data-dir "$WORK/sluice" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 100); do slsql -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
slsql -c "CREATE CONNECTION bench TYPE s3 OPTIONS (bucket 'bench', endpoint '$ENDPOINT', region 'us-east-1', access_key_id 'bench', secret_access_key 'bench')"

printf '%-12s %10s %12s %10s %10s %12s %10s\n' step MB rows seconds MB/s peak_RSS_MB vs_raw
for format in pq csv; do
  rows=$PQ_ROWS; [ "$format" = csv ] && rows=$CSV_ROWS
  read -r BYTES RAW_S < <("$S3PY" bench/files.py read "$ENDPOINT" bench "$format")
  OBJ_MB=$(echo "$BYTES / 1048576" | bc -l)
  printf '%-12s %10.1f %12s %10.3f %10.1f %12s %10s\n' "raw-$format" "$OBJ_MB" - "$RAW_S" "$(echo "$OBJ_MB / $RAW_S" | bc -l)" - -
  slsql -c "CREATE ETL JOB load_$format FROM bench.files.$format INTO warehouse.load_$format SNAPSHOT"
  echo 5 > "/proc/$SLUICE_PID/clear_refs"
  t0=$(now); loaded=$(slsql -c "RUN ETL JOB load_$format" 2>/dev/null | cut -d'|' -f3); t1=$(now)
  secs=$(echo "$t1 - $t0" | bc -l)
  [ "$loaded" = "$rows" ] || { echo "load_$format loaded $loaded rows, expected $rows" >&2; exit 1; }
  printf '%-12s %10.1f %12s %10.3f %10.1f %12s %10.2f\n' "sluice-$format" "$OBJ_MB" "$rows" "$secs" \
    "$(echo "$OBJ_MB / $secs" | bc -l)" "$(peak_mb)" "$(echo "$secs / $RAW_S" | bc -l)"
done
