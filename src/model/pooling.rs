//! Pooling and normalisation layers with gradients we can trust (NCHW tensors).
//!
//! - [`max_pool2d`]: overlapping max pooling (the "Arch 1" column of paper 002 / AlexNet,
//!   3x3 stride 2), composed of `narrow` + `reshape` + `maximum`. candle's own `max_pool2d`
//!   backward divides by k*k and has none when kernel != stride. Output size
//!   `floor((H - k) / s) + 1` (no padding). Ties share the gradient (candle's `maximum`
//!   gives each side half).
//! - [`local_response_norm`]: cross-channel LRN of Krizhevsky et al. (2012), which paper 002
//!   follows ("rnorm" after conv1/conv2): `b_c = a_c / (k + alpha/n * sum_{c' in window} a_c'^2)^beta`,
//!   defaults n = 5, k = 2, alpha = 1e-4, beta = 0.75. Composed of differentiable ops.
//! - [`roi_pool`] and [`roi_align`] (paper 003 eq. 1-3; He et al. 2017 for align): pool the
//!   image region of a zero-padded full-resolution batch to a fixed `(oh, ow)` grid, one
//!   region per image. Regions are given in input pixels `[0, w) x [0, h)` (the image sits
//!   in the top-left corner of its padded canvas) and mapped to the feature map by the
//!   downsampling ratio tau with rounding (eq. 1): the valid feature extent is
//!   `max(1, round(w / tau))` columns. ROI pooling takes the max over bins
//!   `[floor(m * rho), ceil((m + 1) * rho))` (eq. 3). ROI align averages `s x s` bilinear
//!   samples per bin at continuous positions, with the interpolation clamped to the valid
//!   extent, so — unlike Mask R-CNN's align at an image border — no feature of the padding is
//!   ever read: the output does not depend on the padding (tested).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;

/// Overlapping max pooling over `(N, C, H, W)`, kernel `k`, stride `s`, no padding.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h < k || w < k || k == 0 || s == 0 {
        candle_core::bail!("max_pool2d: input {h}x{w} smaller than kernel {k} (stride {s})");
    }
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    // Zero rows/columns so every offset window can be cut as `oh * s` rows; the extra rows
    // are never selected (only rows ky + i*s, i < oh, are).
    let need_h = (k - 1) + oh * s;
    let need_w = (k - 1) + ow * s;
    let xp = x.pad_with_zeros(2, 0, need_h.saturating_sub(h))?.pad_with_zeros(3, 0, need_w.saturating_sub(w))?;
    let mut out: Option<Tensor> = None;
    for ky in 0..k {
        let rows = xp.narrow(2, ky, oh * s)?.reshape((n, c, oh, s, need_w))?.narrow(3, 0, 1)?.squeeze(3)?;
        for kx in 0..k {
            let v = rows.narrow(3, kx, ow * s)?.reshape((n, c, oh, ow, s))?.narrow(4, 0, 1)?.squeeze(4)?;
            out = Some(match out {
                None => v,
                Some(o) => o.maximum(&v)?,
            });
        }
    }
    out.expect("k >= 1").contiguous()
}

/// Parameters of cross-channel local response normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnConfig {
    pub size: usize,
    pub k: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl Default for LrnConfig {
    fn default() -> Self {
        Self { size: 5, k: 2.0, alpha: 1e-4, beta: 0.75 }
    }
}

/// Cross-channel LRN over `(N, C, H, W)`.
pub fn local_response_norm(x: &Tensor, cfg: LrnConfig) -> Result<Tensor> {
    let c = x.dim(1)?;
    let half = cfg.size / 2;
    let sq = x.sqr()?.pad_with_zeros(1, half, cfg.size - 1 - half)?;
    let mut sum = sq.narrow(1, 0, c)?;
    for i in 1..cfg.size {
        sum = (sum + sq.narrow(1, i, c)?)?;
    }
    let denom = ((sum * (cfg.alpha / cfg.size as f64))? + cfg.k)?.powf(-cfg.beta)?;
    x * denom
}

