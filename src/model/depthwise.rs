//! Direct depthwise convolution on channels-last (NHWC) tensors, forward and backward.
//!
//! candle runs a grouped convolution as one small convolution per group, which makes the
//! depthwise layers of EfficientNet-Lite (MobileNetV2 inverted residuals, Sandler et al. 2018)
//! about a hundred times slower than they should be. This module computes
//!
//! ```text
//! y[n, oy, ox, c] = b[c] + sum_{ky, kx} x[n, oy*s + ky - pt, ox*s + kx - pl, c] * w[ky, kx, c]
//! ```
//!
//! directly, with the TF "SAME" padding folded into the index arithmetic (no padded copy),
//! vectorised along the contiguous channel axis and parallel over output rows (rayon).
//! Input `(N, H, W, C)`, weight `(K, K, C)`, output `(N, OH, OW, C)`.
//!
//! [`DepthwiseConv`] is a candle `CustomOp2` with a backward pass (two further direct kernels,
//! for the input and the weight gradients), so it trains; `tests/gradients.rs` checks it
//! against f64 finite differences. [`DepthwiseConv::fused`] adds a per-channel bias and an
//! optional ReLU6 in the same pass (inference with BatchNorm folded in; no backward).
//! On non-CPU devices the op falls back to candle's grouped `conv2d`, which is fast there.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use super::padding::SamePadding;

/// Geometry of one depthwise convolution: kernel size, stride and the padding on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub pad: SamePadding,
}

impl DwGeometry {
    /// Output (height, width) for an input of (h, w).
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + self.pad.top + self.pad.bottom - self.kernel) / self.stride + 1;
        let ow = (w + self.pad.left + self.pad.right - self.kernel) / self.stride + 1;
        (oh, ow)
    }
}

/// The plain, trainable depthwise convolution op (operands: input, weight).
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConv {
    pub geom: DwGeometry,
}

/// Inference-only depthwise conv + bias (+ ReLU6) in one pass; bias passed as a third tensor.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConvBias {
    pub geom: DwGeometry,
    pub relu6: bool,
}

struct Dims {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

fn dims_of(geom: &DwGeometry, x: &Layout, w: &Layout) -> candle_core::Result<Dims> {
    let (n, h, wd, c) = x.shape().dims4()?;
    let (k1, k2, wc) = w.shape().dims3()?;
    if k1 != geom.kernel || k2 != geom.kernel || wc != c {
        candle_core::bail!("depthwise conv: weight {:?} does not match kernel {} and {c} channels", w.shape(), geom.kernel);
    }
    if h + geom.pad.top + geom.pad.bottom < geom.kernel || wd + geom.pad.left + geom.pad.right < geom.kernel {
        candle_core::bail!("depthwise conv: input {h}x{wd} smaller than kernel {}", geom.kernel);
    }
    let (oh, ow) = geom.out_hw(h, wd);
    Ok(Dims { n, h, w: wd, c, oh, ow })
}

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    super::cpu_slice(s, l, "depthwise conv")
}

/// Input index range of the kernel taps that land inside the image for output position `o`.
#[inline(always)]
fn tap_range(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    // Tap t reads position o*stride + t - pad; keep 0 <= pos < size.
    let base = o * stride;
    let t0 = pad.saturating_sub(base);
    let t1 = (size + pad).saturating_sub(base).min(k);
    (t0, t1.max(t0))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // a kernel's geometry, kept flat for the hot loop
fn forward_row<T: Float + Send + Sync>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T]>,
    relu6: bool,
    d: &Dims,
    g: &DwGeometry,
    b: usize,
    oy: usize,
    out: &mut [T],
) {
    let (c, k) = (d.c, g.kernel);
    let (ky0, ky1) = tap_range(oy, g.stride, g.pad.top, k, d.h);
    for ox in 0..d.ow {
        let o = &mut out[ox * c..(ox + 1) * c];
        match bias {
            Some(bv) => o.copy_from_slice(bv),
            None => o.fill(T::zero()),
        }
        let (kx0, kx1) = tap_range(ox, g.stride, g.pad.left, k, d.w);
        for ky in ky0..ky1 {
            let iy = oy * g.stride + ky - g.pad.top;
            for kx in kx0..kx1 {
                let ix = ox * g.stride + kx - g.pad.left;
                let xr = &x[((b * d.h + iy) * d.w + ix) * c..][..c];
                let wr = &wt[(ky * k + kx) * c..][..c];
                for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(wr) {
                    *o = *o + xv * wv;
                }
            }
        }
        if relu6 {
            let six = T::from(6.0).unwrap();
            for v in o.iter_mut() {
                *v = v.max(T::zero()).min(six);
            }
        }
    }
}

