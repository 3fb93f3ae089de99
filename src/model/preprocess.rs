//! Image -> network input for the ImageNet backbone.
//!
//! The classification view is the centre square of the photo (side `S = min(H, W)`, offset
//! `floor((W - S) / 2)`, `floor((H - S) / 2)`), resized to `n x n` by bilinear interpolation
//! with half-pixel centres (`align_corners = false`, no antialiasing). In exact integer
//! arithmetic: for output index `i`, `num = (2i + 1) * S - n`; the first tap is
//! `num div 2n` (0 when `num < 0`), the second `min(first + 1, S - 1)`, and the weights are
//! `(2n - f, f)` with `f = num mod 2n`. The weighted sum of 8-bit pixels is an exact integer
//! `acc`, and the input value is `(acc - 127 * (2n)^2) / (128 * (2n)^2)`, one f64 division
//! rounded to f32: `(v - 127) / 128`, the normalisation the EfficientNet-Lite checkpoints
//! were trained with. `scripts/reference_lite0.py` computes the same independently, so the
//! Rust and numpy forward passes see bit-identical inputs for the same pixels.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

/// Per-axis interpolation taps: (index0, index1, weight0, weight1), weights summing to 2n.
fn taps(src: usize, dst: usize, offset: usize) -> Vec<(usize, usize, i64, i64)> {
    let two_n = 2 * dst as i64;
    (0..dst)
        .map(|i| {
            let num = (2 * i as i64 + 1) * src as i64 - dst as i64;
            let (i0, f) = if num < 0 { (0, 0) } else { ((num / two_n) as usize, num % two_n) };
            let i0 = i0.min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (offset + i0, offset + i1, two_n - f, f)
        })
        .collect()
}

/// Centre square crop resized to `size`, normalised, as `size * size * 3` HWC floats.
pub fn center_square_normalized(img: &RgbImage, size: usize) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.min(h);
    let tx = taps(side, size, (w - side) / 2);
    let ty = taps(side, size, (h - side) / 2);
    let raw = img.as_raw();
    let px = |x: usize, y: usize, c: usize| raw[(y * w + x) * 3 + c] as i64;
    let denom = (2 * size as i64).pow(2);
    let mut out = vec![0f32; size * size * 3];
    for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
        for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
            for c in 0..3 {
                let acc = wy0 * (wx0 * px(x0, y0, c) + wx1 * px(x1, y0, c)) + wy1 * (wx0 * px(x0, y1, c) + wx1 * px(x1, y1, c));
                out[(oy * size + ox) * 3 + c] = ((acc - 127 * denom) as f64 / (128 * denom) as f64) as f32;
            }
        }
    }
    out
}

/// Normalised NCHW tensor `(N, 3, size, size)` for a batch of photos.
pub fn imagenet_batch(images: &[&RgbImage], size: usize, device: &Device) -> Result<Tensor> {
    let mut data: Vec<f32> = Vec::with_capacity(images.len() * 3 * size * size);
    for img in images {
        let hwc = center_square_normalized(img, size);
        for c in 0..3 {
            data.extend(hwc.iter().skip(c).step_by(3).copied());
        }
    }
    Tensor::from_vec(data, (images.len(), 3, size, size), device)
}
