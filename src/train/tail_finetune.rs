//! Partial fine-tuning of the Lite0 column for photo quality (issue 7: "frozen backbone first,
//! then partial fine-tuning if it helps").
//!
//! The last blocks `from..16` of the ImageNet EfficientNet-Lite0 and its head convolution
//! train together with a linear head on the **mean of a photo's grid patches' pooled 1280-d
//! features** (the app's grid, [`crate::model::quality::grid_patches`]); everything before
//! block `from` stays frozen, so each patch's activation there is computed once
//! ([`TailNet::inputs`]) and every epoch runs only the tail.
//!
//! Recipe: LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
//! Underperform Out-of-Distribution"): the linear head starts from ridge on the frozen
//! features ([`TailNet::set_head`]), then head and tail train together with our AdamW on half
//! the squared error of the standardised MOS (the loss of the previous DMA-fc quality model; the
//! seed papers classify or use EMD, LIVE gives one mean score per photo), in seeded batches of
//! photos. BatchNorm stays in evaluation mode (`train = false`): its ImageNet
//! statistics are kept, only its scale and shift train; a few hundred photos are too few to
//! re-estimate them. The gradients of this whole path (segment mean, linear head, loss, tail
//! blocks in evaluation mode) are checked against finite differences in `tests/finetune.rs`.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::model::efficientnet_lite::{EfficientNetLite, LiteConfig};
use crate::model::systems::load_lite0_into;
use crate::model::weights::WeightsError;
use crate::rng::SeededRng;
use crate::train::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use crate::train::pipeline::permutation;

/// Variable-name prefix of the backbone inside the tail model's [`VarMap`].
const PREFIX: &str = "column";

/// `(name, variable)` pairs, as [`ParamGroup::vars`].
pub type NamedVars = Vec<(String, Var)>;

/// Settings of one fine-tuning run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TailConfig {
    /// First trained block (Lite0 has 16; 16 = only the head convolution trains).
    pub from_block: usize,
    pub epochs: usize,
    /// AdamW learning rate of the tail; the linear head uses `lr * head_lr_mult`.
    pub lr: f64,
    pub head_lr_mult: f64,
    pub weight_decay: f64,
    /// Photos per step (each brings all of its grid patches).
    pub batch_photos: usize,
    pub seed: u64,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self { from_block: 15, epochs: 8, lr: 1e-4, head_lr_mult: 1.0, weight_decay: 1e-4, batch_photos: 8, seed: 0 }
    }
}

/// The backbone (trainable form) plus the linear quality head `(1280 -> 1)`.
pub struct TailNet {
    varmap: VarMap,
    net: EfficientNetLite,
    w: Var,
    b: Var,
    from: usize,
}

impl TailNet {
    /// The shipped Lite0 (sha256-verified), fine-tuning from block `from`; the head is zero.
    pub fn from_lite0(path: &Path, from: usize, dtype: DType, device: &Device) -> std::result::Result<Self, WeightsError> {
        let wrap = |source| WeightsError::Load { path: path.to_owned(), source };
        let varmap = VarMap::new();
        let net = EfficientNetLite::new(&LiteConfig::lite0(), VarBuilder::from_varmap(&varmap, dtype, device).pp(PREFIX)).map_err(wrap)?;
        load_lite0_into(&varmap, PREFIX, path)?;
        Self::with(varmap, net, from, dtype, device).map_err(wrap)
    }

    /// Any backbone built on `varmap` under the prefix `column` (tests: small random networks).
    pub fn new(cfg: &LiteConfig, varmap: VarMap, from: usize, dtype: DType, device: &Device) -> Result<Self> {
        let net = EfficientNetLite::new(cfg, VarBuilder::from_varmap(&varmap, dtype, device).pp(PREFIX))?;
        Self::with(varmap, net, from, dtype, device)
    }

    fn with(varmap: VarMap, net: EfficientNetLite, from: usize, dtype: DType, device: &Device) -> Result<Self> {
        if from > net.num_blocks() {
            candle_core::bail!("fine-tuning from block {from}, the network has {}", net.num_blocks());
        }
        let d = net.config().head_channels;
        let w = Var::zeros((d, 1), dtype, device)?;
        let b = Var::zeros(1, dtype, device)?;
        Ok(Self { varmap, net, w, b, from })
    }