macro_rules! simd_dispatch {
    ($generic:ident, $avx512:ident, $avx2:ident, ($($arg:ident : $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn $avx512<T: Float + Send + Sync>($($arg: $ty),*) { $generic($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2<T: Float + Send + Sync>($($arg: $ty),*) { $generic($($arg),*) }
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

simd_dispatch!(forward_row, forward_row_avx512, forward_row_avx2,
    (x: &[T], wt: &[T], bias: Option<&[T]>, relu6: bool, d: &Dims, g: &DwGeometry, b: usize, oy: usize, out: &mut [T]));

#[allow(clippy::too_many_arguments)]
fn forward_impl<T: Float + Send + Sync>(x: &[T], wt: &[T], bias: Option<&[T]>, relu6: bool, d: &Dims, g: &DwGeometry) -> Vec<T> {
    let row = d.ow * d.c;
    let mut out = vec![T::zero(); d.n * d.oh * row];
    let isa = isa();
    out.par_chunks_mut(row).enumerate().for_each(|(r, o)| {
        let (b, oy) = (r / d.oh, r % d.oh);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports the features, checked by `isa()`.
            Isa::Avx512 => unsafe { forward_row_avx512(x, wt, bias, relu6, d, g, b, oy, o) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { forward_row_avx2(x, wt, bias, relu6, d, g, b, oy, o) },
            _ => forward_row(x, wt, bias, relu6, d, g, b, oy, o),
        }
    });
    out
}

/// dL/dx for one input row (b, iy): sum over the taps that read this pixel.
#[inline(always)]
fn grad_input_row<T: Float + Send + Sync>(gy: &[T], wt: &[T], d: &Dims, g: &DwGeometry, b: usize, iy: usize, out: &mut [T]) {
    let (c, k, s) = (d.c, g.kernel, g.stride);
    out.fill(T::zero());
    for ix in 0..d.w {
        let o = &mut out[ix * c..(ix + 1) * c];
        for ky in 0..k {
            let ty = iy + g.pad.top;
            if ty < ky || !(ty - ky).is_multiple_of(s) {
                continue;
            }
            let oy = (ty - ky) / s;
            if oy >= d.oh {
                continue;
            }
            for kx in 0..k {
                let tx = ix + g.pad.left;
                if tx < kx || !(tx - kx).is_multiple_of(s) {
                    continue;
                }
                let ox = (tx - kx) / s;
                if ox >= d.ow {
                    continue;
                }
                let gr = &gy[((b * d.oh + oy) * d.ow + ox) * c..][..c];
                let wr = &wt[(ky * k + kx) * c..][..c];
                for ((o, &gv), &wv) in o.iter_mut().zip(gr).zip(wr) {
                    *o = *o + gv * wv;
                }
            }
        }
    }
}

simd_dispatch!(grad_input_row, grad_input_row_avx512, grad_input_row_avx2,
    (gy: &[T], wt: &[T], d: &Dims, g: &DwGeometry, b: usize, iy: usize, out: &mut [T]));

/// dL/dw accumulated over the output rows in `rows` into `acc` (K*K*C).
#[inline(always)]
fn grad_weight_rows<T: Float + Send + Sync>(x: &[T], gy: &[T], d: &Dims, g: &DwGeometry, r: usize, acc: &mut [T]) {
    let (c, k) = (d.c, g.kernel);
    let (b, oy) = (r / d.oh, r % d.oh);
    let (ky0, ky1) = tap_range(oy, g.stride, g.pad.top, k, d.h);
    for ox in 0..d.ow {
        let gr = &gy[((b * d.oh + oy) * d.ow + ox) * c..][..c];
        let (kx0, kx1) = tap_range(ox, g.stride, g.pad.left, k, d.w);
        for ky in ky0..ky1 {
            let iy = oy * g.stride + ky - g.pad.top;
            for kx in kx0..kx1 {
                let ix = ox * g.stride + kx - g.pad.left;
                let xr = &x[((b * d.h + iy) * d.w + ix) * c..][..c];
                let a = &mut acc[(ky * k + kx) * c..][..c];
                for ((a, &xv), &gv) in a.iter_mut().zip(xr).zip(gr) {
                    *a = *a + xv * gv;
                }
            }
        }
    }
}

simd_dispatch!(grad_weight_rows, grad_weight_rows_avx512, grad_weight_rows_avx2,
    (x: &[T], gy: &[T], d: &Dims, g: &DwGeometry, r: usize, acc: &mut [T]));

fn grad_input_impl<T: Float + Send + Sync>(gy: &[T], wt: &[T], d: &Dims, g: &DwGeometry) -> Vec<T> {
    let row = d.w * d.c;
    let mut out = vec![T::zero(); d.n * d.h * row];
    let isa = isa();
    out.par_chunks_mut(row).enumerate().for_each(|(r, o)| {
        let (b, iy) = (r / d.h, r % d.h);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports the features, checked by `isa()`.
            Isa::Avx512 => unsafe { grad_input_row_avx512(gy, wt, d, g, b, iy, o) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { grad_input_row_avx2(gy, wt, d, g, b, iy, o) },
            _ => grad_input_row(gy, wt, d, g, b, iy, o),
        }
    });
    out
}

/// Partial sums of the weight gradient: the output rows are cut into at most this many
/// chunks, of a size that depends on the shape only.
const WEIGHT_GRAD_CHUNKS: usize = 64;

/// Weight gradient, summed over every output row. Each chunk of rows (a fixed partition that
/// depends on the shape, not on the thread count or on work stealing) is summed in parallel,
/// and the chunks' partial sums are added in chunk order, so the result is bit-identical from
/// run to run and for any number of threads (a rayon `fold`/`reduce` splits wherever the
/// scheduler did, which changes the float rounding between runs).
fn grad_weight_impl<T: Float + Send + Sync>(x: &[T], gy: &[T], d: &Dims, g: &DwGeometry) -> Vec<T> {
    let len = g.kernel * g.kernel * d.c;
    let isa = isa();
    let rows = d.n * d.oh;
    let chunk = rows.div_ceil(WEIGHT_GRAD_CHUNKS).max(1);
    let partials: Vec<Vec<T>> = (0..rows.div_ceil(chunk))
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![T::zero(); len];
            for r in k * chunk..((k + 1) * chunk).min(rows) {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU supports the features, checked by `isa()`.
                    Isa::Avx512 => unsafe { grad_weight_rows_avx512(x, gy, d, g, r, &mut acc) },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { grad_weight_rows_avx2(x, gy, d, g, r, &mut acc) },
                    _ => grad_weight_rows(x, gy, d, g, r, &mut acc),
                }
            }
            acc
        })
        .collect();
    let mut out = vec![T::zero(); len];
    for p in partials {
        for (a, b) in out.iter_mut().zip(p) {
            *a = *a + b;
        }
    }
    out
}

fn unsupported(op: &str, dt: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: dtype {dt:?} not supported (f32 and f64 only)"))
}

impl CustomOp2 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims_of(&self.geom, l1, l2)?;
        let shape = Shape::from((d.n, d.oh, d.ow, d.c));
        let out = match s1.dtype() {
            DType::F32 => {
                CpuStorage::F32(forward_impl(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, None, false, &d, &self.geom))
            }
            DType::F64 => {
                CpuStorage::F64(forward_impl(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, None, false, &d, &self.geom))
            }
            dt => return Err(unsupported(self.name(), dt)),
        };
        Ok((out, shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = grad.apply_op2_no_bwd(w, &DepthwiseGradInput { geom: self.geom, in_hw: (x.dim(1)?, x.dim(2)?) })?;
        let gw = x.apply_op2_no_bwd(&grad, &DepthwiseGradWeight { geom: self.geom })?;
        Ok((Some(gx), Some(gw)))
    }
}

/// dL/dx: operands (grad_out, weight).
struct DepthwiseGradInput {
    geom: DwGeometry,
    in_hw: (usize, usize),
}

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, oh, ow, c) = l1.shape().dims4()?;
        let (h, w) = self.in_hw;
        let d = Dims { n, h, w, c, oh, ow };
        let shape = Shape::from((n, h, w, c));
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(grad_input_impl(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, &d, &self.geom)),
            DType::F64 => CpuStorage::F64(grad_input_impl(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, &d, &self.geom)),
            dt => return Err(unsupported(self.name(), dt)),
        };
        Ok((out, shape))
    }
}

