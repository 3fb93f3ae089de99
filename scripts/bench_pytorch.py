#!/usr/bin/env python3
"""PyTorch CPU baseline for `keepers bench backbone`: EfficientNet-Lite0, same weights.

Builds EfficientNet-Lite0 in plain PyTorch (module written here, no timm/torchvision),
loads weights/efficientnet_lite0.safetensors with strict key checking, checks that
assets/samples/coffee.png is classified as class 967 ("espresso", p ~0.94), then times
the full forward pass (stem -> 16 MBConv -> head -> average pool -> fc) on random input
at batch 1 and batch 16: 2 warm-up iterations, then the median of --reps timed ones.

Output (one fact per line, `key=value`, stable for scripts/bench_backbone.sh to parse):

    torch_version=2.15.0
    threads=2
    sanity top1=967 label=espresso p=0.939453 ok
    pytorch batch=1 ms_per_batch=18.80 ms_per_image=18.80
    pytorch batch=16 ms_per_batch=364.80 ms_per_image=22.80

The `pytorch ...` lines are the headline: eager fp32 NCHW, the comparison the project
states. `--variants` also times channels_last, torch.jit.freeze (NCHW and channels_last)
and the features-only pass (no fc, the scope `keepers bench backbone` times); those lines
start with `pytorch-<variant> ` and are never the headline.

Usage: python scripts/bench_pytorch.py [--reps 5] [--variants] [--threads N]
Needs: torch, numpy, safetensors, pillow (scripts/bench_backbone.sh installs them).
"""

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import load_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WEIGHTS = os.path.join(REPO_ROOT, "weights", "efficientnet_lite0.safetensors")
DEFAULT_IMAGE = os.path.join(REPO_ROOT, "assets", "samples", "coffee.png")
CLASSES_FILE = os.path.join(REPO_ROOT, "assets", "imagenet_classes.txt")

EXPECTED_CLASS = 967  # espresso
EXPECTED_P = 0.939453  # scripts/reference_lite0.py (float64) on coffee.png
P_TOLERANCE = 2e-3

# The architecture table and constants are shared with the numpy reference.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_lite0 import BN_EPS, INPUT_SIZE, LITE0_STAGES  # noqa: E402

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


# ------------------------------------------------------------------------------ network

