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

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::VarBuilder;

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
        let c = self.weight.dim(0)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&c) {
            candle_core::bail!("batch norm over {c} channels got input {dims:?}");
        }
        let flat = x.reshape(((), c))?;
        let (mean, var) = if train {
            let m = flat.dim(0)?;
            if m < 2 {
                candle_core::bail!("batch norm in training mode needs more than one value per channel");
            }
            let mean = flat.mean_keepdim(0)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let unbiased = (var.detach() * (m as f64 / (m as f64 - 1.0)))?.squeeze(0)?;
            let mo = self.momentum;
            let rm = ((self.running_mean.as_tensor() * (1.0 - mo))? + (mean.detach().squeeze(0)? * mo)?)?;
            let rv = ((self.running_var.as_tensor() * (1.0 - mo))? + (unbiased * mo)?)?;
            self.running_mean.set(&rm.to_dtype(self.running_mean.dtype())?)?;
            self.running_var.set(&rv.to_dtype(self.running_var.dtype())?)?;
            (mean, var)
        } else {
            let dt = x.dtype();
            (self.running_mean.to_dtype(dt)?.unsqueeze(0)?, self.running_var.to_dtype(dt)?.unsqueeze(0)?)
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
