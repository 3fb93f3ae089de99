//! Taste profiles (issue 8): a small head trained on one person's keep / reject decisions over
//! the frozen ImageNet Lite0 column's cached features ([`super::features`]), saved as one file.
//!
//! A profile is a linear logit `s = w · z(x) + b` on standardised column features
//! `z(x) = (x - mean) / scale` (mean and scale per feature dimension, from the profile's own
//! training photos), under one of two procedures:
//! - [`Procedure::Logistic`]: L2-regularised logistic regression on one pooled feature per
//!   photo (the warp view, or the mean of the photo's patch features). Loss: class-weighted
//!   binary cross-entropy `-sum_b a_b log Pr(y_b | x_b) / sum_b a_b + (l2 / 2) |w|^2`.
//! - [`Procedure::MpAda`]: paper 001's adaptive multi-patch objective (Sheng et al., "Attention-
//!   based Multi-Patch Aggregation for Image Aesthetic Assessment", eq. 7-8): every patch is
//!   classified by the same head and the loss is `-sum_b a_b (1/P) sum_p (1 - p^beta) log p
//!   / sum_b a_b + (l2 / 2) |w|^2` with `p = Pr(y_b | patch)`, `beta = 0.5`, the weight
//!   differentiated through (eq. 8); with all `a_b` equal and `l2 = 0` it is exactly
//!   [`super::losses::mp_ada_from_log_probs`]. At test time the patch probabilities are averaged.
//!
//! **Themes** (the user's own, e.g. one per shoot or folder): paper 003's THEME-EMD feeds a theme
//! one-hot through FC + ReLU and concatenates it with the image feature before the head; with a
//! linear head that adds a learned per-theme term to the logit. Here: `s = w · z(x) + b + c_t`
//! for a photo of theme `t`, with a unit Gaussian prior on each `c_t` (in logit units: a theme
//! moves the odds by about e^±1 unless its labels say more), i.e. a penalty `|c|^2 / (2B)` on the
//! mean loss over `B` photos, so a theme with few labels stays close to the shared score. Scoring without a theme gives the shared score (`c = 0`);
//! [`TasteProfile::score_as`] gives the theme-conditioned one.
//!
//! **Style tags** (the user's own keywords, multi-label): one more head per tag, trained the same
//! way one-vs-rest (tag present or not, among the photos that carry keywords), kept in the
//! profile as [`TagHead`]s; [`TasteProfile::tag_scores`] gives each tag's probability.
//!
//! The per-photo weights `a_b` balance the classes (each class weighs half), because a
//! photographer's rejects usually outnumber their keeps. Both losses are new here, and are
//! gradient-checked in `tests/taste.rs` ([`super::gradcheck`]).
//!
//! Training is full-batch (a profile has tens to hundreds of labels) with our AdamW
//! ([`super::optim`], no decoupled decay: the L2 term is in the loss), reports each step's loss
//! and, every `eval_every` steps, the held-out ROC AUC on an optional validation set, and stops
//! when the progress callback says so ([`TasteError::Cancelled`]).
//!
//! File format: one safetensors file (tensors `mean`, `scale`, `w`, `b`, and `themes` when the
//! profile has themes, f32) whose header
//! metadata holds `format` = [`FORMAT`] and `profile` = the JSON of [`ProfileMeta`]. It is
//! written beside its destination and renamed into place, so a crash never leaves half a
//! profile; a truncated or corrupt file loads as [`TasteError::Corrupt`], never a panic.
//!
//! **Procedure profiles** (the taste panel's "Advanced: paper procedure" mode): a profile may
//! instead hold one of the papers' procedures' checkpoints ([`ProcedureCheckpoint`]: the run's
//! `best` weights and its checkpoint metadata, trained by [`super::procedures`] on an album, a CSV
//! or an AVA folder). Such a file has `format` = [`FORMAT_PROCEDURE`], the checkpoint's tensors
//! under `ckpt.<variable>`, its `CheckpointMeta` JSON as `checkpoint` metadata and
//! [`ProcedureInfo`] inside `profile`; it has no grid head (empty [`TasteWeights`]) and scores from
//! pixels ([`super::procedures::load_model_from`]), never from the grid features. Files of
//! [`FORMAT`] (every profile written before) load as before.
//!
//! **Shared backbone** (small-data procedure profiles): the tensors of the checkpoint that are
//! bit-identical to the shipped ImageNet Lite0 tensor they were copied from (the frozen backbone:
//! compared value for value, not by name) are left out of the file
//! ([`ProcedureCheckpoint::share_backbone`]); the file records the backbone file's sha256 and each
//! left-out variable with its key in the backbone file ([`SharedBackbone`], metadata `backbone`),
//! and [`ProcedureCheckpoint::full_tensor_map`] reads them back from the shipped weights, refusing
//! (naming the profile file) a backbone file whose sha256 is not the recorded one. A profile
//! shrinks from the whole backbone (~13.7 MB) to its head. Procedure profiles written before
//! (every tensor in the file, no `backbone` metadata) load as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::features::PhotoFeatures;
use super::metrics::roc_auc;
use super::optim::{AdamW, AdamWConfig, Optimizer as _, ParamGroup};

/// The `format` metadata value of a profile file.
pub const FORMAT: &str = "keepers-taste-v1";
/// The `format` of a profile holding a paper procedure's checkpoint.
pub const FORMAT_PROCEDURE: &str = "keepers-taste-v2";
/// Paper 001's beta for MP-ada.
pub const MP_ADA_BETA: f64 = 0.5;
/// The column feature width (Lite0's pooled feature).
pub const FEATURE_DIM: usize = 1280;

