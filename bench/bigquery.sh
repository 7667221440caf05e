#!/usr/bin/env bash
# The BigQuery path against the local warehouse (issue #16: a run into
# BigQuery should take at most 1.2x the same run into the warehouse): a
# SNAPSHOT of one PostgreSQL table (the `orders` shape of bench/run.sh) into
# the local fake of BigQuery on loopback, which checks each load's columns
# but keeps no rows, and into the warehouse, alternating. Prints the median
# wall time, Sluice's and the fake's CPU seconds and the ratio.
#
#   bench/bigquery.sh [ROWS]     default: 1000000
#   BENCH_BIN=path               measure this sluice binary instead of building one
#   BENCH_RUNS=n                 runs of each (default 5)
#
# The harness is the integration tests' (tests/it/bench_bigquery.rs, an
# ignored test): it starts PostgreSQL and the fake; this script builds the
# release binary it measures and the test binary (debug: the fake keeps no
# rows, so its build does not weigh on the figures). peak_rss_mb is the
# server's peak resident memory (VmHWM, reset before each run) over the runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build --release --quiet -p sluice
  BIN="$CARGO_TARGET_DIR/release/sluice"
fi
TESTS=$(cargo test --quiet --test it --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')
BENCH_ROWS=${1:-1000000} SLUICE_TEST_BIN=$BIN "$TESTS" bench_bigquery --ignored --nocapture --test-threads 1 2>&1 |
  sed -E 's/^test [^ ]+ \.\.\. //' | grep -v -E '^(running [0-9]+ test|test result|ok$|$)'
