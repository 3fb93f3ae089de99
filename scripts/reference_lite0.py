#!/usr/bin/env python3
"""Independent numpy reference of EfficientNet-Lite0 (ImageNet-1k), no torch.

Reads weights/efficientnet_lite0.safetensors (parsed here with json + numpy, so the
reference does not depend on the safetensors package either) and classifies one or more
images. All arithmetic after preprocessing is float64 (weights are promoted from
float32); the preprocessed input tensor itself is float32, exactly as the app builds it.

PREPROCESSING (the Rust app mirrors this; the float32 input tensor is bit-exact):

  1. Decode to RGB8 with Pillow: ``Image.open(p).convert("RGB")``. EXIF orientation is
     NOT applied, alpha is dropped (not composited), grey is replicated to 3 channels.
  2. Centre crop to a square of side S = min(H, W):
         top = (H - S) // 2,  left = (W - S) // 2        (integer floor division)
  3. Bilinear resize S x S -> 224 x 224, half-pixel centres (align_corners=False), no
     antialias, computed exactly in integers. For output index i (0..223), per axis:
         num  = (2*i + 1) * S - 224          # = 448 * ((i + 0.5) * S/224 - 0.5)
         if num < 0: i0 = 0, f = 0           # clamp to the first pixel
         else:       i0 = num // 448, f = num % 448
         i1 = min(i0 + 1, S - 1)             # clamp at the last pixel
     The four weights are wy0 = 448 - fy, wy1 = fy, wx0 = 448 - fx, wx1 = fx, and for
     each channel c the integer accumulator (fits in int64, < 2^26) is
         acc = wy0*(wx0*P[y0,x0] + wx1*P[y0,x1]) + wy1*(wx0*P[y1,x0] + wx1*P[y1,x1])
     (P = cropped uint8 pixel values).
  4. Normalise: x = float32( float64(acc - 127*200704) / float64(128*200704) )
     i.e. (v - 127) / 128 with v = acc / 448^2 the bilinear value on 0..255; one
     correctly rounded float64 division, then a cast to float32. 200704 = 448^2.
  5. Layout NCHW (1, 3, 224, 224), channel order R, G, B.

``--dump-input FILE`` writes that tensor as little-endian float32 raw (602112 bytes);
``--input-raw FILE`` reads such a file instead of an image.

NETWORK: stem conv3x3 s2 (32) -> BN -> ReLU6 -> 16 MBConv blocks -> conv1x1 (1280) ->
BN -> ReLU6 -> global average pool -> FC (1000) -> softmax. MBConv: [expand 1x1, BN,
ReLU6 when expand ratio != 1] -> depthwise kxk, BN, ReLU6 -> project 1x1, BN (no
activation) -> + input when stride 1 and in == out channels. No squeeze-excitation,
no biases on convolutions, BN eps 1e-3: y = (x - mean) / sqrt(var + 1e-3) * gamma + beta.
Every convolution uses TensorFlow "SAME" padding: out = ceil(in / s),
pad_total = max((out - 1) * s + k - in, 0), top/left = pad_total // 2, the rest
bottom/right (for stride 1 this is (k-1)/2 on each side), zero padding.

Usage:
    python3 scripts/reference_lite0.py assets/samples/coffee.png
    python3 scripts/reference_lite0.py --input-raw input.f32 --json
    python3 scripts/reference_lite0.py --table scripts/reference_top5.txt \
        --outputs-json scripts/reference_outputs.json assets/samples/*.png ...
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WEIGHTS = os.path.join(REPO_ROOT, "weights", "efficientnet_lite0.safetensors")
DEFAULT_CLASSES = os.path.join(REPO_ROOT, "assets", "imagenet_classes.txt")

INPUT_SIZE = 224
BN_EPS = 1e-3

# Standard EfficientNet-Lite0 stage table: (kernel, stride, expand ratio, out channels,
# repeats). The stride applies to the first block of each stage, later blocks use 1.
LITE0_STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]

SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8"}


# ----------------------------------------------------------------------------- weights

def load_safetensors(path):
    """Minimal safetensors reader: u64 LE header length, JSON header, raw data."""
    with open(path, "rb") as fh:
        data = fh.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start:base + end], dtype=dtype)
        out[name] = arr.reshape(info["shape"])
    return out


def derive_blocks(w):
    """Block list [(kernel, stride, expand, in_ch, out_ch)] from the weights + table."""
    n_blocks = 0
    while f"_blocks.{n_blocks}._depthwise_conv.weight" in w:
        n_blocks += 1
    expected = sum(r for *_, r in LITE0_STAGES)
    if n_blocks != expected:
        raise ValueError(f"found {n_blocks} blocks, Lite0 has {expected}")
    blocks = []
    in_ch = w["_conv_stem.weight"].shape[0]
    idx = 0
    for k, s, e, c, reps in LITE0_STAGES:
        for r in range(reps):
            p = f"_blocks.{idx}."
            dw = w[p + "_depthwise_conv.weight"]
            proj = w[p + "_project_conv.weight"]
            if p + "_expand_conv.weight" in w:
                exp_w = w[p + "_expand_conv.weight"]
                if exp_w.shape[1] != in_ch or exp_w.shape[0] % in_ch:
                    raise ValueError(f"block {idx}: expand shape {exp_w.shape}")
                expand = exp_w.shape[0] // in_ch
            else:
                expand = 1
            kernel = dw.shape[-1]
            out_ch = proj.shape[0]
            if (kernel, expand, out_ch) != (k, e, c) or dw.shape[0] != in_ch * expand:
                raise ValueError(f"block {idx}: weights say k{kernel} e{expand} c{out_ch}, "
                                 f"table says k{k} e{e} c{c}")
            blocks.append((kernel, s if r == 0 else 1, expand, in_ch, out_ch))
            in_ch = out_ch
            idx += 1
    return blocks


# ------------------------------------------------------------------------ preprocessing

def bilinear_taps(src, dst=INPUT_SIZE):
    """Integer source indices and weights (out of 448 for dst=224) along one axis."""
    i = np.arange(dst, dtype=np.int64)
    num = (2 * i + 1) * src - dst
    neg = num < 0
    num = np.where(neg, 0, num)
    i0 = num // (2 * dst)
    f = num % (2 * dst)
    i0 = np.minimum(i0, src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (2 * dst) - f, f


def preprocess_rgb8(rgb):
    """(H, W, 3) uint8 -> (1, 3, 224, 224) float32, as documented above."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an (H, W, 3) uint8 array")
    h, w = rgb.shape[:2]
    s = min(h, w)
    top = (h - s) // 2
    left = (w - s) // 2
    crop = rgb[top:top + s, left:left + s].astype(np.int64)
    y0, y1, wy0, wy1 = bilinear_taps(s)
    x0, x1, wx0, wx1 = bilinear_taps(s)
    rows0 = crop[y0]  # (224, S, 3)
    rows1 = crop[y1]
    wx0c = wx0[None, :, None]
    wx1c = wx1[None, :, None]
    top_row = wx0c * rows0[:, x0] + wx1c * rows0[:, x1]  # (224, 224, 3)
    bot_row = wx0c * rows1[:, x0] + wx1c * rows1[:, x1]
    acc = wy0[:, None, None] * top_row + wy1[:, None, None] * bot_row
    scale = (2 * INPUT_SIZE) ** 2  # 200704
    x = (acc - 127 * scale).astype(np.float64) / float(128 * scale)
    return x.astype(np.float32).transpose(2, 0, 1)[None].copy()