#[derive(Debug, thiserror::Error)]
pub enum TasteError {
    #[error("{path} could not be read or written: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid taste profile: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("a taste profile needs at least {need} keeps and {need} rejects, got {keep} and {reject}")]
    TooFewLabels { keep: usize, reject: usize, need: usize },
    #[error("bad input: {0}")]
    Input(String),
    #[error("{path} needs the ImageNet backbone it was trained with: {reason}")]
    Backbone { path: PathBuf, reason: String },
    #[error("training was cancelled")]
    Cancelled,
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Which cached column features a profile reads for a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TasteInput {
    /// The whole photo warped to 224 x 224 (one feature; the album database stores it).
    Warp,
    /// Random 224 x 224 patches at the photo's own resolution (paper 000's patches).
    Native,
    /// Aspect-preserving crops, shorter side 256, 224 crops with flips (papers 001 and 004).
    Arp,
    /// The app's input: the quality model's regular grid of 224 x 224 patches on the photo decoded
    /// to 1024 px ([`crate::model::quality::grid_patches`]), stored in the library database. In the
    /// CLI's feature cache it reads the random native patches: the same kind of patch, drawn at
    /// other positions.
    Grid,
}

/// How the head is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Procedure {
    /// Logistic regression on the mean of the input's features.
    Logistic,
    /// Paper 001's MP-ada over the input's patches.
    MpAda,
}

/// A procedure on an input: `logistic-warp`, `logistic-native`, `mp-ada-native`, `mp-ada-arp`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TasteSystem {
    pub procedure: Procedure,
    pub input: TasteInput,
}

impl TasteSystem {
    pub const LOGISTIC_WARP: Self = Self { procedure: Procedure::Logistic, input: TasteInput::Warp };
    pub const MP_ADA_NATIVE: Self = Self { procedure: Procedure::MpAda, input: TasteInput::Native };
    pub const MP_ADA_ARP: Self = Self { procedure: Procedure::MpAda, input: TasteInput::Arp };
    /// The app's default: MP-ada over the grid patches the album database stores.
    pub const MP_ADA_GRID: Self = Self { procedure: Procedure::MpAda, input: TasteInput::Grid };
    pub const LOGISTIC_GRID: Self = Self { procedure: Procedure::Logistic, input: TasteInput::Grid };

    pub fn name(&self) -> String {
        let p = match self.procedure {
            Procedure::Logistic => "logistic",
            Procedure::MpAda => "mp-ada",
        };
        let i = match self.input {
            TasteInput::Warp => "warp",
            TasteInput::Native => "native",
            TasteInput::Arp => "arp",
            TasteInput::Grid => "grid",
        };
        format!("{p}-{i}")
    }

    /// Parses [`Self::name`]'s form (case-insensitive, `_` for `-` allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase().replace('_', "-");
        let (p, i) = s.rsplit_once('-')?;
        let procedure = match p {
            "logistic" => Procedure::Logistic,
            "mp-ada" => Procedure::MpAda,
            _ => return None,
        };
        let input = match i {
            "warp" => TasteInput::Warp,
            "native" => TasteInput::Native,
            "arp" => TasteInput::Arp,
            "grid" => TasteInput::Grid,
            _ => return None,
        };
        Some(Self { procedure, input })
    }

    /// The features this system reads from a photo's cache entry, `(P, 1280)`.
    pub fn input_of<'a>(&self, f: &'a PhotoFeatures) -> &'a Tensor {
        match self.input {
            TasteInput::Warp => &f.warp,
            TasteInput::Native | TasteInput::Grid => &f.native,
            TasteInput::Arp => &f.arp,
        }
    }
}

impl std::fmt::Display for TasteSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Training settings; the defaults are the ones `keepers bench taste` reports
/// (`results/taste_fewshot.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TasteConfig {
    pub system: TasteSystem,
    /// Full-batch optimiser steps.
    pub steps: usize,
    pub lr: f64,
    /// L2 penalty on `w` (not on the bias), on standardised features.
    pub l2: f64,
    /// Standardise each feature dimension by its own spread (true) or all by one common
    /// spread (false, keeps the backbone's relative scales).
    pub per_dim_scale: bool,
    /// Weigh each class by half (true) or each photo equally.
    pub balance: bool,
    /// Held-out AUC every this many steps when a validation set is given (0: never).
    pub eval_every: usize,
}

impl Default for TasteConfig {
    fn default() -> Self {
        Self { system: TasteSystem::MP_ADA_NATIVE, steps: 200, lr: 0.01, l2: 1.0, per_dim_scale: false, balance: true, eval_every: 10 }
    }
}

/// What the progress callback sees after each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 0-based step (full-batch: one step is one epoch).
    pub step: usize,
    pub steps: usize,
    /// The training loss (data term + L2) before this step's update.
    pub loss: f64,
    /// Held-out ROC AUC when a validation set was given and this step evaluated it.
    pub validation_auc: Option<f64>,
}

/// Figures stored with a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TasteMetrics {
    pub n_keep: usize,
    pub n_reject: usize,
    pub steps: usize,
    pub final_loss: f64,
    /// ROC AUC on the training labels (optimistic: says only that it fitted).
    pub train_auc: Option<f64>,
    /// ROC AUC on held-out labels the profile did not train on, and their count.
    pub validation_auc: Option<f64>,
    pub validation_n: usize,
    pub seconds: f64,
}

/// The learned numbers: standardiser and linear head.
#[derive(Debug, Clone, PartialEq)]
pub struct TasteWeights {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub w: Vec<f32>,
    pub b: f32,
    /// Per-theme logit terms `c_t`, in the order of [`TasteProfile::themes`] (empty: no themes).
    pub themes: Vec<f32>,
}

/// One of the user's style tags, learned one-vs-rest.
#[derive(Debug, Clone, PartialEq)]
pub struct TagHead {
    pub info: TagInfo,
    /// Its own standardiser and linear head (no themes).
    pub weights: TasteWeights,
}

