#!/usr/bin/env bash
# Placeholder replaced as features land.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p drgnfly -- --version
