//! The small-data variant of every system that allows it (issue 4, item 2): the column is
//! the frozen ImageNet backbone, its features come from the cache ([`super::features`]),
//! and only what follows it trains (aggregation layers and heads). Training a few hundred
//! photos then takes seconds to minutes on two CPU cores.
//!
//! Inputs per system, from each photo's cached features:
//! - SCNN: its view (`warp`, `center`, or one random native patch for `I_l^r`); at test,
//!   `I_l^r` averages over all cached native patches (paper 002's multi-view test).
//! - DCNN: (warp, one random native patch); at test, one group per native patch.
//! - DMA-stat / DMA-fc: a bag of M distinct random native patches; at test, `test_groups`
//!   bags (paper 000 averages 50 bags of 5; here at most the cached 32 patches are drawn from).
//! - MP-* and ARP-MPEMD: `patches` random aspect-preserving crops; at test, all cached ones.
//!
//! Losses by head (image level): quality `(pred - y)^2 / 2` on standardised scores, binary
//! cross-entropy, distributions EMD r = 2 (paper 003), styles multi-label BCE. DMA's per-patch
//! head trains beside it with the per-patch average of the same loss (its outputs are the
//! heatmap). MP-avg / MP-min / MP-ada use paper 001's objectives (on a Gaussian likelihood
//! for quality scores, see [`super::losses`]); ARP-MPEMD uses MPEMD_ada (or _avg) of paper 004.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;

use super::data::Target;
use super::features::PhotoFeatures;
use super::losses;
use super::optim::{AdamW, AdamWConfig, Optimizer as _, ParamGroup};
use super::pipeline::permutation;
use crate::model::heads::{HeadKind, Prediction};
use crate::model::systems::{LossFamily, Mode, System, SystemId, SystemOutput};
use crate::model::views::GlobalView;
use crate::rng::SeededRng;

/// Paper 004's two multi-patch EMD objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpemdVariant {
    Avg,
    Ada,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Test-time bags for DMA (drawn from the cached native patches).
    pub test_groups: usize,
    pub mpemd: MpemdVariant,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self { epochs: 40, batch: 32, lr: 1e-3, weight_decay: 1e-4, seed: 0, test_groups: 10, mpemd: MpemdVariant::Ada }
    }
}

/// Standardises score targets with the training set's mean and spread (and back).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    pub mean: f64,
    pub std: f64,
}