impl TagHead {
    pub fn name(&self) -> &str {
        &self.info.name
    }
}

/// What is known about a tag head (stored in the file's metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagInfo {
    pub name: String,
    /// Photos with the tag and without it (among those with keywords) it learned from.
    pub n_pos: usize,
    pub n_neg: usize,
    /// ROC AUC on held-out photos before the final fit, when enough were there to hold out.
    pub heldout_auc: Option<f64>,
    pub heldout_n: usize,
}

/// Everything about a profile but its weights (the file's `profile` metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileMeta {
    pub name: String,
    pub system: TasteSystem,
    /// Seconds since the Unix epoch (UTC).
    pub created: u64,
    pub n_labels: usize,
    pub metrics: TasteMetrics,
    pub config: TasteConfig,
    /// sha256 of the backbone weights the features came from (empty when unknown).
    pub backbone_sha256: String,
    /// The user's themes the profile conditions on (empty: none).
    #[serde(default)]
    pub themes: Vec<String>,
    /// The user's style tags the profile learned (empty: none).
    #[serde(default)]
    pub tags: Vec<TagInfo>,
    /// A procedure profile's description (absent in grid-head profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<ProcedureInfo>,
}

/// How a procedure profile was trained (stored in its metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcedureInfo {
    /// Procedure name (`mp-ada`, `arp-mpemd-avg`, ...) and system (`MP-ada`, `ARP-MPEMD`, ...).
    pub procedure: String,
    pub system: String,
    pub task: super::procedures::Task,
    /// The small-data variant (frozen ImageNet backbone).
    pub small_data: bool,
    /// Where the labels came from (the album, the CSV file, the AVA folder).
    pub source: String,
    /// Photos trained on and held out for validation.
    pub n_train: usize,
    pub n_val: usize,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    /// Validation metrics of the saved (best) checkpoint; empty without a validation set.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Quality task: the training scores' range, which maps a prediction onto 0..1 for display.
    #[serde(default)]
    pub score_range: Option<(f64, f64)>,
    /// Images of the set that could not be read (left out), each `path: reason`.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Keep / reject runs: the held-out comparison with the untuned model (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout: Option<super::taste_eval::HeldOutReport>,
}

impl ProcedureInfo {
    /// A prediction as a 0..1 display score (higher is better): the keep probability (binary),
    /// the distribution's mean on its bins, the score within the training range (quality);
    /// `None` for the styles task, which has no single score.
    pub fn display_score(&self, p: &crate::model::heads::Prediction) -> Option<f32> {
        use crate::model::heads::Prediction as P;
        match p {
            P::Binary { p_high } => Some(p_high.clamp(0.0, 1.0)),
            P::Distribution { probs, mean, .. } => {
                let k = probs.len().max(2) as f32;
                Some(((mean - 1.0) / (k - 1.0)).clamp(0.0, 1.0))
            }
            P::Quality { score } => {
                let (lo, hi) = self.score_range?;
                (hi > lo).then(|| ((*score as f64 - lo) / (hi - lo)).clamp(0.0, 1.0) as f32)
            }
            P::Styles { .. } => None,
        }
    }
}

/// A paper procedure's trained checkpoint inside a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcedureCheckpoint {
    pub info: ProcedureInfo,
    /// The checkpoint's metadata as the procedure wrote it (`RUN/best.json`).
    pub checkpoint: super::checkpoint::CheckpointMeta,
    /// Its weights: name, shape, values (f32); without the backbone's when `backbone` is set.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// The backbone tensors left out of `tensors` (identical to the shipped weights'); `None`:
    /// every tensor is in `tensors` (full-tune runs, and profiles written before).
    pub backbone: Option<SharedBackbone>,
}

/// Backbone tensors a procedure profile leaves out, restored from the shipped weights on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedBackbone {
    /// sha256 of the backbone file they were compared with (and must be restored from).
    pub sha256: String,
    /// Each left-out variable, sorted by name.
    pub tensors: Vec<SharedTensor>,
}

/// One left-out variable: its name in the checkpoint and its key in the backbone file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTensor {
    pub name: String,
    pub key: String,
}

/// The backbone file's tensors as f32 values by key, with their shapes.
fn backbone_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| format!("backbone tensors: {e}"))
}

impl ProcedureCheckpoint {
    /// The tensors in the file by variable name (without the shared backbone's: see
    /// [`Self::full_tensor_map`]).
    pub fn tensor_map(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        self.tensors.iter().map(|(n, s, v)| Ok((n.clone(), Tensor::from_slice(v, s.as_slice(), &Device::Cpu)?))).collect()
    }

