#!/usr/bin/env bash
# Every figure of issue #16 in one command: builds the release binary once,
# then runs, one after the other on the same machine state,
#   bench/run.sh       PostgreSQL -> warehouse, every table shape, against the
#                      raw binary COPY and DuckDB (BENCH_ROWS rows)
#   bench/mysql.sh     MariaDB -> warehouse against `mariadb --quick` (BENCH_ROWS rows)
#   bench/bigquery.sh  the same run into BigQuery (the local fake) against the
#                      warehouse (BENCH_ROWS rows)
#   bench/scale.sh     many jobs: listings, lookups, the scheduler's burst, the
#                      catalog's size and the server's memory (BENCH_JOBS)
# and prints each one's table under a heading. docs/performance.md explains
# every column.
#
#   bench/all.sh                 BENCH_ROWS (default 1000000), BENCH_JOBS (default "1000 10000")
#   BENCH_BIN=path               measure this sluice binary instead of building one
# Every variable of the scripts above (BENCH_REPEAT, BENCH_SHAPES, BENCH_RUNS,
# BENCH_DUCKDB, ...) passes through. Needs an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release --quiet -p sluice
  export BENCH_BIN="$CARGO_TARGET_DIR/release/sluice"
fi
ROWS=${BENCH_ROWS:-1000000}
# shellcheck disable=SC2206 # a list of sizes
JOBS=(${BENCH_JOBS:-1000 10000})
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), binary $BENCH_BIN"
echo
echo "## PostgreSQL -> warehouse (bench/run.sh $ROWS)"
bench/run.sh "$ROWS"
echo
echo "## MariaDB -> warehouse (bench/mysql.sh $ROWS)"
bench/mysql.sh "$ROWS"
echo
echo "## BigQuery against the warehouse (bench/bigquery.sh $ROWS)"
bench/bigquery.sh "$ROWS"
echo
echo "## Many jobs (bench/scale.sh ${JOBS[*]})"
bench/scale.sh "${JOBS[@]}"