/// The image region of one batch element, in input pixels (the image fills `[0, w) x [0, h)`
/// of its padded canvas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageRegion {
    pub width: f64,
    pub height: f64,
}

/// Valid feature extent (rows, cols) for a region, eq. 1, clamped to the map.
fn valid_extent(r: &ImageRegion, tau: f64, h: usize, w: usize) -> (usize, usize) {
    let fh = ((r.height / tau).round() as usize).clamp(1, h);
    let fw = ((r.width / tau).round() as usize).clamp(1, w);
    (fh, fw)
}

#[derive(Debug, Clone)]
struct RoiOp {
    regions: Vec<ImageRegion>,
    tau: f64,
    out: (usize, usize),
    /// `None`: ROI max pooling; `Some(s)`: ROI align with `s x s` samples per bin.
    align: Option<usize>,
}

/// One contribution of an input cell to an output bin: (input flat index, weight).
/// Max pooling has one per bin (weight 1); align has up to 4 per sample, weights / s^2.
fn roi_taps<T: Float>(op: &RoiOp, x: &[T], n: usize, c: usize, h: usize, w: usize) -> Vec<Vec<(usize, T)>> {
    let (oh, ow) = op.out;
    let mut taps = Vec::with_capacity(n * c * oh * ow);
    for (b, region) in op.regions.iter().enumerate().take(n) {
        let (fh, fw) = valid_extent(region, op.tau, h, w);
        for ch in 0..c {
            let plane = (b * c + ch) * h * w;
            for m in 0..oh {
                for q in 0..ow {
                    let mut t = Vec::new();
                    match op.align {
                        None => {
                            // eq. 3: bins [floor(m*rho), ceil((m+1)*rho)) on the rounded extent
                            let (ry, rx) = (fh as f64 / oh as f64, fw as f64 / ow as f64);
                            let (y0, y1) = ((m as f64 * ry).floor() as usize, (((m + 1) as f64 * ry).ceil() as usize).min(fh));
                            let (x0, x1) = ((q as f64 * rx).floor() as usize, (((q + 1) as f64 * rx).ceil() as usize).min(fw));
                            let (y1, x1) = (y1.max(y0 + 1).min(fh), x1.max(x0 + 1).min(fw));
                            let mut best = plane + y0.min(fh - 1) * w + x0.min(fw - 1);
                            for yy in y0..y1 {
                                for xx in x0..x1 {
                                    let i = plane + yy * w + xx;
                                    if x[i] > x[best] {
                                        best = i;
                                    }
                                }
                            }
                            t.push((best, T::one()));
                        }
                        Some(s) => {
                            // continuous region [0, H/tau) x [0, W/tau) in feature units
                            let (rh, rw) = ((region.height / op.tau).min(h as f64), (region.width / op.tau).min(w as f64));
                            let (bh, bw) = (rh / oh as f64, rw / ow as f64);
                            let wgt = T::from(1.0 / (s * s) as f64).unwrap();
                            for iy in 0..s {
                                let py = m as f64 * bh + (iy as f64 + 0.5) * bh / s as f64;
                                let (y0, y1, fy) = interp(py, fh);
                                for ix in 0..s {
                                    let px = q as f64 * bw + (ix as f64 + 0.5) * bw / s as f64;
                                    let (x0, x1, fx) = interp(px, fw);
                                    let (fy, fx) = (T::from(fy).unwrap(), T::from(fx).unwrap());
                                    let one = T::one();
                                    t.push((plane + y0 * w + x0, wgt * (one - fy) * (one - fx)));
                                    t.push((plane + y0 * w + x1, wgt * (one - fy) * fx));
                                    t.push((plane + y1 * w + x0, wgt * fy * (one - fx)));
                                    t.push((plane + y1 * w + x1, wgt * fy * fx));
                                }
                            }
                        }
                    }
                    taps.push(t);
                }
            }
        }
    }
    taps
}