impl Standardizer {
    pub fn fit(scores: &[f64]) -> Self {
        let n = scores.len().max(1) as f64;
        let mean = scores.iter().sum::<f64>() / n;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Self { mean, std: var.sqrt().max(1e-9) }
    }
    pub fn forward(&self, s: f64) -> f64 {
        (s - self.mean) / self.std
    }
    pub fn inverse(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
}

/// `k` distinct indices below `n` (all of them, shuffled, when `k >= n`).
fn choose(n: usize, k: usize, rng: &mut SeededRng) -> Vec<usize> {
    let mut v = permutation(n, rng);
    v.truncate(k);
    v
}

/// Column features for a batch of photos: `(images * groups, P, D)` and the group count.
pub fn inputs(sys: &System, feats: &[&PhotoFeatures], mode: Mode, test_groups: usize, rng: &mut SeededRng) -> Result<(Tensor, usize)> {
    let cfg = sys.config();
    let test = mode == Mode::Test;
    let mut rows: Vec<Tensor> = Vec::new();
    let mut groups = 1;
    for f in feats {
        let n_native = f.native.dim(0)?;
        let n_arp = f.arp.dim(0)?;
        let native = |i: usize| f.native.narrow(0, i, 1);
        match cfg.id {
            SystemId::Scnn => match cfg.view {
                GlobalView::Warp => rows.push(f.warp.clone()),
                GlobalView::CenterCrop => rows.push(f.center.clone()),
                GlobalView::LocalRandomCrop if test => {
                    groups = n_native;
                    rows.extend((0..n_native).map(native).collect::<Result<Vec<_>>>()?);
                }
                GlobalView::LocalRandomCrop => rows.push(native(rng.below(n_native as u64) as usize)?),
                GlobalView::Padding => candle_core::bail!("the padded view is not in the feature cache; train SCNN-padding on pixels"),
            },
            SystemId::Dcnn => {
                let picks = if test { (0..n_native).collect() } else { vec![rng.below(n_native as u64) as usize] };
                groups = picks.len();
                for i in picks {
                    rows.push(Tensor::cat(&[&f.warp, &native(i)?], 0)?);
                }
            }
            SystemId::DmaStat | SystemId::DmaFc => {
                let m = cfg.patches;
                if m > n_native {
                    candle_core::bail!("DMA bags of {m} need at least {m} cached patches, have {n_native}");
                }
                groups = if test { test_groups.max(1) } else { 1 };
                for _ in 0..groups {
                    let idx = Tensor::new(choose(n_native, m, rng).iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
                    rows.push(f.native.index_select(&idx, 0)?);
                }
            }
            SystemId::MpAvg | SystemId::MpMin | SystemId::MpAda | SystemId::ArpMpemd => {
                if test {
                    rows.push(f.arp.clone());
                } else {
                    let idx = Tensor::new(choose(n_arp, cfg.patches, rng).iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
                    rows.push(f.arp.index_select(&idx, 0)?);
                }
            }
            id => candle_core::bail!("{id} has no small-data variant on cached features (its column must see pixels)"),
        }
    }
    Ok((Tensor::stack(&rows, 0)?, groups))
}

/// Target tensors for a batch, in the form the head's loss takes: the score (standardised)
/// for a quality head, the label for a binary head, the histogram for a distribution head,
/// the style multi-hot for a style head. A sample without that field is an error naming it.
pub fn target_tensor(kind: &HeadKind, targets: &[&Target], std: Option<&Standardizer>) -> Result<Tensor> {
    let dev = &Device::Cpu;
    let missing = |what: &str| candle_core::Error::Msg(format!("a {kind:?} head trains on {what}, which a sample lacks"));
    let n = targets.len();
    match kind {
        HeadKind::Quality => {
            let s = std.ok_or_else(|| candle_core::Error::Msg("quality targets need a standardizer".into()))?;
            let v = targets
                .iter()
                .map(|t| t.score.map(|x| s.forward(x) as f32).ok_or_else(|| missing("a score")))
                .collect::<Result<Vec<_>>>()?;
            Tensor::new(v, dev)
        }
        HeadKind::Binary => {
            let v = targets
                .iter()
                .map(|t| t.label.filter(|&l| l < 2).map(|l| l as u32).ok_or_else(|| missing("a 0/1 label")))
                .collect::<Result<Vec<_>>>()?;
            Tensor::new(v, dev)
        }
        HeadKind::Distribution { bins } => {
            let mut v = Vec::with_capacity(n * bins);
            for t in targets {
                let h = t.histogram.as_ref().filter(|h| h.len() == *bins).ok_or_else(|| missing(&format!("a {bins}-bin histogram")))?;
                let total: f64 = h.iter().sum();
                v.extend(h.iter().map(|x| (x / total.max(1e-12)) as f32));
            }
            Tensor::from_vec(v, (n, *bins), dev)
        }
        HeadKind::Styles { tags } => {
            let mut v = Vec::with_capacity(n * tags.len());
            for t in targets {
                let m =
                    t.styles.as_ref().filter(|m| m.len() == tags.len()).ok_or_else(|| missing(&format!("{} style flags", tags.len())))?;
                v.extend(m.iter().map(|&b| b as u8 as f32));
            }
            Tensor::from_vec(v, (n, tags.len()), dev)
        }
    }
}

/// Image-level loss of raw outputs `(B, out)`.
fn image_loss(kind: &HeadKind, raw: &Tensor, y: &Tensor) -> Result<Tensor> {
    match kind {
        HeadKind::Quality => (raw.squeeze(1)? - y)?.sqr()?.mean_all()?.affine(0.5, 0.0),
        HeadKind::Binary => losses::cross_entropy(raw, y),
        HeadKind::Distribution { .. } => losses::emd_loss_from_logits(raw, y, 2),
        HeadKind::Styles { .. } => losses::binary_cross_entropy_multilabel(raw, y),
    }
}

/// Per-patch average of the image-level loss, `patch_raw (B, P, out)`.
fn patch_avg_loss(kind: &HeadKind, patch_raw: &Tensor, y: &Tensor) -> Result<Tensor> {
    match kind {
        HeadKind::Quality => losses::mp_avg_from_log_probs(&losses::regression_log_probs(patch_raw, y)?),
        HeadKind::Binary => losses::mp_avg(patch_raw, y),
        _ => {
            let (b, p, o) = patch_raw.dims3()?;
            let yy = y.unsqueeze(1)?.broadcast_as((b, p, o))?.reshape((b * p, o))?;
            image_loss(kind, &patch_raw.reshape((b * p, o))?, &yy)
        }
    }
}

/// The training loss of `sys` on one batch of cached features.
pub fn batch_loss(sys: &System, feats: &Tensor, groups: usize, y: &Tensor, cfg: &FitConfig, rng: &mut SeededRng) -> Result<Tensor> {
    let images = feats.dim(0)? / groups;
    let out = sys.forward_features(feats, images, groups, true)?;
    output_loss(sys, &out, y, cfg.mpemd, rng)
}

/// The training loss of a system's outputs (from cached features or from pixels through
/// `System::forward_t`): the image-level loss of its head (plus DMA's per-patch head), paper
/// 001's MP_avg / MP_min / MP_ada, or paper 004's MPEMD_avg / MPEMD_ada. `rng` draws MP_min's patch.
pub fn output_loss(sys: &System, out: &SystemOutput, y: &Tensor, mpemd: MpemdVariant, rng: &mut SeededRng) -> Result<Tensor> {
    let kind = sys.head_kind();
    let id = sys.config().id;
    match id.loss_family() {
        LossFamily::Image => {
            let l = image_loss(kind, &out.group_raw, y)?;
            match (&out.patch_raw, id) {
                (Some(pr), SystemId::DmaStat | SystemId::DmaFc) => l + patch_avg_loss(kind, pr, y)?,
                _ => Ok(l),
            }
        }
        LossFamily::MultiPatch => {
            let pr = out.patch_raw.as_ref().ok_or_else(|| candle_core::Error::Msg("no per-patch outputs".into()))?;
            let log_p = match kind {
                HeadKind::Quality => losses::regression_log_probs(pr, y)?,
                HeadKind::Binary => losses::correct_class_log_probs(pr, y)?,
                k => candle_core::bail!("{id} trains a binary or quality head (paper 001's objectives), not {k:?}"),
            };
            match id {
                SystemId::MpAvg => losses::mp_avg_from_log_probs(&log_p),
                SystemId::MpAda => losses::mp_ada_from_log_probs(&log_p, losses::MP_ADA_BETA),
                _ => {
                    let chosen = losses::mp_min_sample_from_log_probs(&log_p, &mut || rng.uniform())?;
                    losses::mp_min_at_log_probs(&log_p, &chosen)
                }
            }
        }
        LossFamily::MultiPatchEmd => {
            let pr = out.patch_raw.as_ref().ok_or_else(|| candle_core::Error::Msg("no per-patch outputs".into()))?;
            match mpemd {
                MpemdVariant::Avg => losses::mpemd_avg(pr, y, losses::MPEMD_K, losses::MPEMD_EPS),
                MpemdVariant::Ada => losses::mpemd_ada(pr, y, losses::MPEMD_K, losses::MPEMD_EPS, losses::MPEMD_GAMMA),
            }
        }
    }
}

/// Trains the variables of `varmap` that follow the column (aggregation layers, heads) with
/// our AdamW; the column's variables stay as they are. Returns the mean training loss of
/// each epoch; `progress(epoch, loss)` returning false stops early (cancellation).
pub fn fit(
    sys: &System,
    varmap: &VarMap,
    data: &[(&PhotoFeatures, &Target)],
    std: Option<&Standardizer>,
    cfg: &FitConfig,
    mut progress: impl FnMut(usize, f64) -> bool,
) -> Result<Vec<f64>> {
    // Only what follows the column trains: the column's variables are left out.
    let column: Vec<String> = sys.pretrained_prefixes().into_iter().chain(sys.frozen_prefixes()).map(|p| format!("{p}.")).collect();
    let group = ParamGroup::from_varmap("head", varmap, |n| !column.iter().any(|p| n.starts_with(p)));
    let mut opt = AdamW::new(vec![group], AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut rng = SeededRng::new(cfg.seed);
    let mut history = Vec::new();
    for epoch in 0..cfg.epochs {
        let order = choose(data.len(), data.len(), &mut rng);
        let mut total = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(cfg.batch.max(1)) {
            let feats: Vec<&PhotoFeatures> = chunk.iter().map(|&i| data[i].0).collect();
            let targets: Vec<&Target> = chunk.iter().map(|&i| data[i].1).collect();
            let (x, groups) = inputs(sys, &feats, Mode::Train, cfg.test_groups, &mut rng)?;
            let y = target_tensor(sys.head_kind(), &targets, std)?;
            let loss = batch_loss(sys, &x, groups, &y, cfg, &mut rng)?;
            opt.step(&loss.backward()?).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            batches += 1;
        }
        let mean = total / batches.max(1) as f64;
        history.push(mean);
        if !progress(epoch, mean) {
            break;
        }
    }
    Ok(history)
}

/// Test-time predictions, one per photo (batches of 64).
pub fn predict(sys: &System, feats: &[&PhotoFeatures], cfg: &FitConfig) -> Result<Vec<Prediction>> {
    let mut rng = SeededRng::new(cfg.seed ^ 0x7e57);
    let mut out = Vec::with_capacity(feats.len());
    for chunk in feats.chunks(64) {
        let (x, groups) = inputs(sys, chunk, Mode::Test, cfg.test_groups, &mut rng)?;
        let o = sys.forward_features(&x, chunk.len(), groups, false)?;
        out.extend(sys.predict(&o)?);
    }
    Ok(out)
}

/// The single number a prediction ranks photos by: quality score (de-standardised), mean of
/// the distribution, probability of "high".
pub fn ranking_score(p: &Prediction, std: Option<&Standardizer>) -> f64 {
    match p {
        Prediction::Quality { score } => std.map_or(*score as f64, |s| s.inverse(*score as f64)),
        Prediction::Distribution { mean, .. } => *mean as f64,
        Prediction::Binary { p_high } => *p_high as f64,
        Prediction::Styles { probs } => probs.iter().copied().fold(0.0f32, f32::max) as f64,
    }
}
