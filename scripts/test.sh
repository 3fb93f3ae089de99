#!/usr/bin/env bash
# Runs Keepers' whole test suite on a fresh machine (Rust installed).
# Installs what the tests need itself, then builds once with optimisations (the app, the
# benchmarks and the tests share that build: debug candle is ~15x slower).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build needs (C compiler, cmake, nasm): installed when missing. The UI
# tests will add xvfb and mesa-vulkan-drivers. The permission tests use setpriv (util-linux)
# when run as root.
source scripts/deps.sh

cargo test --release --locked "$@"
