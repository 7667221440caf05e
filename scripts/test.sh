#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and doc tests).
# Integration tests start their own PostgreSQL and MariaDB servers on free
# ports in temp dirs (see tests/it/common/mod.rs); when run as root they drop to
# the postgres/mysql users with runuser.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"

# The `cluster` build (Ballista, docs/cluster.md) is the one tested: its
# binary is the default one plus `sluice scheduler`, `sluice executor` and
# `--cluster`, which tests/it/cluster.rs runs as separate processes.
cargo test --workspace --all-targets --features sluice/cluster
cargo test --workspace --doc --features sluice/cluster
