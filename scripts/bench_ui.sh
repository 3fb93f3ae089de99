#!/usr/bin/env bash
# Frame times while the worker scores an album: the real app (release build, wgpu on lavapipe
# under Xvfb where there is no display) opens an album of N photos (hard links to the bundled
# samples under distinct names, so every one is decoded, thumbnailed and scored), repaints
# continuously while moving one photo per frame, and when scoring is over prints the UI thread's
# time per frame and the interval between frames. Library, caches and settings go to a
# temporary home.
#   bash scripts/bench_ui.sh [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
n="${1:-1000}"
cargo build --release --locked --quiet
home="$(mktemp -d)"
album="$home/album"
mkdir -p "$album"
mapfile -t samples < <(ls assets/samples/*.jpg assets/samples/*.png)
for ((i = 0; i < n; i++)); do
  s="${samples[$((i % ${#samples[@]}))]}"
  ln "$s" "$album/$(printf '%05d' "$i")_$(basename "$s")"
done
export XDG_CONFIG_HOME="$home/config" XDG_DATA_HOME="$home/data" XDG_CACHE_HOME="$home/cache"
export KEEPERS_BENCH_FRAMES="$home/report.txt" WINIT_UNIX_BACKEND=x11 album
unset WAYLAND_DISPLAY
run() { timeout 3000 target/release/keepers "$album"; }
if [ -n "${DISPLAY:-}" ] && [ -z "${CI:-}" ]; then run; else xvfb-run -a -s "-screen 0 1280x800x24" bash -c "$(declare -f run); run"; fi
echo "album of $n photos, $(nproc) cores"
cat "$home/report.txt"
rm -rf "$home"
