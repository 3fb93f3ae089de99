//! Batch normalisation for channels-last tensors, with a real training mode.
//!
//! Ioffe & Szegedy (2015): in training, normalise with the batch statistics over every axis
//! but the last (N, H, W) and update the running statistics,
//! `running = (1 - momentum) * running + momentum * batch` (unbiased variance for the running
//! estimate, biased for the normalisation, as PyTorch and TensorFlow do). In evaluation,
//! normalise with the running statistics. candle-nn's `BatchNorm` is NCHW and candle-transformers
//! keeps it frozen; this one is composed of ops whose gradients candle computes correctly
//! (checked in `tests/gradients.rs`).
//!
//! EfficientNet-Lite was trained in TensorFlow with decay 0.99 and epsilon 1e-3, i.e.
//! `momentum = 0.01`, `eps = 1e-3`.
//!
//! On the CPU, training mode runs as one fused op ([`BnTrain`], a candle `CustomOp3` on
//! `(x, gamma, beta)`, optionally with the ReLU6 that follows it in Lite0): composed from candle
//! ops, each normalisation reduced over the rows of an `(M, C)` map with candle's strided,
//! single-threaded reduction (a division per element) five times forward and backward, and
//! kept a dozen `(M, C)` intermediates alive for the backward pass. The fused op computes the
//! batch moments in f64 over fixed row chunks (parallel, and the same sums in the same order on
//! every run), keeps only `x` and the output, and has the textbook backward
//! (`x^ = (x - mean) istd`, `g` the output gradient masked by ReLU6's active range):
//!
//! ```text
//! dbeta = sum g,   dgamma = sum g x^,   dx = gamma istd (g - dbeta / M - x^ dgamma / M)
//! ```
//!
//! In evaluation mode the CPU runs [`ChannelAffine`], `y = x a + b` with `a = gamma istd` and
//! `b = beta - mean a` from the running statistics (which get no gradient), sharing the
//! backward kernel. Where ReLU6 clips, exactly at 0 and 6 included, the gradient is 0 (PyTorch's
//! convention; candle's `clamp` passes half at the boundary). f16/bf16 and other devices run the
//! composed layer.
//!
//! `tests/gradients.rs` checks both against f64 finite differences and against the composed
//! version ([`BatchNorm::forward_t_composed`]), with and without ReLU6, and that the result does
//! not depend on the number of threads.

