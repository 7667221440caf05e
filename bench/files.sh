#!/usr/bin/env bash
# File-source benchmark: Parquet and gzipped CSV files loaded into the local
# warehouse by SNAPSHOT jobs, from a `local` connection (a directory) and
# from moto's S3, each next to the raw read limit of the same files measured
# in the same run: `cat` to /dev/null (Parquet), `zcat` to /dev/null (the
# gzip limit), and every object read whole over HTTP with a plain GET loop
# (as `aws s3 cp` to /dev/null would), and into local files (as `aws s3 cp
# --recursive` to a directory would); and the floor of a durable load, the
# files copied to another directory and fsynced (`cp` + `sync`).
#
#   bench/files.sh [MB [FILE_MB] | quick]
#                                 MB of each format (default 1024) in files of
#                                 FILE_MB (default 64); `quick` is 32 MB in
#                                 files of 4 MB
#   BENCH_BIN=path                measure this sluice binary instead of
#                                 building a release one
#   PARALLEL_READS=n              the connections' parallel_reads (default 4)
#   FORMATS="pq csv"              the formats to load (default both)
#
# Prints per step: MB (file bytes), rows, seconds, rows/s, MB/s, the server's
# RSS before the load and its peak during the load (VmHWM, reset before each
# load) and the ratio of the load's time to its raw read's (`cat`, or `zcat`
# for gzip, for the directory; the GET loop for S3; the `s3cp` row's ratio is
# its time over the GET loop's). Targets (issue #11): Parquet within 1.5x
# of the raw read, peak RSS under 200 MB whatever the file count. Needs
# python3 and the emulators of scripts/install-emulators.sh (moto and boto3;
# pyarrow from the bqemulator venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MB=${1:-1024}
FILE_MB=${2:-64}
PARALLEL_READS=${PARALLEL_READS:-4}
if [ "$MB" = quick ]; then MB=32 FILE_MB=4; fi
BENCH_NO_PG=1
# shellcheck source=bench/lib.sh
source bench/lib.sh

TOOLS=$(bash scripts/install-emulators.sh)
PY="$TOOLS/bqemu-venv/bin/python"  # pyarrow
S3PY="$TOOLS/moto-venv/bin/python" # boto3
MOTO_PORT=$(free_port)
MOTO_PID=
stop_moto() { [ -z "$MOTO_PID" ] || kill "$MOTO_PID" 2>/dev/null; }
CLEANUP_EXTRA=stop_moto
"$TOOLS/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
for _ in $(seq 100); do curl -s "$ENDPOINT" >/dev/null 2>&1 && break; sleep 0.1; done

FILES="$WORK/files"
echo "writing ${MB} MB of Parquet and ${MB} MB of gzipped CSV (files of ${FILE_MB} MB) ..." >&2
read -r PQ_ROWS CSV_ROWS < <("$PY" bench/files.py make "$FILES" "$MB" "$FILE_MB")
"$S3PY" bench/files.py put "$ENDPOINT" bench "$FILES"

SLUICE_PASSWORD=bench SLUICE_METRICS_LISTEN= SLUICE_DEMO_DIR= "$BIN" serve --listen "127.0.0.1:$SLPORT" \
  --data-dir "$WORK/sluice" --allowed-paths "$FILES" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_for_sluice
slsql -c "CREATE CONNECTION disk TYPE local OPTIONS (path '$FILES', parallel_reads $PARALLEL_READS)"
slsql -c "CREATE CONNECTION bucket TYPE s3 OPTIONS (bucket 'bench', endpoint '$ENDPOINT', region 'us-east-1', access_key_id 'bench', secret_access_key 'bench', parallel_reads $PARALLEL_READS)"

peak_mb() { peak_mb_of "$SLUICE_PID"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SLUICE_PID/status"; }
seconds_of() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
row() { # step MB rows seconds start peak ratio
  local rps=-
  [ "$3" = - ] || rps=$(printf '%.0f' "$(echo "$3 / $4" | bc -l)")
  printf '%-16s %9.1f %11s %9.3f %11s %9.1f %12s %12s %8s\n' "$1" "$2" "$3" "$4" "$rps" "$(echo "$2 / $4" | bc -l)" "$5" "$6" "$7"
}
# Loads `format` from connection `conn`; prints its row against `raw` seconds.
load() {
  local conn=$1 format=$2 rows=$3 mb=$4 raw=$5 job="${1}_${2}" loaded secs t0 t1 start
  slsql -c "CREATE ETL JOB $job FROM $conn.files.$format INTO warehouse.$job SNAPSHOT"
  start=$(rss_mb)
  echo 5 >"/proc/$SLUICE_PID/clear_refs"
  t0=$(now)
  loaded=$(slsql -c "RUN ETL JOB $job" 2>"$WORK/run.err" | cut -d'|' -f3) || {
    echo "RUN ETL JOB $job failed:" >&2
    grep -v NOTICE "$WORK/run.err" >&2
    exit 1
  }
  t1=$(now)
  [ "$loaded" = "$rows" ] || { echo "$job loaded $loaded rows, expected $rows" >&2; exit 1; }
  secs=$(echo "$t1 - $t0" | bc -l)
  row "sluice-$conn-$format" "$mb" "$rows" "$secs" "$start" "$(peak_mb)" "$(printf '%.2f' "$(echo "$secs / $raw" | bc -l)")"
}

printf '%-16s %9s %11s %9s %11s %9s %12s %12s %8s\n' step MB rows seconds rows/s MB/s start_RSS_MB peak_RSS_MB vs_raw
for format in ${FORMATS:-pq csv}; do
  rows=$PQ_ROWS
  [ "$format" = csv ] && rows=$CSV_ROWS
  mb=$(du -bc "$FILES/$format"/* | tail -1 | awk '{print $1 / 1048576}')
  cat_s=$(seconds_of cat "$FILES/$format"/*)
  row "cat-$format" "$mb" - "$cat_s" - - -
  # The floor of any durable load: the same bytes copied and fsynced.
  mkdir -p "$WORK/synced"
  synced_s=$(seconds_of sh -c "cp $FILES/$format/* $WORK/synced/ && sync $WORK/synced/* $WORK/synced")
  rm -rf "$WORK/synced"
  row "cp+fsync-$format" "$mb" - "$synced_s" - - -
  raw=$cat_s
  if [ "$format" = csv ]; then
    raw=$(seconds_of sh -c "zcat $FILES/$format/* > /dev/null")
    row "zcat-$format" "$mb" "$rows" "$raw" - - -
  fi
  load disk "$format" "$rows" "$mb" "$raw"
  read -r _ get_s < <("$S3PY" bench/files.py read "$ENDPOINT" bench "$format")
  row "get-$format" "$mb" - "$get_s" - - -
  mkdir -p "$WORK/cp"
  read -r _ cp_s < <("$S3PY" bench/files.py read "$ENDPOINT" bench "$format" "$WORK/cp")
  rm -rf "$WORK/cp"
  row "s3cp-$format" "$mb" - "$cp_s" - - "$(printf '%.2f' "$(echo "$cp_s / $get_s" | bc -l)")"
  load bucket "$format" "$rows" "$mb" "$get_s"
done
