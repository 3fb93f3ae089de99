#!/usr/bin/env bash
# Runs Keepers' whole test suite on a fresh machine (Rust installed).
# Installs what the tests need itself, then builds once with optimisations (the app, the
# benchmarks and the tests share that build: debug candle is ~15x slower).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need (none yet beyond a C compiler; the UI tests will add
# xvfb and mesa-vulkan-drivers here).
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo test --release --locked "$@"
