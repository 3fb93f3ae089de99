#!/usr/bin/env bash
# Album library speed: `keepers bench library` on a folder of photos, with libjpeg-turbo's djpeg
# on the same files for the full-decode comparison, plus a 10,000-file scan.
#
#   scripts/bench_library.sh [DIR]
#
# 1. installs libjpeg-turbo-progs (djpeg, cjpeg) with apt-get if djpeg is missing;
# 2. cargo build --release (skipped with SKIP_BUILD=1);
# 3. large JPEGs: DIR if given, else 11-12 MP versions of the bundled 2048-pixel samples made
#    with djpeg -scale 2/1 | cjpeg -quality 92 in a temporary folder (never committed);
# 4. runs `keepers bench library` on them: thumbnails/s cold and warm, thumbnail decode vs full
#    decode + resize, full decode MP/s beside djpeg;
# 5. builds a 10,000-file album (small JPEG copies in 100 folders) and runs the scan part.
#
# Timings are disturbed by anything else running (e.g. a cargo build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KEEPERS="$ROOT/target/release/keepers"

if ! command -v djpeg >/dev/null 2>&1; then
  echo "== installing libjpeg-turbo-progs (djpeg)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libjpeg-turbo-progs
fi

if [[ "${SKIP_BUILD:-0}" == "1" ]]; then
  echo "== SKIP_BUILD=1: using the existing $KEEPERS"
else
  echo "== cargo build --release"
  cargo build --release --locked
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ $# -ge 1 ]]; then
  BIG="$1"
else
  BIG="$TMP/big"
  mkdir -p "$BIG"
  echo "== making 12 MP JPEGs from assets/samples in $BIG"
  for f in assets/samples/*.jpg; do
    # The 2048-pixel samples (the 640-pixel ones are under 300 kB).
    [[ "$(wc -c < "$f")" -ge 300000 ]] || continue
    djpeg -scale 2/1 "$f" | cjpeg -quality 92 -sample 2x2 > "$BIG/$(basename "$f" .jpg)-x2.jpg"
  done
fi

echo "== keepers bench library $BIG"
"$KEEPERS" bench library "$BIG"

echo "== 10,000-file album (small JPEG copies in 100 folders)"
MANY="$TMP/many"
djpeg -scale 1/8 assets/samples/rocket.jpg | cjpeg -quality 85 > "$TMP/small.jpg"
for d in $(seq -w 0 99); do
  mkdir -p "$MANY/day$d"
  for i in $(seq -w 0 99); do
    cp "$TMP/small.jpg" "$MANY/day$d/IMG_$d$i.JPG"
  done
done
sync
"$KEEPERS" bench library "$MANY" --max-files 0
