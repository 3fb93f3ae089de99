#!/usr/bin/env python3
"""Reference BRISQUE features and scores from PyPI `brisque` 0.2.0, for tests/brisque.rs.

BRISQUE: Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the Spatial
Domain", IEEE TIP 21(12), 2012. The package ships the LIVE-IQA-trained epsilon-SVR
(`models/svm.txt`, libsvm text format, RBF kernel) and the feature ranges it was trained on
(`models/normalize.pickle`, {'min_': [36], 'max_': [36]}).

What this script does:
  1. Converts the model to files the Rust port reads (weights/brisque/): `svm.txt` copied
     byte for byte (libsvm's own plain-text format), `normalize.json` (the pickle's two lists),
     and `SHA256SUMS`. It checks that an SVR prediction written out here in numpy from those
     files equals libsvm's own prediction for every photo.
  2. For every bundled photo (assets/samples/*.jpg|png), decoded with Pillow (EXIF orientation
     applied, RGB8), writes the package's 36 features and its score to
     tests/data/brisque_reference.json, with the sha256 of the RGB8 pixels (so the Rust test
     knows it is comparing the same input) and of the float64 grey image and its half-size
     version, plus the 7x7 Gaussian window as exact hex floats (bit-exactness checks of the
     steps before the distribution fits).
  3. With `--livec CSV`: the package's SRCC/PLCC of -BRISQUE against MOS on the LIVE Challenge
     photos (to cross-check `keepers brisque --eval`). Nothing from that data set is written.

The package fails on numpy >= 2 because some of its features are 1-element arrays
(`mean_squares_sum` returns shape (1,)), which `float()` refuses in `scale_features`. The
subclass below flattens them to 36 floats before scaling; nothing else is changed.

Requirements (a venv under /tmp, not part of the build):
    python3 -m venv /tmp/bq
    /tmp/bq/bin/pip install brisque==0.2.0 opencv-python-headless pillow
  (brisque pulls numpy, scipy, scikit-image, libsvm-official, requests; measured with
   numpy 2.4.6, scipy 1.17.1, scikit-image 0.26.0, libsvm-official 3.37.0,
   opencv-python-headless 5.0.0, pillow 13.0.0)
Run from the repository root:
    /tmp/bq/bin/python scripts/brisque_reference.py [--livec ../shared/data/livec/labels.csv]
"""

import argparse
import csv
import hashlib
import json
import math
import os
import pickle
import shutil
import sys
from importlib import metadata

import numpy as np
from PIL import Image, ImageOps

import brisque
from brisque import BRISQUE
from brisque.models import MODEL_PATH

SAMPLES = "assets/samples"
OUT_JSON = "tests/data/brisque_reference.json"
WEIGHTS = "weights/brisque"


