# Sourced by bench/run.sh: a Python venv with DuckDB 1.4.4 and its postgres
# extension wheel (newer DuckDB versions download extensions at run time,
# which this machine cannot), in ~/.cache/sluice-bench. Sets DUCKDB_PY.
DUCKDB_VENV="$HOME/.cache/sluice-bench/duckdb-venv"
if ! "$DUCKDB_VENV/bin/python" -c 'import duckdb, duckdb_ext' 2>/dev/null; then
  python3 -m venv "$DUCKDB_VENV"
  "$DUCKDB_VENV/bin/pip" install -q --disable-pip-version-check duckdb==1.4.4 'duckdb-ext[postgres]==0.1.2'
fi
DUCKDB_PY="$DUCKDB_VENV/bin/python"