use std::sync::{Arc, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var, WithDType};
use candle_nn::VarBuilder;
use num_traits::Float;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// Loads `weight`, `bias`, `running_mean`, `running_var` under `vb` (PyTorch key names).
    /// When `vb` is backed by a `VarMap`, the running statistics are that map's variables, so
    /// updates made in training are saved with it.
    pub fn new(channels: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?;
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", candle_nn::Init::Const(0.))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", candle_nn::Init::Const(1.))?)?;
        Ok(Self { weight, bias, running_mean, running_var, eps, momentum })
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// `x` is channels-last: `(..., C)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act_t(x, train, false)
    }

    /// Batch norm followed by ReLU6 (`min(max(y, 0), 6)`), fused on the CPU in training mode.
    pub fn forward_relu6_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act_t(x, train, true)
    }

    fn forward_act_t(&self, x: &Tensor, train: bool, relu6: bool) -> Result<Tensor> {
        // The fused ops are CPU kernels for f32 and f64; anything else runs the composed layer.
        if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
            let y = self.forward_t_composed(x, train)?;
            return if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) };
        }
        let (dims, flat) = self.flat(x)?;
        if !train {
            // y = x a + b with the running statistics (constants here), a = gamma / sqrt(var + eps),
            // b = beta - mean a: the gradient reaches gamma and beta through these C-sized ops.
            let dt = x.dtype();
            let istd = (self.running_var.as_tensor().detach().to_dtype(dt)? + self.eps)?.sqrt()?.recip()?;
            let a = self.weight.to_dtype(dt)?.mul(&istd)?;
            let b = (self.bias.to_dtype(dt)? - self.running_mean.as_tensor().detach().to_dtype(dt)?.mul(&a)?)?;
            return flat.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, ChannelAffine { relu6 })?.reshape(dims);
        }
        let m = flat.dim(0)?;
        if m < 2 {
            candle_core::bail!("batch norm in training mode needs more than one value per channel");
        }
        let moments = Arc::new(OnceLock::new());
        let op = BnTrain { eps: self.eps, relu6, moments: moments.clone() };
        let w = self.weight.to_dtype(x.dtype())?;
        let b = self.bias.to_dtype(x.dtype())?;
        let y = flat.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?;
        let mo = moments.get().ok_or_else(|| candle_core::Error::Msg("batch norm: moments not computed".into()))?;
        let unbiased: Vec<f64> = mo.var.iter().map(|v| v * m as f64 / (m as f64 - 1.0)).collect();
        self.update_running(&Tensor::new(mo.mean.as_slice(), x.device())?, &Tensor::new(unbiased.as_slice(), x.device())?)?;
        y.reshape(dims)
    }

    fn flat(&self, x: &Tensor) -> Result<(Vec<usize>, Tensor)> {
        let c = self.weight.dim(0)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&c) {
            candle_core::bail!("batch norm over {c} channels got input {dims:?}");
        }
        Ok((dims, x.reshape(((), c))?))
    }

    /// `running = (1 - momentum) running + momentum batch`, for the batch mean and the unbiased
    /// batch variance (detached, any dtype).
    fn update_running(&self, mean: &Tensor, unbiased: &Tensor) -> Result<()> {
        let mo = self.momentum;
        let dt = self.running_mean.dtype();
        let rm = ((self.running_mean.as_tensor() * (1.0 - mo))? + (mean.to_dtype(dt)? * mo)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - mo))? + (unbiased.to_dtype(dt)? * mo)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }

    /// The same layer composed of candle ops (no ReLU6): what non-CPU devices run, and the
    /// reference the fused op is tested against.
    pub fn forward_t_composed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (dims, flat) = self.flat(x)?;
        let (mean, var) = if train {
            let m = flat.dim(0)?;
            if m < 2 {
                candle_core::bail!("batch norm in training mode needs more than one value per channel");
            }
            let mean = flat.mean_keepdim(0)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let unbiased = (var.detach() * (m as f64 / (m as f64 - 1.0)))?.squeeze(0)?;
            self.update_running(&mean.detach().squeeze(0)?, &unbiased)?;
            (mean, var)
        } else {
            let dt = x.dtype();
            (
                self.running_mean.as_tensor().detach().to_dtype(dt)?.unsqueeze(0)?,
                self.running_var.as_tensor().detach().to_dtype(dt)?.unsqueeze(0)?,
            )
        };
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        let y = flat.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?;
        y.reshape(dims)
    }

    /// Per-channel `(scale, shift)` with `bn(x) = x * scale + shift` in evaluation mode,
    /// for folding into the preceding convolution. Computed in f64, returned as `dtype`.
    pub fn folded(&self, dtype: DType) -> Result<(Tensor, Tensor)> {
        let w = self.weight.to_dtype(DType::F64)?;
        let b = self.bias.to_dtype(DType::F64)?;
        let m = self.running_mean.to_dtype(DType::F64)?;
        let v = self.running_var.to_dtype(DType::F64)?;
        let scale = w.broadcast_div(&(v + self.eps)?.sqrt()?)?;
        let shift = (b - m.mul(&scale)?)?;
        Ok((scale.to_dtype(dtype)?, shift.to_dtype(dtype)?))
    }
}

/// Rows per chunk of the fused op's parallel passes: fixed, so the f64 sums are added in the
/// same order whatever the thread count.
const ROWS: usize = 512;

/// Per-channel batch moments of the last forward pass (f64).
#[derive(Debug)]
struct Moments {
    mean: Vec<f64>,
    /// Biased variance (the normalisation's).
    var: Vec<f64>,
    istd: Vec<f64>,
}

/// Training-mode batch norm (+ ReLU6) of a contiguous `(M, C)` map; operands `(x, gamma, beta)`.
#[derive(Debug)]
pub struct BnTrain {
    eps: f64,
    relu6: bool,
    moments: Arc<OnceLock<Moments>>,
}

/// Per-channel sums of `f(row)` over fixed row chunks, partial sums added in chunk order.
fn channel_sums<T: Sync>(rows: &[T], c: usize, f: impl Fn(&[T], &mut [f64]) + Sync) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = rows
        .par_chunks(ROWS * c)
        .map(|chunk| {
            let mut acc = vec![0.0; c];
            for row in chunk.chunks_exact(c) {
                f(row, &mut acc);
            }
            acc
        })
        .collect();
    let mut out = vec![0.0; c];
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

fn moments<T: WithDType + Float>(x: &[T], c: usize, eps: f64) -> Moments {
    let m = (x.len() / c) as f64;
    let mean: Vec<f64> = channel_sums(x, c, |row, acc| {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += f64_of(*v);
        }
    })
    .into_iter()
    .map(|s| s / m)
    .collect();
    let var: Vec<f64> = channel_sums(x, c, |row, acc| {
        for ((a, v), mu) in acc.iter_mut().zip(row).zip(&mean) {
            let d = f64_of(*v) - mu;
            *a += d * d;
        }
    })
    .into_iter()
    .map(|s| s / m)
    .collect();
    let istd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    Moments { mean, var, istd }
}

