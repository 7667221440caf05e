#!/usr/bin/env bash
# Installs the clients the client-compatibility tests (tests/it/clients.rs,
# tests/it/migration_tools.rs) drive against a real sluice: psycopg2,
# psycopg 3, SQLAlchemy 2, pandas and Alembic in one venv, node-postgres
# (npm `pg`) under node/, and the migration tools dbmate (the npm package
# bundles its binary) and node-pg-migrate under migrate/. Idempotent and quick once
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
if [[ ! -e "$dir/venv/.alembic" ]]; then
    "$dir/venv/bin/pip" install -q --disable-pip-version-check 'alembic>=1.13,<2'
    touch "$dir/venv/.alembic"
fi

if [[ ! -e "$dir/migrate/.installed" ]]; then
    rm -rf "$dir/migrate"
    mkdir -p "$dir/migrate"
    npm install --silent --no-audit --no-fund --prefix "$dir/migrate" \
        'pg@^8' 'dbmate@^2' 'node-pg-migrate@^9' >&2
    touch "$dir/migrate/.installed"
fi
echo "$dir"
