#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and doc tests).
# Integration tests start their own PostgreSQL and MariaDB servers on free
# ports in temp dirs (see tests/it/common/mod.rs); when run as root they drop to
# the postgres/mysql users with runuser.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"

cargo test --workspace --all-targets
cargo test --workspace --doc