fn f64_of<T: WithDType>(v: T) -> f64 {
    WithDType::to_f64(v)
}

fn cast<T: WithDType>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

impl BnTrain {
    fn forward<T: WithDType + Float>(&self, x: &[T], gamma: &[T], beta: &[T]) -> Result<Vec<T>> {
        let c = gamma.len();
        // One op instance normalises one input: its backward reads these moments.
        if self.moments.set(moments(x, c, self.eps)).is_err() {
            candle_core::bail!("batch norm: one op instance applied twice");
        }
        let mo = self.moments.get().expect("just set");
        // y = x a + b with a = gamma istd, b = beta - mean a.
        let a: Vec<f64> = gamma.iter().zip(&mo.istd).map(|(g, s)| f64_of(*g) * s).collect();
        let b: Vec<T> = cast(&beta.iter().zip(&mo.mean).zip(&a).map(|((b, m), a)| f64_of(*b) - m * a).collect::<Vec<_>>());
        Ok(affine_rows(x, &cast(&a), &b, self.relu6))
    }
}

/// `y = x a + b` per channel over the rows of a contiguous `(M, C)` map, then ReLU6 if asked.
fn affine_rows<T: WithDType + Float>(x: &[T], a: &[T], b: &[T], relu6: bool) -> Vec<T> {
    let c = a.len();
    let (zero, six) = (T::zero(), T::from_f64(6.0));
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(ROWS * c).zip(x.par_chunks(ROWS * c)).for_each(|(yc, xc)| {
        for (yr, xr) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
            for (((o, &v), &a), &b) in yr.iter_mut().zip(xr).zip(a).zip(b) {
                *o = v * a + b;
            }
            if relu6 {
                for o in yr.iter_mut() {
                    // NaN stays NaN (as candle's clamp), so a diverging run still shows a NaN loss.
                    *o = if *o < zero {
                        zero
                    } else if *o > six {
                        six
                    } else {
                        *o
                    };
                }
            }
        }
    });
    y
}

/// Runs `f` (returning a `Result`) on the three operands as slices of one float type (f32 or f64).
macro_rules! dispatch3 {
    ($what:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, $s3:expr, $l3:expr, $f:expr) => {
        match $s1.dtype() {
            DType::F32 => CpuStorage::F32($f(
                super::cpu_slice::<f32>($s1, $l1, $what)?,
                super::cpu_slice::<f32>($s2, $l2, $what)?,
                super::cpu_slice::<f32>($s3, $l3, $what)?,
            )?),
            DType::F64 => CpuStorage::F64($f(
                super::cpu_slice::<f64>($s1, $l1, $what)?,
                super::cpu_slice::<f64>($s2, $l2, $what)?,
                super::cpu_slice::<f64>($s3, $l3, $what)?,
            )?),
            dt => candle_core::bail!("{}: dtype {dt:?} not supported (f32 and f64 only)", $what),
        }
    };
}

fn check_channels(what: &str, l1: &Layout, l2: &Layout, l3: &Layout) -> Result<()> {
    let (_, c) = l1.shape().dims2()?;
    if l2.shape().dims() != [c] || l3.shape().dims() != [c] {
        candle_core::bail!("{what}: per-channel operands {:?} and {:?} must have {c} entries", l2.shape(), l3.shape());
    }
    Ok(())
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_channels(self.name(), l1, l2, l3)?;
        let out = dispatch3!(self.name(), s1, l1, s2, l2, s3, l3, |x, g, b| self.forward(x, g, b));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mo = self.moments.get().ok_or_else(|| candle_core::Error::Msg("batch norm: backward before forward".into()))?;
        let gamma64: Vec<f64> = gamma.to_dtype(DType::F64)?.to_vec1()?;
        let dx_scale = gamma64.iter().zip(&mo.istd).map(|(g, s)| g * s).collect();
        let op = AffineGrad { relu6: self.relu6, batch: Some((mo.mean.clone(), mo.istd.clone())), dx_scale, sums: OnceLock::new() };
        op.apply(x, res, grad, gamma.dtype())
    }
}

/// `y = x a + b` per channel (+ ReLU6) on a contiguous `(M, C)` map; operands `(x, a, b)`: batch
/// norm in evaluation mode, with `a`, `b` from the running statistics.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAffine {
    relu6: bool,
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_channels(self.name(), l1, l2, l3)?;
        let out = dispatch3!(self.name(), s1, l1, s2, l2, s3, l3, |x, a, b| Result::Ok(affine_rows(x, a, b, self.relu6)));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx_scale = a.to_dtype(DType::F64)?.to_vec1()?;
        let op = AffineGrad { relu6: self.relu6, batch: None, dx_scale, sums: OnceLock::new() };
        op.apply(x, res, grad, a.dtype())
    }
}

