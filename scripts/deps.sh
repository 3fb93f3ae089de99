#!/usr/bin/env bash
# Installs the system packages Keepers builds and runs with, when missing (Debian/Ubuntu):
# - build: a C compiler (SQLite is compiled in), cmake and nasm (libjpeg-turbo is built from
#   source with its SIMD code, see Cargo.toml);
# - the window and its tests: the Vulkan loader and Mesa's drivers (lavapipe renders the UI
#   tests and snapshots on the CPU), X11/xkb client libraries (winit loads them at run time),
#   and Xvfb for a virtual display where there is none (scripts/screenshot.sh, CI).
# Sourced by scripts/run.sh, scripts/test.sh and scripts/screenshot.sh.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
for pkg in mesa-vulkan-drivers libvulkan1 libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libgl1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing system packages: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