    /// Leaves out of `tensors` every tensor bit-identical (same shape, same f32 bits) to the
    /// backbone file's tensor it came from: a variable `<prefix>.<key>` (the column's prefix, e.g.
    /// `column._blocks.3._bn1.weight`) against the file's `<key>`. `backbone` is the backbone
    /// file's bytes (verified by the caller). Returns how many were left out.
    pub fn share_backbone(&mut self, backbone: &[u8]) -> Result<usize, String> {
        let sha256 = crate::model::weights::sha256_hex(backbone);
        if let Some(b) = &self.backbone
            && b.sha256 != sha256
        {
            return Err(format!("the checkpoint already shares tensors with another backbone (sha256 {})", b.sha256));
        }
        let file = backbone_tensors(backbone)?;
        let mut shared = self.backbone.take().map(|b| b.tensors).unwrap_or_default();
        let mut kept = Vec::with_capacity(self.tensors.len());
        for (name, shape, values) in std::mem::take(&mut self.tensors) {
            let source = name.match_indices('.').map(|(i, _)| &name[i + 1..]).find_map(|key| file.get(key).map(|t| (key.to_string(), t)));
            let same = match source {
                Some((_, t)) if t.dims() == shape.as_slice() => {
                    let v =
                        t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string())?;
                    v.len() == values.len() && v.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits())
                }
                _ => false,
            };
            match (same, source) {
                (true, Some((key, _))) => shared.push(SharedTensor { name, key }),
                _ => kept.push((name, shape, values)),
            }
        }
        self.tensors = kept;
        let n = shared.len();
        shared.sort_by(|a, b| a.name.cmp(&b.name));
        self.backbone = (!shared.is_empty()).then_some(SharedBackbone { sha256, tensors: shared });
        Ok(n)
    }

    /// Every tensor of the checkpoint by variable name: those in the file, and the shared
    /// backbone's read back from `lite0`, which must have the recorded sha256. `origin` (the
    /// profile's file) is named in errors.
    pub fn full_tensor_map(&self, lite0: &Path, origin: &Path) -> Result<HashMap<String, Tensor>, TasteError> {
        let corrupt = |reason: String| TasteError::Corrupt { path: origin.to_owned(), reason };
        let mut map = self.tensor_map().map_err(|e| corrupt(e.to_string()))?;
        let Some(b) = &self.backbone else { return Ok(map) };
        let bad = |reason: String| TasteError::Backbone { path: origin.to_owned(), reason };
        let bytes = std::fs::read(lite0).map_err(|e| bad(format!("{} could not be read: {e}", lite0.display())))?;
        let actual = crate::model::weights::sha256_hex(&bytes);
        if actual != b.sha256 {
            return Err(bad(format!(
                "it leaves out {} backbone tensors, to be read from the backbone file with sha256 {}, but {} has sha256 {actual} (another version); retrain the profile with these weights",
                b.tensors.len(),
                b.sha256,
                lite0.display()
            )));
        }
        let file = backbone_tensors(&bytes).map_err(|e| bad(format!("{}: {e}", lite0.display())))?;
        for s in &b.tensors {
            let t = file.get(&s.key).ok_or_else(|| bad(format!("{} has no tensor {} (for {})", lite0.display(), s.key, s.name)))?;
            let t = t.to_dtype(DType::F32).map_err(|e| bad(format!("{}: {}: {e}", lite0.display(), s.key)))?;
            map.insert(s.name.clone(), t);
        }
        Ok(map)
    }
}

/// A trained taste profile.
#[derive(Debug, Clone, PartialEq)]
pub struct TasteProfile {
    pub name: String,
    pub system: TasteSystem,
    pub created: u64,
    pub n_labels: usize,
    pub metrics: TasteMetrics,
    pub config: TasteConfig,
    pub backbone_sha256: String,
    /// The user's themes, in the order of `weights.themes`.
    pub themes: Vec<String>,
    pub weights: TasteWeights,
    /// The user's style tags.
    pub tags: Vec<TagHead>,
    /// A procedure profile's checkpoint (then `weights` is empty and the profile scores from
    /// pixels).
    pub procedure: Option<std::sync::Arc<ProcedureCheckpoint>>,
}

/// One labelled photo: its input features `(P, D)`, whether it was kept, and its theme (an index
/// into the run's theme names) when the profile learns themes.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub features: &'a Tensor,
    pub keep: bool,
    pub theme: Option<usize>,
}

/// Per-patch logits `(B, P)` of standardised features `z (B*P, D)`: `z w + b`, plus `onehot (B, T)
/// c` per photo when themes are given (see the module docs).
pub fn taste_logits(
    z: &Tensor,
    b: usize,
    p: usize,
    w: &Tensor,
    bias: &Tensor,
    themes: Option<(&Tensor, &Tensor)>,
) -> candle_core::Result<Tensor> {
    let s = z.matmul(&w.unsqueeze(1)?)?.reshape((b, p))?.broadcast_add(bias)?;
    match themes {
        None => Ok(s),
        Some((onehot, c)) => s.broadcast_add(&onehot.matmul(&c.unsqueeze(1)?)?),
    }
}

/// Log-probability of the correct class from logits `s` and signs `t = 2y - 1` (same shape):
/// `log sigmoid(t s) = -softplus(-t s)`, computed stably.
fn log_sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    // log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|))
    let min0 = x.minimum(0.0)?;
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    min0 - tail
}

/// The taste loss on per-patch logits `s (B, P)` (P = 1 for logistic), labels `y (B)` in
/// {0, 1}, per-photo weights `a (B)`, L2 on `w`: see the module docs. `procedure` chooses
/// the data term (for [`Procedure::Logistic`] `P` must be 1). f32 or f64.
pub fn taste_loss(procedure: Procedure, s: &Tensor, y: &Tensor, a: &Tensor, w: &Tensor, l2: f64) -> candle_core::Result<Tensor> {
    let (b, p) = s.dims2()?;
    let sign = y.to_dtype(s.dtype())?.affine(2.0, -1.0)?.reshape((b, 1))?.broadcast_as((b, p))?;
    let log_p = log_sigmoid(&(s * sign)?)?;
    let per_patch = match procedure {
        Procedure::Logistic => {
            if p != 1 {
                candle_core::bail!("logistic taste loss takes one logit per photo, got {p}");
            }
            log_p
        }
        // w_beta = 1 - p^beta = 1 - exp(beta log p), differentiated through (eq. 8).
        Procedure::MpAda => ((log_p.affine(MP_ADA_BETA, 0.0)?.exp()?.neg()? + 1.0)? * &log_p)?,
    };
    let per_photo = per_patch.mean(1)?;
    let a = a.to_dtype(s.dtype())?;
    let data = ((per_photo * &a)?.sum_all()? / a.sum_all()?)?.neg()?;
    data + (w.sqr()?.sum_all()? * (l2 / 2.0))?
}

