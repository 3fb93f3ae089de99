#!/usr/bin/env bash
# Builds Keepers (optimised, once) and runs it with the given arguments, installing the
# system build tools first if they are missing (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo run --release --locked --quiet -- "$@"