/// dL/dw: operands (input, grad_out).
struct DepthwiseGradWeight {
    geom: DwGeometry,
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc-grad-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, w, c) = l1.shape().dims4()?;
        let (_, oh, ow, _) = l2.shape().dims4()?;
        let d = Dims { n, h, w, c, oh, ow };
        let k = self.geom.kernel;
        let shape = Shape::from((k, k, c));
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(grad_weight_impl(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?, &d, &self.geom)),
            DType::F64 => CpuStorage::F64(grad_weight_impl(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?, &d, &self.geom)),
            dt => return Err(unsupported(self.name(), dt)),
        };
        Ok((out, shape))
    }
}

impl candle_core::CustomOp3 for DepthwiseConvBias {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims_of(&self.geom, l1, l2)?;
        if l3.shape().dims() != [d.c] {
            candle_core::bail!("depthwise conv: bias {:?} must have {} entries", l3.shape(), d.c);
        }
        let shape = Shape::from((d.n, d.oh, d.ow, d.c));
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(forward_impl(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                Some(contiguous::<f32>(s3, l3)?),
                self.relu6,
                &d,
                &self.geom,
            )),
            DType::F64 => CpuStorage::F64(forward_impl(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                Some(contiguous::<f64>(s3, l3)?),
                self.relu6,
                &d,
                &self.geom,
            )),
            dt => return Err(unsupported(self.name(), dt)),
        };
        Ok((out, shape))
    }
}