def load_image_rgb8(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ------------------------------------------------------------------------------ network

def same_pad(x, k, s):
    """TF SAME zero padding for a (C, H, W) array; returns padded array and output size."""
    _, h, w = x.shape
    oh = -(-h // s)
    ow = -(-w // s)
    ph = max((oh - 1) * s + k - h, 0)
    pw = max((ow - 1) * s + k - w, 0)
    x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    return x, oh, ow


def conv2d(x, weight, s):
    """Dense conv, TF SAME, via im2col + matmul. x (C, H, W), weight (O, C, k, k)."""
    o, c, k, _ = weight.shape
    if k == 1 and s == 1:
        return np.tensordot(weight.reshape(o, c), x, axes=(1, 0))
    xp, oh, ow = same_pad(x, k, s)
    cols = np.empty((c, k, k, oh, ow), dtype=x.dtype)
    for dy in range(k):
        for dx in range(k):
            cols[:, dy, dx] = xp[:, dy:dy + s * (oh - 1) + 1:s, dx:dx + s * (ow - 1) + 1:s]
    out = weight.reshape(o, c * k * k) @ cols.reshape(c * k * k, oh * ow)
    return out.reshape(o, oh, ow)


def depthwise(x, weight, s):
    """Depthwise conv, TF SAME. x (C, H, W), weight (C, 1, k, k)."""
    c, _, k, _ = weight.shape
    xp, oh, ow = same_pad(x, k, s)
    out = np.zeros((c, oh, ow), dtype=x.dtype)
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + s * (oh - 1) + 1:s, dx:dx + s * (ow - 1) + 1:s]
            out += weight[:, 0, dy, dx][:, None, None] * patch
    return out


def batchnorm(x, w, prefix):
    gamma = w[prefix + ".weight"]
    beta = w[prefix + ".bias"]
    mean = w[prefix + ".running_mean"]
    var = w[prefix + ".running_var"]
    scale = gamma / np.sqrt(var + BN_EPS)
    return (x - mean[:, None, None]) * scale[:, None, None] + beta[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def mean_std(x):
    """Per-channel spatial mean and population std of a (C, H, W) map: [means, stds]."""
    flat = x.reshape(x.shape[0], -1)
    return np.concatenate([flat.mean(axis=1), flat.std(axis=1)])


def forward(w, blocks, inp, levels=None):
    """inp (1, 3, 224, 224) float32 -> (logits (1000,), probabilities (1000,)).

    Arithmetic runs in the dtype of the weights ``w`` (float64 by default). With a dict
    ``levels``, also stores the multi-level statistics of src/model/multilevel.rs:
    ``levels["stages"]`` (mean/std of the stem, each stage's output, the head) and
    ``levels["dw"]`` (mean/std of each block's activation after its depthwise conv, BN and
    ReLU6)."""
    dtype = w["_fc.weight"].dtype
    x = inp[0].astype(dtype)
    x = relu6(batchnorm(conv2d(x, w["_conv_stem.weight"], 2), w, "_bn0"))
    stages, dws = [mean_std(x)], []
    for idx, (k, s, e, cin, cout) in enumerate(blocks):
        p = f"_blocks.{idx}."
        h = x
        if e != 1:
            h = relu6(batchnorm(conv2d(h, w[p + "_expand_conv.weight"], 1), w, p + "_bn0"))
        h = relu6(batchnorm(depthwise(h, w[p + "_depthwise_conv.weight"], s), w, p + "_bn1"))
        dws.append(mean_std(h))
        h = batchnorm(conv2d(h, w[p + "_project_conv.weight"], 1), w, p + "_bn2")
        if s == 1 and cin == cout:
            h = h + x
        x = h
        if idx + 1 == len(blocks) or blocks[idx + 1][4] != cout:
            stages.append(mean_std(x))
    x = relu6(batchnorm(conv2d(x, w["_conv_head.weight"], 1), w, "_bn1"))
    if levels is not None:
        stages.append(mean_std(x))
        levels["stages"] = np.concatenate(stages)
        levels["dw"] = np.concatenate(dws)
    pooled = x.mean(axis=(1, 2))
    logits = w["_fc.weight"] @ pooled + w["_fc.bias"]
    z = logits - logits.max()
    e = np.exp(z)
    return logits, e / e.sum()


# --------------------------------------------------------------------------------- main

def load_classes(path):
    try:
        with open(path, encoding="utf-8") as fh:
            names = [line.rstrip("\n") for line in fh]
    except OSError:
        return [f"class {i}" for i in range(1000)]
    if len(names) != 1000:
        raise ValueError(f"{path}: expected 1000 lines, found {len(names)}")
    return names


def main():
    ap = argparse.ArgumentParser(description="numpy EfficientNet-Lite0 reference")
    ap.add_argument("images", nargs="*", help="image files")
    ap.add_argument("--input-raw", help="little-endian float32 (1,3,224,224) input file")
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--classes", default=DEFAULT_CLASSES)
    ap.add_argument("--dump-input", help="write the preprocessed tensor (f32 LE raw); "
                    "with several images, a directory gets one NAME.f32 per image")
    ap.add_argument("--json", action="store_true",
                    help="print JSON with all 1000 probabilities (and logits) per input")
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--float32", action="store_true",
                    help="run the network in float32 instead of float64 (for comparison)")
    ap.add_argument("--table", help="write a plain-text top-k table to this file")
    ap.add_argument("--outputs-json", help="write top-k indices/probabilities per input")
    ap.add_argument("--fixture", help="write all 1000 probabilities per input (8 decimals) as the "
                                      "test fixture tests/data/lite0_reference.json")
    ap.add_argument("--levels-fixture", help="write the multi-level statistics (stage and depthwise "
                                             "taps, 7 decimals) per input as the test fixture "
                                             "tests/data/lite0_levels_reference.json")
    args = ap.parse_args()

    if bool(args.images) == bool(args.input_raw):
        ap.error("give image paths or --input-raw (not both)")

    dtype = np.float32 if args.float32 else np.float64
    w = {k: v.astype(dtype) for k, v in load_safetensors(args.weights).items()}
    blocks = derive_blocks(w)
    names = load_classes(args.classes)

    inputs = []
    if args.input_raw:
        raw = np.fromfile(args.input_raw, dtype="<f4")
        if raw.size != 3 * INPUT_SIZE * INPUT_SIZE:
            sys.exit(f"{args.input_raw}: expected {3 * INPUT_SIZE ** 2} floats, got {raw.size}")
        inputs.append((args.input_raw, raw.reshape(1, 3, INPUT_SIZE, INPUT_SIZE)))
    else:
        for path in args.images:
            inputs.append((path, preprocess_rgb8(load_image_rgb8(path))))

    if args.dump_input:
        if len(inputs) == 1 and not os.path.isdir(args.dump_input):
            inputs[0][1].astype("<f4").tofile(args.dump_input)
        else:
            os.makedirs(args.dump_input, exist_ok=True)
            for path, tensor in inputs:
                stem = os.path.splitext(os.path.basename(path))[0]
                tensor.astype("<f4").tofile(os.path.join(args.dump_input, stem + ".f32"))

    results = []
    levels_rows = []
    for path, tensor in inputs:
        levels = {}
        logits, probs = forward(w, blocks, tensor, levels)
        levels_rows.append(levels)
        order = np.argsort(-probs, kind="stable")[:args.topk]
        top = [(int(i), names[i], float(probs[i])) for i in order]
        results.append((path, top, logits, probs))
        if args.json:
            print(json.dumps({
                "input": path,
                "top": [{"index": i, "name": n, "prob": p} for i, n, p in top],
                "probs": [float(p) for p in probs],
                "logits": [float(v) for v in logits],
            }))
        else:
            print(path)
            for i, n, p in top:
                print(f"  {i:4d}  {p:.6f}  {n}")

    cmd = "python3 scripts/reference_lite0.py " + " ".join(
        a if not a.startswith(REPO_ROOT + os.sep) else os.path.relpath(a, REPO_ROOT)
        for a in sys.argv[1:])

    def rel(p):
        return os.path.relpath(os.path.abspath(p), REPO_ROOT)

    if args.table:
        with open(args.table, "w", encoding="utf-8") as fh:
            fh.write(f"# EfficientNet-Lite0 numpy reference ({np.dtype(dtype).name}), centre crop + exact "
                     "bilinear 224, (x-127)/128\n")
            fh.write(f"# produced by: {cmd}\n")
            for path, top, _, _ in results:
                fh.write(f"{rel(path)}\n")
                for i, n, p in top:
                    fh.write(f"  {i:4d}  {p:.6f}  {n}\n")
    if args.fixture:
        doc = {
            "command": cmd,
            "arithmetic": "float32" if args.float32 else "float64",
            "results": [{"file": rel(path), "probs": [round(float(p), 8) for p in probs]}
                        for path, _, _, probs in results],
        }
        with open(args.fixture, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
            fh.write("\n")
    if args.levels_fixture:
        doc = {
            "command": cmd,
            "arithmetic": "float32" if args.float32 else "float64",
            "results": [{"file": rel(path),
                         "stages": [round(float(v), 7) for v in lv["stages"]],
                         "dw": [round(float(v), 7) for v in lv["dw"]]}
                        for (path, _, _, _), lv in zip(results, levels_rows)],
        }
        with open(args.levels_fixture, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
            fh.write("\n")
    if args.outputs_json:
        doc = {
            "command": cmd,
            "model": "EfficientNet-Lite0, weights/efficientnet_lite0.safetensors",
            "preprocessing": "RGB8, centre square crop (floor offsets), exact integer "
                             "half-pixel bilinear to 224x224, (v-127)/128 as float32, NCHW",
            "arithmetic": "float32" if args.float32 else "float64",
            "note": "input_f32le_sha256 is the sha256 of the preprocessed (1,3,224,224) "
                    "float32 little-endian tensor; it is decoder-independent only for "
                    "PNG files (JPEG decoders may differ in the last bit of a pixel)",
            "results": [
                {
                    "file": rel(path),
                    "input_f32le_sha256": hashlib.sha256(
                        tensor.astype("<f4").tobytes()).hexdigest(),
                    "input_samples": {
                        f"[0,{c},{y},{x}]": float(tensor[0, c, y, x])
                        for c, y, x in ((0, 0, 0), (1, 111, 112), (2, 223, 223))
                    },
                    "top_indices": [i for i, _, _ in top],
                    "top_names": [n for _, n, _ in top],
                    "top_probs": [round(p, 6) for _, _, p in top],
                }
                for (path, top, _, _), (_, tensor) in zip(results, inputs)
            ],
        }
        with open(args.outputs_json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