/// Per-photo weights that give each class half the total (or all 1 when `balance` is off).
fn class_weights(keep: &[bool], balance: bool) -> Vec<f64> {
    let nk = keep.iter().filter(|&&k| k).count().max(1) as f64;
    let nr = keep.iter().filter(|&&k| !k).count().max(1) as f64;
    let n = keep.len() as f64;
    keep.iter()
        .map(|&k| {
            if !balance {
                1.0
            } else if k {
                n / (2.0 * nk)
            } else {
                n / (2.0 * nr)
            }
        })
        .collect()
}

fn check_features(t: &Tensor) -> Result<(usize, usize), TasteError> {
    let (p, d) = t.dims2().map_err(|_| TasteError::Input(format!("features must be (patches, {FEATURE_DIM}), got {:?}", t.dims())))?;
    if p == 0 || d != FEATURE_DIM {
        return Err(TasteError::Input(format!("features must be (patches >= 1, {FEATURE_DIM}), got ({p}, {d})")));
    }
    Ok((p, d))
}

/// `(B, P, D)` f32 of the examples' features (all must have the same P), or the per-photo mean
/// `(B, 1, D)` for the logistic procedure.
fn stack_inputs(procedure: Procedure, feats: &[&Tensor]) -> Result<Tensor, TasteError> {
    let mut rows = Vec::with_capacity(feats.len());
    let mut p0 = None;
    for f in feats {
        let (p, _) = check_features(f)?;
        let f = f.to_dtype(DType::F32)?;
        rows.push(match procedure {
            Procedure::Logistic => f.mean_keepdim(0)?,
            Procedure::MpAda => {
                if *p0.get_or_insert(p) != p {
                    return Err(TasteError::Input(format!("photos have {} and {p} patches: MP-ada needs the same count", p0.unwrap())));
                }
                f
            }
        });
    }
    Ok(Tensor::stack(&rows, 0)?)
}

/// Mean and scale per dimension over every patch row of `x (B, P, D)`.
fn standardiser(x: &Tensor, per_dim: bool) -> candle_core::Result<(Tensor, Tensor)> {
    let d = x.dim(2)?;
    let flat = x.reshape(((), d))?;
    let mean = flat.mean(0)?;
    let var = flat.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let scale = if per_dim {
        // Floor: a dimension that barely varies in a few photos must not be blown up.
        let floor = var.mean_all()?.sqrt()?.to_scalar::<f32>()? * 0.1;
        var.sqrt()?.maximum(floor.max(1e-6))?
    } else {
        let s = var.mean_all()?.sqrt()?.to_scalar::<f32>()?.max(1e-6);
        Tensor::full(s, d, x.device())?
    };
    Ok((mean, scale))
}

/// The training objective on standardised features `z (B*P, D)`: [`taste_logits`] then
/// [`taste_loss`], plus `(theme_l2 / 2) |c|^2` on the theme terms when there are themes. What
/// [`train`] minimises (gradient-checked in `tests/taste.rs`).
#[allow(clippy::too_many_arguments)]
pub fn taste_objective(
    procedure: Procedure,
    z: &Tensor,
    (b, p): (usize, usize),
    w: &Tensor,
    bias: &Tensor,
    themes: Option<(&Tensor, &Tensor)>,
    y: &Tensor,
    a: &Tensor,
    (l2, theme_l2): (f64, f64),
) -> candle_core::Result<Tensor> {
    let s = taste_logits(z, b, p, w, bias, themes)?;
    let loss = taste_loss(procedure, &s, y, a, w, l2)?;
    match themes {
        None => Ok(loss),
        Some((_, c)) => loss + (c.sqr()?.sum_all()? * (theme_l2 / 2.0))?,
    }
}

/// `(B, T)` one-hot rows of the examples' themes (all zero for a photo without one).
fn theme_onehot(set: &[Example], t: usize, dtype: DType) -> Result<Tensor, TasteError> {
    let mut v = vec![0f32; set.len() * t];
    for (i, e) in set.iter().enumerate() {
        if let Some(k) = e.theme {
            if k >= t {
                return Err(TasteError::Input(format!("theme {k} of {t}")));
            }
            v[i * t + k] = 1.0;
        }
    }
    Ok(Tensor::from_vec(v, (set.len(), t), &Device::Cpu)?.to_dtype(dtype)?)
}

