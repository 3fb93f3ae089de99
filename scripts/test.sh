#!/usr/bin/env bash
# Runs Keepers' whole test suite on a fresh machine (Rust installed).
# Installs what the tests need itself, then builds once with optimisations (the app, the
# benchmarks and the tests share that build: debug candle is ~15x slower).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build and tests need: a C compiler (SQLite is compiled in), cmake and
# nasm (libjpeg-turbo is built from source with its SIMD code, see Cargo.toml). The UI tests
# will add xvfb and mesa-vulkan-drivers here. The permission tests use setpriv (util-linux)
# when run as root.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo test --release --locked "$@"
