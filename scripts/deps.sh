#!/usr/bin/env bash
# Installs the system packages Keepers builds with, when missing (Debian/Ubuntu): a C compiler
# (SQLite is compiled in), cmake and nasm (libjpeg-turbo is built from source with its SIMD
# code, see Cargo.toml). Sourced by scripts/run.sh and scripts/test.sh.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing build tools: ${need[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