    /// Copies of the trained backbone variables' values, to [`TailNet::restore`] between runs.
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.trainable().0.iter().map(|(_, v)| v.as_tensor().copy()).collect()
    }

    /// Sets the trained backbone variables back to a [`TailNet::snapshot`].
    pub fn restore(&self, saved: &[Tensor]) -> Result<()> {
        let vars = self.trainable().0;
        if vars.len() != saved.len() {
            candle_core::bail!("snapshot of {} variables, {} train", saved.len(), vars.len());
        }
        vars.iter().zip(saved).try_for_each(|((_, v), t)| v.set(t))
    }

    /// The frozen part: normalised patches `(P, 3, S, S)` -> NHWC activations entering block
    /// `from` (evaluation mode, no gradient).
    pub fn inputs(&self, patches: &Tensor) -> Result<Tensor> {
        let h = self.net.stem_t(patches, false)?;
        Ok(self.net.blocks_t(&h, 0..self.from, false, None)?.detach())
    }

    /// The trained part: activations from [`TailNet::inputs`] -> pooled features `(P, 1280)`.
    pub fn pooled(&self, acts: &Tensor) -> Result<Tensor> {
        let h = self.net.blocks_t(acts, self.from..self.net.num_blocks(), false, None)?;
        Ok(self.net.head_t(&h, false)?.pooled)
    }

    /// Photo scores `(n)` (standardised MOS scale) of `acts` holding `counts[i]` consecutive
    /// patches of photo `i`: the linear head on the mean of each photo's pooled features.
    pub fn photo_scores(&self, acts: &Tensor, counts: &[usize]) -> Result<Tensor> {
        let f = photo_mean(&self.pooled(acts)?, counts)?;
        f.matmul(self.w.as_tensor())?.squeeze(1)?.broadcast_add(self.b.as_tensor())
    }

    /// Each photo's mean pooled feature `(n, 1280)`, as f64 rows (the frozen probe's input).
    pub fn photo_features(&self, acts: &Tensor, counts: &[usize]) -> Result<Vec<Vec<f64>>> {
        photo_mean(&self.pooled(acts)?, counts)?.to_dtype(DType::F64)?.to_vec2()
    }

    /// Sets the linear head (raw feature space; e.g. a ridge fit on [`TailNet::photo_features`]).
    pub fn set_head(&self, w: &[f64], b: f64) -> Result<()> {
        let (dt, dev) = (self.w.dtype(), self.w.device());
        self.w.set(&Tensor::from_slice(w, (w.len(), 1), dev)?.to_dtype(dt)?)?;
        self.b.set(&Tensor::new(&[b], dev)?.to_dtype(dt)?)
    }

    /// What trains: the tail blocks, the head convolution and its BatchNorm scale and shift
    /// (not the running statistics), sorted by name; then the linear head.
    pub fn trainable(&self) -> (NamedVars, NamedVars) {
        let tail: Vec<String> = (self.from..self.net.num_blocks()).map(|i| format!("{PREFIX}._blocks.{i}.")).collect();
        let head_conv = [format!("{PREFIX}._conv_head."), format!("{PREFIX}._bn1.")];
        let keep = |n: &str| {
            !n.contains("running_")
                && (tail.iter().any(|p| n.starts_with(p.as_str())) || head_conv.iter().any(|p| n.starts_with(p.as_str())))
        };
        let backbone = ParamGroup::from_varmap("tail", &self.varmap, keep).vars;
        let head = vec![("head.w".to_string(), self.w.clone()), ("head.b".to_string(), self.b.clone())];
        (backbone, head)
    }
}

/// Per-photo means of rows `x` `(P, D)` where photo `i` owns the next `counts[i]` rows: one
/// matmul with the `(n, P)` averaging matrix, so the gradient reaches every row.
pub fn photo_mean(x: &Tensor, counts: &[usize]) -> Result<Tensor> {
    let p: usize = counts.iter().sum();
    if p != x.dim(0)? || counts.contains(&0) {
        candle_core::bail!("{} rows for photo counts {counts:?}", x.dim(0)?);
    }
    let mut m = vec![0f64; counts.len() * p];
    let mut start = 0;
    for (i, &c) in counts.iter().enumerate() {
        m[i * p + start..i * p + start + c].iter_mut().for_each(|v| *v = 1.0 / c as f64);
        start += c;
    }
    Tensor::from_vec(m, (counts.len(), p), x.device())?.to_dtype(x.dtype())?.matmul(x)
}

/// Half the mean squared error, `mean((pred - z)^2) / 2`.
pub fn half_mse(pred: &Tensor, z: &Tensor) -> Result<Tensor> {
    (pred - z)?.sqr()?.mean_all()? * 0.5
}

/// Fine-tunes `tail` on photos `acts` (each photo's cached tail inputs, `(patches, h, w, c)`) with standardised targets `z`; `on_epoch(epoch, mean
/// loss)` after each epoch (return `false` to stop). Batches are a seeded permutation per
/// epoch (`seed`, epoch).
pub fn fine_tune(
    tail: &TailNet,
    acts: &[&Tensor],
    z: &[f64],
    cfg: &TailConfig,
    on_epoch: &mut dyn FnMut(usize, f64) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    anyhow::ensure!(acts.len() == z.len() && !z.is_empty(), "{} photos, {} targets", acts.len(), z.len());
    let (backbone, head) = tail.trainable();
    let groups = vec![ParamGroup::new("tail", backbone), ParamGroup::new("head", head).lr_mult(cfg.head_lr_mult).weight_decay(0.0)];
    let mut opt = AdamW::new(groups, AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let (dt, dev) = (tail.w.dtype(), tail.w.device().clone());
    for epoch in 0..cfg.epochs {
        let order = permutation(z.len(), &mut SeededRng::new(cfg.seed.wrapping_mul(7919).wrapping_add(epoch as u64)));
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in order.chunks(cfg.batch_photos.max(1)) {
            let x = Tensor::cat(&batch.iter().map(|&i| acts[i]).collect::<Vec<_>>(), 0)?;
            let counts: Vec<usize> = batch.iter().map(|&i| acts[i].dim(0)).collect::<Result<_>>()?;
            let target = Tensor::from_vec(batch.iter().map(|&i| z[i]).collect::<Vec<f64>>(), batch.len(), &dev)?.to_dtype(dt)?;
            let loss = half_mse(&tail.photo_scores(&x, &counts)?, &target)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * batch.len() as f64;
            n += batch.len();
        }
        if !on_epoch(epoch + 1, sum / n as f64)? {
            break;
        }
    }
    Ok(())
}