/// The input gradient of [`BnTrain`] (`batch` = the batch mean and istd) or of [`ChannelAffine`]
/// (`batch` = None); operands `(x, grad, y)` (`y` masks ReLU6). With `x^ = (x - mean) istd`
/// (or `x` itself), it also leaves the per-channel sums `(sum g, sum g x^)`: the gradients of
/// the per-channel shift and scale.
struct AffineGrad {
    relu6: bool,
    batch: Option<(Vec<f64>, Vec<f64>)>,
    /// `gamma istd` for batch norm, `a` for the affine map.
    dx_scale: Vec<f64>,
    sums: OnceLock<(Vec<f64>, Vec<f64>)>,
}

impl AffineGrad {
    /// `(dx, d scale, d shift)`, the per-channel gradients in `dtype`.
    fn apply(&self, x: &Tensor, y: &Tensor, grad: &Tensor, dtype: DType) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = x.apply_op3_no_bwd(&grad.contiguous()?, y, self)?;
        let (s1, s2) = self.sums.get().ok_or_else(|| candle_core::Error::Msg("batch norm: gradient sums not computed".into()))?;
        let dev = x.device();
        let dscale = Tensor::new(s2.as_slice(), dev)?.to_dtype(dtype)?;
        let dshift = Tensor::new(s1.as_slice(), dev)?.to_dtype(dtype)?;
        Ok((Some(dx), Some(dscale), Some(dshift)))
    }

    fn backward<T: WithDType + Float>(&self, x: &[T], g: &[T], y: &[T]) -> Vec<T> {
        let c = self.dx_scale.len();
        let m = (x.len() / c) as f64;
        let (zero, six) = (T::zero(), T::from_f64(6.0));
        let relu6 = self.relu6;
        // The output gradient, zero where ReLU6 clipped.
        let gate = move |gv: T, yv: T| if relu6 && !(yv > zero && yv < six) { zero } else { gv };
        let identity = (vec![0.0; c], vec![1.0; c]);
        let (mean, istd) = self.batch.as_ref().unwrap_or(&identity);
        let chunks = || x.par_chunks(ROWS * c).zip(g.par_chunks(ROWS * c)).zip(y.par_chunks(ROWS * c));
        let parts: Vec<(Vec<f64>, Vec<f64>)> = chunks()
            .map(|((xc, gc), yc)| {
                let (mut a1, mut a2) = (vec![0.0; c], vec![0.0; c]);
                for ((xr, gr), yr) in xc.chunks_exact(c).zip(gc.chunks_exact(c)).zip(yc.chunks_exact(c)) {
                    for k in 0..c {
                        let gv = f64_of(gate(gr[k], yr[k]));
                        a1[k] += gv;
                        a2[k] += gv * (f64_of(xr[k]) - mean[k]) * istd[k];
                    }
                }
                (a1, a2)
            })
            .collect();
        let (mut s1, mut s2) = (vec![0.0; c], vec![0.0; c]);
        for (a1, a2) in parts {
            for k in 0..c {
                s1[k] += a1[k];
                s2[k] += a2[k];
            }
        }
        // Batch norm: dx = gamma istd (g - s1 / M - x^ s2 / M); the affine map: dx = a g.
        let (off, slope): (Vec<T>, Vec<T>) = if self.batch.is_some() {
            (cast(&s1.iter().map(|s| s / m).collect::<Vec<_>>()), cast(&s2.iter().map(|s| s / m).collect::<Vec<_>>()))
        } else {
            (vec![T::zero(); c], vec![T::zero(); c])
        };
        let scale: Vec<T> = cast(&self.dx_scale);
        let (mean_t, istd_t): (Vec<T>, Vec<T>) = (cast(mean), cast(istd));
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(ROWS * c).zip(chunks()).for_each(|(dc, ((xc, gc), yc))| {
            for (((dr, xr), gr), yr) in dc.chunks_exact_mut(c).zip(xc.chunks_exact(c)).zip(gc.chunks_exact(c)).zip(yc.chunks_exact(c)) {
                for k in 0..c {
                    let xh = (xr[k] - mean_t[k]) * istd_t[k];
                    dr[k] = scale[k] * (gate(gr[k], yr[k]) - off[k] - xh * slope[k]);
                }
            }
        });
        let _ = self.sums.set((s1, s2));
        dx
    }
}

impl CustomOp3 for AffineGrad {
    fn name(&self) -> &'static str {
        "batch-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = dispatch3!(self.name(), s1, l1, s2, l2, s3, l3, |x, g, y| Result::Ok(self.backward(x, g, y)));
        Ok((out, l1.shape().clone()))
    }
}
