#!/usr/bin/env bash
# Installs the object-store emulators the cloud warehouse tests start:
# moto (S3) in a Python venv, with boto3 and azure-storage-blob to create
# buckets and containers, and Azurite (Azure Blob) from npm. Idempotent and
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
echo "$dir"