class FlatBrisque(BRISQUE):
    """The package's BRISQUE with its features flattened to 36 float64 before scaling."""

    def calculate_brisque_features(self, image, kernel_size=7, sigma=7 / 6):
        feats = super().calculate_brisque_features(image, kernel_size=kernel_size, sigma=sigma)
        return np.concatenate([np.ravel(np.asarray(f, dtype=np.float64)) for f in feats])

    def features(self, rgb):
        """The 36 features exactly as `score()` computes them (same calls, same order)."""
        import cv2
        import skimage.color

        gray = skimage.color.rgb2gray(self.remove_alpha_channel(rgb))
        f1 = self.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
        down = cv2.resize(gray, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
        f2 = self.calculate_brisque_features(down, kernel_size=7, sigma=7 / 6)
        return np.concatenate((f1, f2)), gray, down


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def f64_sha256(a):
    """sha256 of a float64 image as little-endian bytes, row-major (bit-exactness check)."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f8").tobytes()).hexdigest()


def load_rgb(path):
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def parse_libsvm(path):
    """(gamma, rho, coefs, dense SVs) from a libsvm epsilon-SVR/RBF text model."""
    header, coefs, svs = {}, [], []
    with open(path) as f:
        lines = iter(f.read().splitlines())
        for line in lines:
            if line.strip() == "SV":
                break
            k, *v = line.split()
            header[k] = v
        for line in lines:
            if not line.strip():
                continue
            parts = line.split()
            coefs.append(float(parts[0]))
            row = np.zeros(36)
            for p in parts[1:]:
                i, v = p.split(":")
                row[int(i) - 1] = float(v)
            svs.append(row)
    assert header["svm_type"] == ["epsilon_svr"] and header["kernel_type"] == ["rbf"], header
    return float(header["gamma"][0]), float(header["rho"][0]), np.array(coefs), np.array(svs)


def convert_weights():
    os.makedirs(WEIGHTS, exist_ok=True)
    shutil.copyfile(os.path.join(MODEL_PATH, "svm.txt"), os.path.join(WEIGHTS, "svm.txt"))
    with open(os.path.join(MODEL_PATH, "normalize.pickle"), "rb") as f:
        norm = pickle.load(f)
    out = {"min": [float(v) for v in norm["min_"]], "max": [float(v) for v in norm["max_"]]}
    assert len(out["min"]) == len(out["max"]) == 36
    with open(os.path.join(WEIGHTS, "normalize.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    sums = {n: sha256(os.path.join(WEIGHTS, n)) for n in ("svm.txt", "normalize.json")}
    with open(os.path.join(WEIGHTS, "SHA256SUMS"), "w") as f:
        for n, s in sums.items():
            f.write(f"{s}  {n}\n")
    return out, sums


def numpy_predict(model, norm, feats):
    """The SVR prediction from the converted files: sum_i coef_i exp(-gamma |x - sv_i|^2) - rho."""
    gamma, rho, coefs, svs = model
    lo, hi = np.array(norm["min"]), np.array(norm["max"])
    x = -1 + 2.0 / (hi - lo) * (feats - lo)
    return float(np.sum(coefs * np.exp(-gamma * np.sum((svs - x) ** 2, axis=1))) - rho)


def pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.corrcoef(x, y)[0, 1])


def livec(csv_path, b):
    from scipy.stats import spearmanr

    root = os.path.dirname(csv_path)
    mos, scores = [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            p = os.path.join(root, row["image"])
            if not os.path.exists(p):
                p = os.path.join(root, "images", row["image"])
            scores.append(float(b.score(load_rgb(p))))
            mos.append(float(row["mos"]))
    neg = [-s for s in scores]
    print(f"LIVE Challenge, PyPI brisque {metadata.version('brisque')}: n={len(mos)}")
    print(f"  SRCC(-BRISQUE, MOS) = {spearmanr(neg, mos)[0]:.4f}")
    print(f"  PLCC(-BRISQUE, MOS) = {pearson(neg, mos):.4f}")
    print(f"  BRISQUE mean {np.mean(scores):.3f}, min {np.min(scores):.3f}, max {np.max(scores):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--livec", help="labels.csv of the LIVE Challenge: print SRCC/PLCC of the package")
    ap.add_argument("--eval-only", action="store_true", help="with --livec: only the LIVE figures; write nothing")
    a = ap.parse_args()
    if a.eval_only:
        if not a.livec:
            ap.error("--eval-only needs --livec")
        livec(a.livec, FlatBrisque(url=False))
        return

    norm, sums = convert_weights()
    model = parse_libsvm(os.path.join(WEIGHTS, "svm.txt"))
    b = FlatBrisque(url=False)

    photos = []
    names = sorted(n for n in os.listdir(SAMPLES) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    for name in names:
        rgb = load_rgb(os.path.join(SAMPLES, name))
        feats, gray, down = b.features(rgb)
        score = float(b.score(rgb))
        check = numpy_predict(model, norm, feats)
        assert math.isclose(score, check, rel_tol=1e-9, abs_tol=1e-9), (name, score, check)
        photos.append(
            {
                "file": name,
                "width": int(rgb.shape[1]),
                "height": int(rgb.shape[0]),
                "rgb_sha256": hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest(),
                "gray_sha256": f64_sha256(gray),
                "half_width": int(down.shape[1]),
                "half_height": int(down.shape[0]),
                "half_sha256": f64_sha256(down),
                "features": [float(v) for v in feats],
                "score": score,
            }
        )
        print(f"{name:45s} {rgb.shape[1]:5d}x{rgb.shape[0]:<5d} score {score:8.3f}", file=sys.stderr)

    doc = {
        "about": "PyPI brisque features and scores for assets/samples (scripts/brisque_reference.py)",
        "package": {
            n: metadata.version(n)
            for n in ("brisque", "numpy", "scipy", "scikit-image", "libsvm-official", "opencv-python-headless", "pillow")
        },
        "decode": "Pillow, ImageOps.exif_transpose, convert('RGB')",
        "weights_sha256": sums,
        "gaussian_window_hex": [float(v).hex() for v in b.gaussian_kernel2d(7, 7 / 6).ravel()],
        "photos": photos,
    }
    os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
    with open(OUT_JSON, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT_JSON} ({len(photos)} photos) and {WEIGHTS}/", file=sys.stderr)

    if a.livec:
        livec(a.livec, b)


if __name__ == "__main__":
    main()