/// Seconds since the Unix epoch, now.
fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Trains a profile on `train` (with at least `min_per_class` keeps and rejects), conditioned on
/// `themes` when not empty (the examples' theme indices point into it), reporting
/// every step to `progress`; `validation` (never trained on) is scored every
/// `cfg.eval_every` steps. `progress` returning false cancels: [`TasteError::Cancelled`].
#[allow(clippy::too_many_arguments)]
pub fn train(
    name: &str,
    train: &[Example],
    validation: &[Example],
    cfg: &TasteConfig,
    themes: &[String],
    backbone_sha256: &str,
    mut progress: impl FnMut(&Progress) -> bool,
) -> Result<TasteProfile, TasteError> {
    const MIN_PER_CLASS: usize = 2;
    let start = std::time::Instant::now();
    let keep: Vec<bool> = train.iter().map(|e| e.keep).collect();
    let (nk, nr) = (keep.iter().filter(|&&k| k).count(), keep.iter().filter(|&&k| !k).count());
    if nk < MIN_PER_CLASS || nr < MIN_PER_CLASS {
        return Err(TasteError::TooFewLabels { keep: nk, reject: nr, need: MIN_PER_CLASS });
    }
    let procedure = cfg.system.procedure;
    let x = stack_inputs(procedure, &train.iter().map(|e| e.features).collect::<Vec<_>>())?;
    let (b, p, d) = x.dims3()?;
    let (mean, scale) = standardiser(&x, cfg.per_dim_scale)?;
    let z = x.broadcast_sub(&mean)?.broadcast_div(&scale)?;
    let dev = Device::Cpu;
    let w = Var::zeros(d, DType::F32, &dev)?;
    let bias = Var::zeros(1, DType::F32, &dev)?;
    let y = Tensor::new(keep.iter().map(|&k| k as u8 as f32).collect::<Vec<_>>(), &dev)?;
    let a = Tensor::new(class_weights(&keep, cfg.balance).iter().map(|&v| v as f32).collect::<Vec<_>>(), &dev)?;
    let t = themes.len();
    let c = Var::zeros(t.max(1), DType::F32, &dev)?;
    let onehot = if t > 0 { Some(theme_onehot(train, t, DType::F32)?) } else { None };
    let mut vars = vec![("w".to_string(), w.clone()), ("b".to_string(), bias.clone())];
    if t > 0 {
        vars.push(("themes".to_string(), c.clone()));
    }
    let group = ParamGroup::new("taste", vars);
    let mut opt = AdamW::new(vec![group], AdamWConfig { lr: cfg.lr, weight_decay: 0.0, ..Default::default() })
        .map_err(|e| TasteError::Input(e.to_string()))?;
    let zflat = z.reshape((b * p, d))?;
    let mut final_loss = f64::NAN;
    let mut steps = 0;
    for step in 0..cfg.steps {
        let th = onehot.as_ref().map(|o| (o, c.as_tensor()));
        let loss = taste_objective(procedure, &zflat, (b, p), w.as_tensor(), bias.as_tensor(), th, &y, &a, (cfg.l2, 1.0 / b as f64))?;
        final_loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !final_loss.is_finite() {
            return Err(TasteError::Input(format!("the loss diverged at step {step} (lr {} too high?)", cfg.lr)));
        }
        opt.step(&loss.backward()?).map_err(|e| TasteError::Input(e.to_string()))?;
        steps = step + 1;
        let validation_auc = if !validation.is_empty() && cfg.eval_every > 0 && (steps % cfg.eval_every == 0 || steps == cfg.steps) {
            let weights = snapshot(&mean, &scale, &w, &bias, (t > 0).then_some(&c))?;
            auc_of(&weights, procedure, validation)?
        } else {
            None
        };
        if !progress(&Progress { step, steps: cfg.steps, loss: final_loss, validation_auc }) {
            return Err(TasteError::Cancelled);
        }
    }
    let weights = snapshot(&mean, &scale, &w, &bias, (t > 0).then_some(&c))?;
    let train_auc = auc_of(&weights, procedure, train)?;
    let validation_auc = if validation.is_empty() { None } else { auc_of(&weights, procedure, validation)? };
    let metrics = TasteMetrics {
        n_keep: nk,
        n_reject: nr,
        steps,
        final_loss,
        train_auc,
        validation_auc,
        validation_n: validation.len(),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(TasteProfile {
        name: name.to_string(),
        system: cfg.system,
        created: now_unix(),
        n_labels: train.len(),
        metrics,
        config: cfg.clone(),
        backbone_sha256: backbone_sha256.to_string(),
        themes: themes.to_vec(),
        weights,
        tags: Vec::new(),
        procedure: None,
    })
}

fn snapshot(mean: &Tensor, scale: &Tensor, w: &Var, b: &Var, themes: Option<&Var>) -> candle_core::Result<TasteWeights> {
    Ok(TasteWeights {
        mean: mean.to_vec1()?,
        scale: scale.to_vec1()?,
        w: w.as_tensor().to_vec1()?,
        b: b.as_tensor().to_vec1::<f32>()?[0],
        themes: match themes {
            Some(c) => c.as_tensor().to_vec1()?,
            None => Vec::new(),
        },
    })
}

fn auc_of(weights: &TasteWeights, procedure: Procedure, set: &[Example]) -> Result<Option<f64>, TasteError> {
    let scores = set.iter().map(|e| score_with(weights, procedure, e.features, e.theme).map(f64::from)).collect::<Result<Vec<_>, _>>()?;
    Ok(roc_auc(&scores, &set.iter().map(|e| e.keep).collect::<Vec<_>>()))
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Probability of "keep" for one photo's input features `(P, D)`, conditioned on a theme if given.
fn score_with(weights: &TasteWeights, procedure: Procedure, features: &Tensor, theme: Option<usize>) -> Result<f32, TasteError> {
    let (p, d) = check_features(features)?;
    if weights.w.len() != d {
        return Err(TasteError::Input(format!("the profile has {} weights, the features {d} dimensions", weights.w.len())));
    }
    let rows = features.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let offset = match theme {
        None => 0.0,
        Some(t) => *weights.themes.get(t).ok_or_else(|| TasteError::Input(format!("theme {t} of {}", weights.themes.len())))?,
    };
    let logit = |x: &[f32]| -> f32 {
        let mut s = weights.b + offset;
        for (j, xj) in x.iter().enumerate().take(d) {
            s += weights.w[j] * (xj - weights.mean[j]) / weights.scale[j];
        }
        s
    };
    Ok(match procedure {
        Procedure::Logistic => {
            let mut m = vec![0f32; d];
            for r in &rows {
                for (mj, x) in m.iter_mut().zip(r) {
                    *mj += x / p as f32;
                }
            }
            sigmoid(logit(&m))
        }
        Procedure::MpAda => rows.iter().map(|r| sigmoid(logit(r))).sum::<f32>() / p as f32,
    })
}

/// The JSON header of a safetensors file with f32 tensors, and the data after it.
fn serialize(tensors: &[(&str, Vec<usize>, &[f32])], metadata: &HashMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("string map"));
    let mut data = Vec::new();
    for (name, shape, v) in tensors {
        let start = data.len();
        for x in *v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        header.insert((*name).into(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
    // The safetensors writer pads the header with spaces to a multiple of 8.
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// The `__metadata__` of a safetensors buffer, checked against its length.
fn read_metadata(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    let n = bytes.get(..8).ok_or("shorter than a safetensors header")?;
    let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
    let end = 8u64.checked_add(n).filter(|&e| e <= bytes.len() as u64).ok_or("header length runs past the end of the file")?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..end as usize]).map_err(|e| format!("header: {e}"))?;
    let meta = header.get("__metadata__").ok_or("no metadata")?;
    serde_json::from_value(meta.clone()).map_err(|e| format!("metadata: {e}"))
}

impl TasteProfile {
    /// What a 0..1 display score of this profile means, as the app writes it: the keep
    /// probability of a keep / reject profile (`73 % keep`), the predicted distribution's mean
    /// on its bins (`mean 3.8 of 1–5`), or the position in the training scores' range.
    pub fn score_text(&self, v: f32) -> String {
        use super::procedures::Task;
        match self.procedure.as_ref().map(|p| &p.info.task) {
            Some(Task::Distribution { bins }) => {
                let k = (*bins).max(2) as f32;
                format!("mean {:.1} of 1–{}", 1.0 + v * (k - 1.0), *bins)
            }
            Some(Task::Quality) => format!("{:.0} % of the training score range", v * 100.0),
            _ => format!("{:.0} % keep", v * 100.0),
        }
    }

    /// Probability that the person keeps the photo, from its input features `(P, 1280)`
    /// (`self.system.input`'s: the warp feature, the native patches or the ARP crops).
    pub fn score(&self, features: &Tensor) -> Result<f32, TasteError> {
        self.grid_head()?;
        score_with(&self.weights, self.system.procedure, features, None)
    }

    /// [`Self::score`] conditioned on one of the profile's themes (by name); `None` when the
    /// profile has no such theme.
    pub fn score_as(&self, features: &Tensor, theme: &str) -> Option<Result<f32, TasteError>> {
        let t = self.themes.iter().position(|n| n == theme)?;
        if let Err(e) = self.grid_head() {
            return Some(Err(e));
        }
        Some(score_with(&self.weights, self.system.procedure, features, Some(t)))
    }

    /// [`Self::score`] on a photo's cached features (picks the profile's input).
    pub fn score_photo(&self, f: &PhotoFeatures) -> Result<f32, TasteError> {
        self.score(self.system.input_of(f))
    }

    /// Errors for a procedure profile, which has no grid head (it scores from pixels).
    fn grid_head(&self) -> Result<(), TasteError> {
        match &self.procedure {
            Some(c) => Err(TasteError::Input(format!(
                "profile “{}” is a {} checkpoint: it scores photos from their pixels, not from the stored grid features",
                self.name, c.info.procedure
            ))),
            None => Ok(()),
        }
    }

    pub fn meta(&self) -> ProfileMeta {
        ProfileMeta {
            name: self.name.clone(),
            system: self.system,
            created: self.created,
            n_labels: self.n_labels,
            metrics: self.metrics.clone(),
            config: self.config.clone(),
            backbone_sha256: self.backbone_sha256.clone(),
            themes: self.themes.clone(),
            tags: self.tags.iter().map(|t| t.info.clone()).collect(),
            procedure: self.procedure.as_ref().map(|c| c.info.clone()),
        }
    }

    /// Each style tag's probability for one photo's input features, in the order of `self.tags`.
    pub fn tag_scores(&self, features: &Tensor) -> Result<Vec<f32>, TasteError> {
        self.tags.iter().map(|t| score_with(&t.weights, self.system.procedure, features, None)).collect()
    }

    /// Writes the profile to `path` (one file), atomically: a temporary file beside it,
    /// renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), TasteError> {
        let bytes = match &self.procedure {
            Some(c) => self.procedure_bytes(c),
            None => self.head_bytes(),
        };
        let io = |source| TasteError::Io { path: path.to_owned(), source };
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// A procedure profile's file: the checkpoint's tensors under `ckpt.`, its metadata as JSON.
    fn procedure_bytes(&self, c: &ProcedureCheckpoint) -> Vec<u8> {
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT_PROCEDURE.to_string()),
            ("profile".to_string(), serde_json::to_string(&self.meta()).expect("profile metadata serialises")),
            ("checkpoint".to_string(), serde_json::to_string(&c.checkpoint).expect("checkpoint metadata serialises")),
        ]);
        if let Some(b) = &c.backbone {
            meta.insert("backbone".to_string(), serde_json::to_string(b).expect("backbone record serialises"));
        }
        let names: Vec<String> = c.tensors.iter().map(|(n, _, _)| format!("ckpt.{n}")).collect();
        let tensors: Vec<(&str, Vec<usize>, &[f32])> =
            c.tensors.iter().zip(&names).map(|((_, shape, v), n)| (n.as_str(), shape.clone(), v.as_slice())).collect();
        serialize(&tensors, &meta)
    }

    /// A grid-head profile's file ([`FORMAT`], unchanged).
    fn head_bytes(&self) -> Vec<u8> {
        let d = self.weights.w.len();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("profile".to_string(), serde_json::to_string(&self.meta()).expect("profile metadata serialises")),
        ]);
        let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = vec![
            ("mean", vec![d], &self.weights.mean),
            ("scale", vec![d], &self.weights.scale),
            ("w", vec![d], &self.weights.w),
            ("b", vec![1], std::slice::from_ref(&self.weights.b)),
        ];
        if !self.weights.themes.is_empty() {
            tensors.push(("themes", vec![self.weights.themes.len()], &self.weights.themes));
        }
        let names: Vec<[String; 4]> = (0..self.tags.len())
            .map(|i| [format!("tag.{i}.mean"), format!("tag.{i}.scale"), format!("tag.{i}.w"), format!("tag.{i}.b")])
            .collect();
        for (t, n) in self.tags.iter().zip(&names) {
            tensors.push((&n[0], vec![d], &t.weights.mean));
            tensors.push((&n[1], vec![d], &t.weights.scale));
            tensors.push((&n[2], vec![d], &t.weights.w));
            tensors.push((&n[3], vec![1], std::slice::from_ref(&t.weights.b)));
        }
        serialize(&tensors, &meta)
    }

    /// Reads a profile written by [`Self::save`]. A missing file is [`TasteError::Io`]; a
    /// truncated, corrupt or foreign file is [`TasteError::Corrupt`].
    pub fn load(path: &Path) -> Result<Self, TasteError> {
        let bytes = std::fs::read(path).map_err(|source| TasteError::Io { path: path.to_owned(), source })?;
        Self::from_bytes(&bytes).map_err(|reason| TasteError::Corrupt { path: path.to_owned(), reason })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let meta = read_metadata(bytes)?;
        let procedure = match meta.get("format") {
            Some(f) if f == FORMAT => false,
            Some(f) if f == FORMAT_PROCEDURE => true,
            other => return Err(format!("format {other:?}, expected {FORMAT:?} or {FORMAT_PROCEDURE:?}")),
        };
        let m: ProfileMeta =
            serde_json::from_str(meta.get("profile").ok_or("no profile metadata")?).map_err(|e| format!("profile metadata: {e}"))?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| format!("tensors: {e}"))?;
        if procedure {
            return Self::procedure_from(m, &meta, &tensors);
        }
        let get = |k: &str, len: usize| -> Result<Vec<f32>, String> {
            let t = tensors.get(k).ok_or(format!("no tensor {k}"))?;
            if t.dtype() != DType::F32 || t.dims() != [len] {
                return Err(format!("tensor {k}: {:?} {:?}, expected F32 [{len}]", t.dtype(), t.dims()));
            }
            let v = t.to_vec1::<f32>().map_err(|e| e.to_string())?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!("tensor {k} holds a non-finite value"));
            }
            Ok(v)
        };
        let d = FEATURE_DIM;
        let themes = if m.themes.is_empty() { Vec::new() } else { get("themes", m.themes.len())? };
        let weights = TasteWeights { mean: get("mean", d)?, scale: get("scale", d)?, w: get("w", d)?, b: get("b", 1)?[0], themes };
        let mut tags = Vec::with_capacity(m.tags.len());
        for (i, info) in m.tags.iter().enumerate() {
            let w = TasteWeights {
                mean: get(&format!("tag.{i}.mean"), d)?,
                scale: get(&format!("tag.{i}.scale"), d)?,
                w: get(&format!("tag.{i}.w"), d)?,
                b: get(&format!("tag.{i}.b"), 1)?[0],
                themes: Vec::new(),
            };
            if w.scale.iter().any(|&s| s <= 0.0) {
                return Err(format!("tag {i}: a non-positive scale"));
            }
            tags.push(TagHead { info: info.clone(), weights: w });
        }
        if weights.scale.iter().any(|&s| s <= 0.0) {
            return Err("a non-positive scale".into());
        }
        Ok(Self::with_meta(m, weights, tags, None))
    }

    /// A profile of `m`'s description with these weights, tags and checkpoint.
    fn with_meta(
        m: ProfileMeta,
        weights: TasteWeights,
        tags: Vec<TagHead>,
        procedure: Option<std::sync::Arc<ProcedureCheckpoint>>,
    ) -> Self {
        Self {
            name: m.name,
            system: m.system,
            created: m.created,
            n_labels: m.n_labels,
            metrics: m.metrics,
            config: m.config,
            backbone_sha256: m.backbone_sha256,
            themes: m.themes,
            weights,
            tags,
            procedure,
        }
    }

    fn procedure_from(m: ProfileMeta, meta: &HashMap<String, String>, tensors: &HashMap<String, Tensor>) -> Result<Self, String> {
        let info = m.procedure.clone().ok_or("a procedure profile without its procedure description")?;
        let checkpoint: super::checkpoint::CheckpointMeta = serde_json::from_str(meta.get("checkpoint").ok_or("no checkpoint metadata")?)
            .map_err(|e| format!("checkpoint metadata: {e}"))?;
        let mut list = Vec::with_capacity(tensors.len());
        for (k, t) in tensors {
            let Some(name) = k.strip_prefix("ckpt.") else { return Err(format!("unexpected tensor {k}")) };
            if t.dtype() != DType::F32 {
                return Err(format!("tensor {k}: {:?}, expected F32", t.dtype()));
            }
            let v = t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(|e| format!("tensor {k}: {e}"))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!("tensor {k} holds a non-finite value"));
            }
            list.push((name.to_string(), t.dims().to_vec(), v));
        }
        if list.is_empty() {
            return Err("a procedure profile without weights".into());
        }
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let backbone: Option<SharedBackbone> = match meta.get("backbone") {
            Some(b) => Some(serde_json::from_str(b).map_err(|e| format!("backbone metadata: {e}"))?),
            None => None,
        };
        if let Some(b) = &backbone
            && let Some(s) = b.tensors.iter().find(|s| list.iter().any(|(n, _, _)| *n == s.name))
        {
            return Err(format!("tensor {} is both in the file and shared with the backbone", s.name));
        }
        let empty = TasteWeights { mean: Vec::new(), scale: Vec::new(), w: Vec::new(), b: 0.0, themes: Vec::new() };
        let ckpt = ProcedureCheckpoint { info, checkpoint, tensors: list, backbone };
        Ok(Self::with_meta(m, empty, Vec::new(), Some(std::sync::Arc::new(ckpt))))
    }
}