/// Bilinear taps along one axis for continuous position `p` (cell centres at j + 0.5),
/// clamped to the valid extent `[0, extent)`.
fn interp(p: f64, extent: usize) -> (usize, usize, f64) {
    let u = (p - 0.5).clamp(0.0, (extent - 1) as f64);
    let i0 = u.floor() as usize;
    let i1 = (i0 + 1).min(extent - 1);
    (i0, i1, u - i0 as f64)
}

fn check_regions(op: &RoiOp, n: usize) -> Result<()> {
    if op.regions.len() != n {
        candle_core::bail!("ROI pooling: {} regions for a batch of {n}", op.regions.len());
    }
    if op.out.0 == 0 || op.out.1 == 0 || op.tau <= 0.0 {
        candle_core::bail!("ROI pooling: output size and tau must be positive");
    }
    Ok(())
}

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    super::cpu_slice(s, l, "ROI pooling")
}

fn roi_fwd<T: Float>(op: &RoiOp, x: &[T], n: usize, c: usize, h: usize, w: usize) -> Vec<T> {
    roi_taps(op, x, n, c, h, w).iter().map(|t| t.iter().fold(T::zero(), |a, &(i, wt)| a + x[i] * wt)).collect()
}

fn roi_bwd<T: Float>(op: &RoiOp, x: &[T], g: &[T], n: usize, c: usize, h: usize, w: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    for (t, &gv) in roi_taps(op, x, n, c, h, w).iter().zip(g) {
        for &(i, wt) in t {
            out[i] = out[i] + gv * wt;
        }
    }
    out
}

impl CustomOp1 for RoiOp {
    fn name(&self) -> &'static str {
        if self.align.is_some() { "roi-align" } else { "roi-pool" }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        check_regions(self, n)?;
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(roi_fwd(self, contiguous::<f32>(s, l)?, n, c, h, w)),
            DType::F64 => CpuStorage::F64(roi_fwd(self, contiguous::<f64>(s, l)?, n, c, h, w)),
            dt => candle_core::bail!("ROI pooling: dtype {dt:?} not supported"),
        };
        Ok((out, Shape::from((n, c, self.out.0, self.out.1))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &RoiGrad(self.clone()))?))
    }
}

struct RoiGrad(RoiOp);

impl CustomOp2 for RoiGrad {
    fn name(&self) -> &'static str {
        "roi-pool-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(roi_bwd(&self.0, contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, n, c, h, w)),
            DType::F64 => CpuStorage::F64(roi_bwd(&self.0, contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, n, c, h, w)),
            dt => candle_core::bail!("ROI pooling: dtype {dt:?} not supported"),
        };
        Ok((out, l1.shape().clone()))
    }
}

fn roi_apply(x: &Tensor, op: RoiOp) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(op)
    } else {
        // No GPU kernel: compute on the CPU (small maps: ROI pooling sits after early layers).
        let dev = x.device().clone();
        x.to_device(&candle_core::Device::Cpu)?.contiguous()?.apply_op1(op)?.to_device(&dev)
    }
}

/// ROI max pooling of `(N, C, H, W)` to `(N, C, oh, ow)`, one image region per batch element.
pub fn roi_pool(x: &Tensor, regions: &[ImageRegion], tau: f64, out: (usize, usize)) -> Result<Tensor> {
    roi_apply(x, RoiOp { regions: regions.to_vec(), tau, out, align: None })
}

/// ROI align (average of `samples x samples` bilinear samples per bin).
pub fn roi_align(x: &Tensor, regions: &[ImageRegion], tau: f64, out: (usize, usize), samples: usize) -> Result<Tensor> {
    roi_apply(x, RoiOp { regions: regions.to_vec(), tau, out, align: Some(samples.max(1)) })
}