def tf_same_pad(x, k, s):
    """TensorFlow SAME zero padding of an NCHW tensor for a k x k conv with stride s."""
    h, w = x.shape[-2:]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SameConv(nn.Conv2d):
    """Bias-free conv with TF SAME padding: symmetric (k-1)/2 built into the conv for
    stride 1 (identical to SAME for odd k), an explicit F.pad before stride-2 convs."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        pad = (k - 1) // 2 if stride == 1 else 0
        super().__init__(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=False)
        self.k = k

    def forward(self, x):
        if self.stride[0] != 1:
            x = tf_same_pad(x, self.k, self.stride[0])
        return super().forward(x)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """[expand 1x1 + BN + ReLU6] -> depthwise kxk + BN + ReLU6 -> project 1x1 + BN
    (-> + input when stride 1 and in == out). No squeeze-excitation."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride=stride, groups=mid)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if self.residual:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = bn(STEM_CHANNELS)
        blocks = []
        cin = STEM_CHANNELS
        for k, s, e, c, reps in LITE0_STAGES:
            for r in range(reps):
                blocks.append(MBConv(cin, c, k, s if r == 0 else 1, e))
                cin = c
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD_CHANNELS, 1)
        self._bn1 = bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, x):
        """Pooled head features (N, 1280): everything except the fc."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            h = b(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x):
        return self._fc(self.features(x))


class FeaturesOnly(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


def load_weights(model, path):
    """Strict load: the file's keys must be exactly the model's parameters and BN running
    statistics. The file has no `num_batches_tracked` counters (training-only; dropped by
    scripts/convert_weights.py), so those, and only those, may be missing from it."""
    arrays = load_file(path)
    file_keys = set(arrays)
    model_keys = set(model.state_dict())
    counters = {k for k in model_keys if k.endswith(".num_batches_tracked")}
    expected = model_keys - counters
    missing = sorted(expected - file_keys)
    unexpected = sorted(file_keys - expected)
    if missing or unexpected:
        raise SystemExit(f"FAIL: weight keys do not match the model\n  missing from file: {missing}\n"
                         f"  unexpected in file: {unexpected}")
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    # strict=True: BatchNorm fills in a missing num_batches_tracked itself; any other
    # missing/unexpected key or shape mismatch raises.
    model.load_state_dict(state, strict=True)
    return len(arrays)


# ------------------------------------------------------------------------ preprocessing

def bilinear_taps(src, dst=INPUT_SIZE):
    """Integer source indices and weights (out of 2*dst) along one axis: half-pixel
    centres, no antialias, clamped at both ends (as scripts/reference_lite0.py)."""
    i = np.arange(dst, dtype=np.int64)
    num = (2 * i + 1) * src - dst
    num = np.maximum(num, 0)
    i0 = np.minimum(num // (2 * dst), src - 1)
    f = num % (2 * dst)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, 2 * dst - f, f


def preprocess(path):
    """Image -> (1, 3, 224, 224) float32: RGB, centre square crop, exact integer
    bilinear resize to 224, (x - 127) / 128, NCHW."""
    from PIL import Image
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = rgb[top:top + s, left:left + s].astype(np.int64)
    y0, y1, wy0, wy1 = bilinear_taps(s)
    x0, x1, wx0, wx1 = bilinear_taps(s)
    r0, r1 = crop[y0], crop[y1]
    wx0c, wx1c = wx0[None, :, None], wx1[None, :, None]
    acc = (wy0[:, None, None] * (wx0c * r0[:, x0] + wx1c * r0[:, x1])
           + wy1[:, None, None] * (wx0c * r1[:, x0] + wx1c * r1[:, x1]))
    scale = (2 * INPUT_SIZE) ** 2
    x = (acc - 127 * scale).astype(np.float64) / float(128 * scale)
    return torch.from_numpy(x.astype(np.float32).transpose(2, 0, 1)[None].copy())


def class_name(idx):
    try:
        with open(CLASSES_FILE, encoding="utf-8") as fh:
            names = [line.strip() for line in fh]
        return names[idx].replace(" ", "_") if idx < len(names) else "?"
    except OSError:
        return "?"


def sanity_check(model, image):
    with torch.inference_mode():
        probs = torch.softmax(model(preprocess(image)).double(), dim=1)[0]
    p, top1 = (float(v) for v in probs.max(0))
    top1 = int(top1)
    ok = top1 == EXPECTED_CLASS and abs(p - EXPECTED_P) <= P_TOLERANCE
    print(f"sanity image={os.path.relpath(image, REPO_ROOT)} top1={top1} label={class_name(top1)} "
          f"p={p:.6f} {'ok' if ok else 'FAIL'}", flush=True)
    if not ok:
        raise SystemExit(f"FAIL: expected class {EXPECTED_CLASS} (espresso) with p={EXPECTED_P} "
                         f"+- {P_TOLERANCE}, got class {top1} p={p:.6f}: the PyTorch port or the "
                         f"weights are wrong, timings would be meaningless")


# ------------------------------------------------------------------------------- timing

def time_forward(fn, x, warmup, reps):
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def report(tag, batch, ms):
    print(f"{tag} batch={batch} ms_per_batch={ms:.2f} ms_per_image={ms / batch:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per batch size (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up iterations")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--variants", action="store_true",
                    help="also time channels_last, jit.freeze and features-only (not the headline)")
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch_version={torch.__version__}")
    print(f"threads={torch.get_num_threads()} (os.cpu_count()={os.cpu_count()})")
    print(f"mkldnn={torch.backends.mkldnn.is_available()}")

    model = EfficientNetLite0()
    n = load_weights(model, args.weights)
    model.eval()
    print(f"weights={os.path.relpath(args.weights, REPO_ROOT)} tensors={n} strict=ok")
    sanity_check(model, args.image)

    batches = [int(b) for b in args.batches.split(",")]
    inputs = {b: torch.randn(b, 3, INPUT_SIZE, INPUT_SIZE) for b in batches}
    print(f"timing: full forward (stem..head, avgpool, fc), fp32, eager, NCHW, "
          f"warmup={args.warmup}, median of reps={args.reps}", flush=True)
    for b in batches:
        report("pytorch", b, time_forward(model, inputs[b], args.warmup, args.reps))

    if args.variants:
        import copy
        feats = FeaturesOnly(model).eval()
        for b in batches:
            report("pytorch-features", b, time_forward(feats, inputs[b], args.warmup, args.reps))
        cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
        for b in batches:
            xcl = inputs[b].contiguous(memory_format=torch.channels_last)
            report("pytorch-channels_last", b, time_forward(cl_model, xcl, args.warmup, args.reps))
        for name, m, fmt in [("pytorch-jit_freeze", model, torch.contiguous_format),
                             ("pytorch-jit_freeze_channels_last", cl_model, torch.channels_last)]:
            for b in batches:
                x = inputs[b].contiguous(memory_format=fmt)
                try:
                    with torch.inference_mode(), warnings.catch_warnings():
                        # trace/freeze are deprecated in favour of torch.compile (needs a C
                        # compiler at run time); the tracer also warns about the static pad sizes
                        warnings.simplefilter("ignore")
                        frozen = torch.jit.freeze(torch.jit.trace(m, x).eval())
                    # a frozen graph optimises itself over its first runs: give it more warm-up
                    ms = time_forward(frozen, x, max(args.warmup, 3), args.reps)
                    report(name, b, ms)
                except Exception as e:  # noqa: BLE001 - the variants are optional extras
                    print(f"{name} batch={b} error={type(e).__name__}: {str(e).splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
