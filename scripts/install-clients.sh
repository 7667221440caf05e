#!/usr/bin/env bash
# Installs the Python clients the client-compatibility tests (tests/it/clients.rs)
# drive against a real sluice: psycopg2, psycopg 3, SQLAlchemy 2 and pandas in
# one venv. Idempotent and quick once done; the venv lives in
# SLUICE_CLIENTS_DIR (default ~/.cache/sluice-clients) so CI runs reuse it.
# Needs python3 with venv (.ci/run installs it). Prints the directory.
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
echo "$dir"
