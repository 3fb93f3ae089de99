#!/usr/bin/env bash
# Rebuild assets/samples/ (real photographs with known licences) from package registries.
#
#   pip install -r scripts/requirements-ref.txt   # Pillow does the downscaling
#   bash scripts/fetch_photos.sh
#
# Sources (versions pinned so the result is reproducible):
#   - PyPI scikit-image 0.26.0 wheel, skimage/data/  (CC0 / public domain photos)
#   - PyPI scikit-learn 1.9.1 wheel, sklearn/datasets/images/  (CC-BY 2.0)
#   - Debian lomiri-wallpapers-16.04 / -20.04 20.04.0-2, usr/share/backgrounds/
#     (CC-BY-4.0 / CC-BY-SA-3.0 / CC-BY-SA-4.0 / CC0-1.0, see the package copyright)
# Processing: images whose long side exceeds 2048 px are downscaled with Pillow LANCZOS
# to 2048 px on the long side (short side rounded to nearest) and re-encoded in their
# source format (JPEG quality 92, 4:2:0, baseline, no EXIF; ICC profile kept if present).
# Everything else, coffee.png included, is copied byte for byte.
# Licences and credits: assets/samples/LICENSES.md. Checksums: assets/samples/SHA256SUMS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/assets/samples"
PYTHON="${PYTHON:-python3}"
SKIMAGE_VERSION=0.26.0
SKLEARN_VERSION=1.9.1
LOMIRI_VERSION=20.04.0-2

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pip" "$WORK/deb" "$WORK/src"

echo "== pip download scikit-image $SKIMAGE_VERSION, scikit-learn $SKLEARN_VERSION"
"$PYTHON" -m pip download --no-deps --only-binary=:all: --quiet --dest "$WORK/pip" \
    "scikit-image==$SKIMAGE_VERSION" "scikit-learn==$SKLEARN_VERSION"

echo "== apt-get download lomiri-wallpapers-16.04, lomiri-wallpapers-20.04 $LOMIRI_VERSION"
debs=("lomiri-wallpapers-16.04=$LOMIRI_VERSION" "lomiri-wallpapers-20.04=$LOMIRI_VERSION")
if ! (cd "$WORK/deb" && apt-get download "${debs[@]}" 2>/dev/null); then
    echo "   (package lists missing or stale: running apt-get update)"
    apt-get update -qq
    (cd "$WORK/deb" && apt-get download "${debs[@]}")
fi
for deb in "$WORK"/deb/*.deb; do
    dpkg-deb -x "$deb" "$WORK/src/deb"
done

# name in assets/samples | source kind | path inside the package
MANIFEST="$WORK/manifest.txt"
cat > "$MANIFEST" <<'EOF'
coffee.png|skimage|skimage/data/coffee.png
astronaut.png|skimage|skimage/data/astronaut.png
chelsea.png|skimage|skimage/data/chelsea.png
rocket.jpg|skimage|skimage/data/rocket.jpg
hubble_deep_field.jpg|skimage|skimage/data/hubble_deep_field.jpg
china.jpg|sklearn|sklearn/datasets/images/china.jpg
flower.jpg|sklearn|sklearn/datasets/images/flower.jpg
Kleiber_by_Lukas_Baubkus.jpg|deb|usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg
friends_by_Aitzol_Berasategi.jpg|deb|usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg
Dragonfly_by_Bolly.jpg|deb|usr/share/backgrounds/Dragonfly_by_Bolly.jpg
Picture_0B_by_freespace.jpg|deb|usr/share/backgrounds/Picture_0B_by_freespace.jpg
Wine_by_Jakkub_Mede.jpg|deb|usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg
seeding_by_Clements_Engelhardt.jpg|deb|usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg
picosdeeuropa_by_Aitzol_Berasategi.jpg|deb|usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg
sunset_by_Aitzol_Berasategi.jpg|deb|usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg
life_by_Aitzol_Berasategi.jpg|deb|usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg
EOF

mkdir -p "$OUT"
find "$OUT" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' \) -delete

"$PYTHON" - "$WORK" "$OUT" "$MANIFEST" <<'PY'
import glob
import hashlib
import os
import shutil
import sys
import zipfile

from PIL import Image

work, out, manifest = sys.argv[1:4]
MAX_SIDE = 2048
wheels = {
    "skimage": glob.glob(os.path.join(work, "pip", "scikit_image-*.whl")),
    "sklearn": glob.glob(os.path.join(work, "pip", "scikit_learn-*.whl")),
}
for kind, found in wheels.items():
    if len(found) != 1:
        sys.exit(f"expected one {kind} wheel, found {found}")

sums = []
with open(manifest) as fh:
    rows = [line.strip().split("|") for line in fh if line.strip()]
for name, kind, inner in rows:
    src = os.path.join(work, "src", name)
    if kind == "deb":
        shutil.copyfile(os.path.join(work, "src", "deb", inner), src)
    else:
        with zipfile.ZipFile(wheels[kind][0]) as z, open(src, "wb") as dst:
            dst.write(z.read(inner))
    dst_path = os.path.join(out, name)
    with Image.open(src) as im:
        w, h = im.size
        fmt = im.format
        if max(w, h) <= MAX_SIDE:
            shutil.copyfile(src, dst_path)
            action = "copied"
        else:
            if fmt not in ("JPEG", "PNG"):
                sys.exit(f"{name}: unexpected format {fmt}")
            scale = MAX_SIDE / max(w, h)
            size = (MAX_SIDE, round(h * scale)) if w >= h else (round(w * scale), MAX_SIDE)
            icc = im.info.get("icc_profile")
            orientation = im.getexif().get(0x0112, 1)
            if orientation != 1:
                sys.exit(f"{name}: EXIF orientation {orientation} not handled")
            small = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
            opts = {"icc_profile": icc} if icc else {}
            if fmt == "JPEG":
                small.save(dst_path, "JPEG", quality=92, subsampling="4:2:0",
                           optimize=False, progressive=False, **opts)
            else:
                small.save(dst_path, "PNG", **opts)
            action = f"downscaled {w}x{h} -> {size[0]}x{size[1]}"
    with open(dst_path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    sums.append(f"{digest}  {name}")
    print(f"{name:42s} {action}")

with open(os.path.join(out, "SHA256SUMS"), "w") as fh:
    fh.write("\n".join(sorted(sums, key=lambda s: s.split("  ")[1])) + "\n")
PY

du -ch "$OUT"/*.jpg "$OUT"/*.png | tail -1
