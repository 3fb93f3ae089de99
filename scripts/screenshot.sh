#!/usr/bin/env bash
# Starts the real app (release build) under a virtual X display on the bundled sample album and
# saves a PNG of each view (grid, loupe, heatmap, 100 %, compare, shortcut sheet) into DIR
# (default docs/screenshots), through the app's own frame capture (src/app/screenshot.rs).
# Settings, library and caches go to a temporary home, so the user's own are not touched.
#   bash scripts/screenshot.sh [DIR] [WIDTHxHEIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
out="$(realpath -m "${1:-docs/screenshots}")"
size="${2:-1280x800}"
cargo build --release --locked --quiet
home="$(mktemp -d)"
album="$home/album"
cp -r assets/samples "$album"
export XDG_CONFIG_HOME="$home/config" XDG_DATA_HOME="$home/data" XDG_CACHE_HOME="$home/cache"
export KEEPERS_SCREENSHOTS="$out" KEEPERS_WINDOW_SIZE="$size" WINIT_UNIX_BACKEND=x11 album
unset WAYLAND_DISPLAY
mkdir -p "$out"
run() { timeout 600 target/release/keepers "$album"; }
if [ -n "${DISPLAY:-}" ] && [ -z "${CI:-}" ]; then
  run
else
  # -s: screen size; lavapipe renders wgpu on the CPU.
  xvfb-run -a -s "-screen 0 ${size}x24" bash -c "$(declare -f run); run"
fi
rm -rf "$home"
ls -1 "$out"