/// Reference path through candle's grouped conv2d (NCHW), used on GPUs where it is fast.
fn grouped_conv_fallback(x: &Tensor, w: &Tensor, geom: &DwGeometry) -> candle_core::Result<Tensor> {
    let c = x.dim(3)?;
    let xp = x.permute((0, 3, 1, 2))?.pad_with_zeros(2, geom.pad.top, geom.pad.bottom)?.pad_with_zeros(3, geom.pad.left, geom.pad.right)?;
    let wk = w.permute((2, 0, 1))?.unsqueeze(1)?.contiguous()?; // (C, 1, K, K)
    xp.conv2d(&wk, 0, geom.stride, 1, c)?.permute((0, 2, 3, 1))?.contiguous()
}

/// Trainable depthwise convolution of `x (N,H,W,C)` with `w (K,K,C)`.
pub fn depthwise_conv(x: &Tensor, w: &Tensor, geom: DwGeometry) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op2(&w.contiguous()?, DepthwiseConv { geom })
    } else {
        grouped_conv_fallback(x, w, &geom)
    }
}

/// Inference depthwise convolution with a per-channel bias and optional ReLU6, in one pass.
pub fn depthwise_conv_bias(x: &Tensor, w: &Tensor, bias: &Tensor, geom: DwGeometry, relu6: bool) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &bias.contiguous()?, &DepthwiseConvBias { geom, relu6 })
    } else {
        let y = grouped_conv_fallback(x, w, &geom)?.broadcast_add(bias)?;
        if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The direct kernel equals candle's grouped conv2d on a padded copy (independent path).
    #[test]
    fn matches_grouped_conv2d() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for &(k, s, h, w) in &[(3usize, 1usize, 7usize, 6usize), (3, 2, 8, 8), (5, 2, 9, 7), (5, 1, 5, 5)] {
            let pad = SamePadding::new(h, w, k, s);
            let geom = DwGeometry { kernel: k, stride: s, pad };
            let x = Tensor::randn(0f64, 1., (2, h, w, 5), &dev)?;
            let wt = Tensor::randn(0f64, 1., (k, k, 5), &dev)?;
            let a = x.apply_op2(&wt, DepthwiseConv { geom })?;
            let b = grouped_conv_fallback(&x, &wt, &geom)?;
            let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
            assert!(diff < 1e-12, "k{k} s{s} {h}x{w}: max diff {diff}");
        }
        Ok(())
    }
}
