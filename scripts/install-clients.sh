#!/usr/bin/env bash
# Installs the clients the client-compatibility tests (tests/it/clients.rs)
# drive against a real sluice: psycopg2, psycopg 3, SQLAlchemy 2 and pandas in
# one venv, and node-postgres (npm `pg`) under node/. Idempotent and quick once
# done; both live in SLUICE_CLIENTS_DIR (default ~/.cache/sluice-clients) so CI
# runs reuse them. Needs python3 with venv and npm (.ci/run installs them, and
# pgjdbc from Debian's libpostgresql-jdbc-java). Prints the directory.
set -euo pipefail
dir=${SLUICE_CLIENTS_DIR:-$HOME/.cache/sluice-clients}
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ ! -e "$dir/venv/.installed" ]]; then
    rm -rf "$dir/venv"
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q --disable-pip-version-check \
        'psycopg2-binary>=2.9' 'psycopg[binary]>=3.1' 'SQLAlchemy>=2.0,<3' 'pandas>=2'
    touch "$dir/venv/.installed"
fi

if [[ ! -e "$dir/node/.installed" ]]; then
    rm -rf "$dir/node"
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" 'pg@^8' >&2
    touch "$dir/node/.installed"
fi
echo "$dir"
