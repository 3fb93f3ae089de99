//! The shipped technical-quality model: a ridge-regression head on multi-level features of
//! the frozen ImageNet EfficientNet-Lite0 ([`super::multilevel`]: per-channel mean and std of
//! the stem, every stage and the head), regressed on the LIVE In the Wild Image Quality
//! Challenge MOS (379 photos, `../shared/data/livec/`), trained by `keepers train-quality`
//! (`src/cli/train_quality.rs`, closed-form ridge with the penalty chosen by nested CV in
//! [`crate::train::ridge`]). Figures and the procedure: `weights/quality.md`.
//!
//! Files: `weights/quality_multilevel.json` (system, feature plan, grid, the Lite0 sha256 it was
//! trained on, cross-validation figures, seed) and `weights/quality_multilevel.safetensors`
//! (the linear head: `w`, `bias`, f64). Both are checked: a missing file is
//! [`QualityError::NotTrained`] (the app says "not trained yet"), a weights file whose sha256
//! differs from the JSON's, or a JSON trained on another backbone, is refused.
//!
//! The previous model, DMA-fc (paper 000, Lu et al., "Deep Multi-Patch Aggregation Network",
//! eq. 4-6: bags of M = 5 grid patches' pooled features, the sorting layer, FC 256, a linear
//! head; `weights/quality_dma_fc.*`), still loads from its own JSON ([`LEGACY_DMA_CONFIG_FILE`])
//! for comparison; [`default_paths`] points at the multi-level model.
//!
//! Inference ([`QualityModel::score`]) is the code path cross-validation scores:
//! - The photo (the app hands it decoded to 1024 px on the long side) is cut into a regular grid
//!   ([`grid_patches`]): `cols x rows` cells (`ceil(side / 224)` per side, at most
//!   [`DEFAULT_GRID_MAX`] = 4), a native-resolution 224 patch at the centre of each cell (moved
//!   inward at the borders). Photos smaller than 224 on a side are enlarged to 224 first.
//! - All grid patches of all photos run through the BN-folded backbone in batches, pooled per
//!   level ([`super::multilevel::photo_levels`]); the views the plan asks for beyond the grid
//!   (the whole photo, half size, BRISQUE) are computed per photo by the same function.
//! - The photo's score is the linear head on the plan's photo vector; each grid patch's score
//!   (the heatmap) is the same head with the patch's own vector in place of the grid mean
//!   ([`super::multilevel::LinearHead::patch_scores`]).
//! - `keepers train-quality` computes every held-out photo's features with `photo_levels` on
//!   the grid of the photo as decoded and scores them with `patch_scores`: the CV figures are
//!   this inference's figures (on LIVE's 500 x 500 photos, which the 1024-px decode leaves as
//!   they are).
//!
//! The grid patches' final pooled 1280-d Lite0 features (the taste panel's input,
//! [`PATCH_FEATURES_ID`]) come out of the same backbone pass ([`QualityModel::score_and_features`]).
//!
//! Scores are on the LIVE MOS scale (about 0..100, higher is better): technical quality as
//! crowd raters judged it (blur, noise, exposure, compression), not aesthetics.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use image::imageops::{self, FilterType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::efficientnet_lite::FoldedLite;
use super::heads::HeadKind;
use super::imagenet::load_lite0;
use super::multilevel::{LevelsPlan, LinearHead, photo_levels};
use super::systems::{ColumnKind, System, SystemConfig, SystemId, patches_tensor};
use super::views::{Patch, Rect};
use super::weights::{self, WeightsError, WeightsFile};

/// Key under which the app's database stores this model's outputs.
pub const MODEL_ID: &str = "quality-multilevel";
/// Model id of the previous DMA-fc model (its JSON still loads).
pub const LEGACY_DMA_MODEL_ID: &str = "quality-dma-fc";
/// System name of the multi-level ridge model in its JSON.
pub const MULTILEVEL_SYSTEM: &str = "ridge-multilevel";
/// Embedding key of the grid patches' pooled Lite0 features (stored under the Lite0 weights'
/// sha256): what taste profiles train and score on in the app.
pub const PATCH_FEATURES_ID: &str = "lite0-grid-patches-v1";
/// File names in the weights folder (the shipped model).
pub const CONFIG_FILE: &str = "quality_multilevel.json";
pub const WEIGHTS_FILE: &str = "quality_multilevel.safetensors";
/// The previous model's files (DMA-fc), kept for comparison.
pub const LEGACY_DMA_CONFIG_FILE: &str = "quality_dma_fc.json";
pub const LEGACY_DMA_WEIGHTS_FILE: &str = "quality_dma_fc.safetensors";
/// Most grid cells per side at inference (4 x 4 = 16 patches for a large photo).
pub const DEFAULT_GRID_MAX: u32 = 4;
/// Patch side: the backbone's input.
pub const PATCH: u32 = 224;
/// Patches whose backbone pass shares one batch. On the CPU, eight is as fast per photo as 64 in
/// `keepers bench scoring` (the 1x1 convolutions already have 112 x 112 rows per patch) and
/// peaks at 390 MiB instead of 960-990 MiB: a 64-patch batch's activations are hundreds of MB,
/// too large for the allocator to reuse, and are faulted in afresh for every batch. A GPU keeps
/// the larger batch (its launches are fixed costs; not yet measured there).
fn batch_for(device: &Device) -> usize {
    if device.is_cpu() { 8 } else { 64 }
}
/// Variable-name prefix of the (frozen) column inside the system: never saved.
const COLUMN_PREFIX: &str = "column.";

/// Everything needed to rebuild the model and to know where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    pub model_id: String,
    /// [`MULTILEVEL_SYSTEM`], or a DMA system id as [`SystemId::name`] writes it (`DMA-fc`).
    pub system: String,
    /// Column kind (`lite0`, frozen).
    pub column: String,
    /// Head kind (`quality`: one scalar on the MOS scale).
    pub head: String,
    /// Multi-level model: the views its linear head reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<LevelsPlan>,
    /// DMA: bag size M.
    #[serde(default)]
    pub bag: usize,
    /// DMA: aggregation FC width V.
    #[serde(default)]
    pub aggregation_dim: usize,
    #[serde(default)]
    pub dropout: f32,
    /// DMA: the standardiser of the training MOS, `mos = mean + std * output` (the multi-level
    /// head has it folded in; recorded for information).
    pub mos_mean: f64,
    pub mos_std: f64,
    /// Inference grid: most cells per side, patch side.
    pub grid_max: u32,
    pub patch: u32,
    pub weights_file: String,
    pub weights_sha256: String,
    /// sha256 of the Lite0 weights file the features came from.
    pub lite0_sha256: String,
    /// Provenance: data, feature plan, fit settings, seed, CV figures, command.
    pub training: serde_json::Value,
}

impl QualityConfig {
    /// The system this config describes.
    pub fn system_config(&self) -> Result<SystemConfig, String> {
        let id = SystemId::parse(&self.system).ok_or_else(|| format!("unknown system {:?}", self.system))?;
        if !matches!(id, SystemId::DmaFc | SystemId::DmaStat) {
            return Err(format!("the quality model is a DMA system, not {id}"));
        }
        if ColumnKind::parse(&self.column) != Some(ColumnKind::Lite0) {
            return Err(format!("column {:?}: only the frozen Lite0 column is supported", self.column));
        }
        if self.head != "quality" {
            return Err(format!("head {:?}: the quality model has a quality head", self.head));
        }
        if self.patch != ColumnKind::Lite0.input_size() {
            return Err(format!("patch side {} differs from the backbone's {}", self.patch, ColumnKind::Lite0.input_size()));
        }
        Ok(SystemConfig {
            patches: self.bag,
            aggregation_dim: self.aggregation_dim,
            dropout: self.dropout,
            ..SystemConfig::new(id, ColumnKind::Lite0, HeadKind::Quality)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error(
        "the quality model is not trained yet: {path} is missing (train it with `keepers train-quality --data labels.csv --out weights/`)"
    )]
    NotTrained { path: PathBuf },
    #[error("{path} could not be read: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a quality model config: {source}")]
    Config { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} has sha256 {actual} but its config expects {expected}: the weights and the config come from different runs")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("the quality model was trained on backbone weights {trained}, the backbone here is {present}: retrain it")]
    BackboneMismatch { trained: String, present: String },
    #[error(transparent)]
    Backbone(#[from] WeightsError),
    #[error("{path} could not be loaded: {source}")]
    Load { path: PathBuf, source: candle_core::Error },
}

impl QualityError {
    /// True when the model has simply not been trained (a file is missing).
    pub fn is_not_trained(&self) -> bool {
        matches!(self, Self::NotTrained { .. })
    }
}

/// One grid patch's own prediction, for the heatmap (stored as JSON by the worker).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PatchScore {
    /// The 224 x 224 region the backbone saw, in photo pixels (inside the photo).
    pub rect: Rect,
    /// The grid cell this patch stands for, in photo pixels: the cells tile the photo.
    pub cell: Rect,
    /// DMA's per-patch head, on the MOS scale.
    pub score: f32,
}

/// A photo's quality.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityScore {
    /// On the LIVE MOS scale (about 0..100, higher is better).
    pub score: f32,
    /// One per grid patch, row-major.
    pub patches: Vec<PatchScore>,
}

/// A grid patch and the cell it stands for.
#[derive(Debug, Clone)]
pub struct GridPatch {
    pub patch: Patch,
    pub cell: Rect,
}

/// The deterministic inference patches of `img`: `cols x rows` cells (`ceil(side / size)`
/// per side, clamped to `1..=max_grid`), a native-resolution `size x size` patch at each
/// cell's centre, shifted inward to stay inside the photo; row-major. A photo smaller than
/// `size` on a side is first enlarged so its shorter side is `size` (rectangles are still in
/// the original photo's pixels). An empty photo has no patches.
pub fn grid_patches(img: &RgbImage, max_grid: u32, size: u32) -> Vec<GridPatch> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Vec::new();
    }
    let src: Cow<RgbImage> = if w.min(h) < size {
        let s = size as f64 / w.min(h) as f64;
        let (nw, nh) = (((w as f64 * s).round() as u32).max(size), ((h as f64 * s).round() as u32).max(size));
        Cow::Owned(imageops::resize(img, nw, nh, FilterType::Triangle))
    } else {
        Cow::Borrowed(img)
    };
    let (sw, sh) = src.dimensions();
    // Per axis: the enlarged size is rounded, so each axis maps back exactly.
    let (sx, sy) = (sw as f64 / w as f64, sh as f64 / h as f64);
    let cols = sw.div_ceil(size).clamp(1, max_grid.max(1));
    let rows = sh.div_ceil(size).clamp(1, max_grid.max(1));
    // Cell edges in photo pixels; the same fractions in the (possibly enlarged) source.
    let edge = |i: u32, n: u32, len: u32| i as f64 * len as f64 / n as f64;
    let mut out = Vec::with_capacity((cols * rows) as usize);
    for r in 0..rows {
        for c in 0..cols {
            let cell = Rect {
                x: edge(c, cols, w),
                y: edge(r, rows, h),
                w: edge(c + 1, cols, w) - edge(c, cols, w),
                h: edge(r + 1, rows, h) - edge(r, rows, h),
            };
            let cx = (edge(c, cols, sw) + edge(c + 1, cols, sw)) / 2.0;
            let cy = (edge(r, rows, sh) + edge(r + 1, rows, sh)) / 2.0;
            let px = (cx - size as f64 / 2.0).round().clamp(0.0, (sw - size) as f64) as u32;
            let py = (cy - size as f64 / 2.0).round().clamp(0.0, (sh - size) as f64) as u32;
            let image = imageops::crop_imm(src.as_ref(), px, py, size, size).to_image();
            let rect = Rect { x: px as f64 / sx, y: py as f64 / sy, w: size as f64 / sx, h: size as f64 / sy };
            out.push(GridPatch { patch: Patch { image, rect, flipped: false }, cell });
        }
    }
    out
}

/// Cyclic DMA bags over `n` patches, bags of `m`: bag `k` (one per patch) holds
/// `k + j * s (mod n)` for `j < m`, `s = max(1, n / m)`. Every patch is in exactly `m` bags;
/// a bag's patches are distinct when `n >= m` (otherwise patches repeat, as the random bags
/// of a photo smaller than a patch do in training).
pub fn cyclic_bags(n: usize, m: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let s = (n / m.max(1)).max(1);
    (0..n).map(|k| (0..m).map(|j| (k + j * s) % n).collect()).collect()
}

/// The photo score and each patch's score (both on the MOS scale) from one photo's grid
/// features `(n, D)`: [`cyclic_bags`] through `system` (test mode), bag outputs averaged;
/// per-patch scores from DMA's per-patch head. `mos = (mean, std)` undoes the standardiser.
pub fn score_features(system: &System, mos: (f64, f64), feats: &Tensor) -> candle_core::Result<(f32, Vec<f32>)> {
    let (n, d) = feats.dims2()?;
    if n == 0 {
        candle_core::bail!("a photo with no patches cannot be scored");
    }
    let m = system.config().patches;
    let bags = cyclic_bags(n, m);
    let idx: Vec<u32> = bags.iter().flatten().map(|&i| i as u32).collect();
    let x = feats.index_select(&Tensor::new(idx.as_slice(), feats.device())?, 0)?.reshape((bags.len(), m, d))?;
    let out = system.forward_features(&x, 1, bags.len(), false)?;
    let to_mos = |z: f32| (mos.0 + mos.1 * z as f64) as f32;
    let raw = out.raw.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let pr = out
        .patch_raw
        .ok_or_else(|| candle_core::Error::Msg("DMA has a per-patch head".into()))?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    // Patch k is the first member of bag k.
    let patches = (0..n).map(|k| to_mos(pr[k * m])).collect();
    Ok((to_mos(raw[0]), patches))
}

/// The head on the backbone's features.
enum Head {
    /// DMA-fc / DMA-stat on the grid patches' pooled features (the previous model).
    Dma(Box<System>),
    /// Linear head on multi-level features (the shipped model).
    Linear { plan: LevelsPlan, head: LinearHead },
}

/// The trained quality model, ready to score photos.
pub struct QualityModel {
    config: QualityConfig,
    net: FoldedLite,
    head: Head,
    device: Device,
}

impl std::fmt::Debug for QualityModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QualityModel").field("config", &self.config).finish_non_exhaustive()
    }
}

/// `weights/quality_multilevel.json` and `weights/efficientnet_lite0.safetensors` in the weights
/// folder ([`weights::weights_dir`]).
pub fn default_paths() -> (PathBuf, PathBuf) {
    (weights::weights_dir().join(CONFIG_FILE), WeightsFile::EfficientNetLite0.path())
}

fn read(path: &Path) -> Result<Vec<u8>, QualityError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            QualityError::NotTrained { path: path.to_owned() }
        } else {
            QualityError::Unreadable { path: path.to_owned(), source }
        }
    })
}

/// The system's variables after the column (what the weights file holds), by name.
pub fn head_variables(varmap: &VarMap) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("variable map poisoned");
    data.iter().filter(|(k, _)| !k.starts_with(COLUMN_PREFIX)).map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

impl QualityModel {
    /// Loads the config at `json_path`, the weights file it names (beside it, sha256-checked)
    /// and the Lite0 backbone at `lite0_path` (sha256-checked, and it must be the one the
    /// model was trained on), on `device`.
    pub fn load(json_path: &Path, lite0_path: &Path, device: &Device) -> Result<Self, QualityError> {
        let text = read(json_path)?;
        let config: QualityConfig =
            serde_json::from_slice(&text).map_err(|source| QualityError::Config { path: json_path.to_owned(), source })?;
        let invalid = |reason: String| QualityError::Invalid { path: json_path.to_owned(), reason };
        let multilevel = config.system == MULTILEVEL_SYSTEM;
        let expected_id = if multilevel { MODEL_ID } else { LEGACY_DMA_MODEL_ID };
        if config.model_id != expected_id {
            return Err(invalid(format!("model id {:?}, expected {expected_id:?} for system {:?}", config.model_id, config.system)));
        }
        if config.patch != ColumnKind::Lite0.input_size() {
            return Err(invalid(format!("patch side {} differs from the backbone's {}", config.patch, ColumnKind::Lite0.input_size())));
        }
        let wpath = json_path.parent().unwrap_or(Path::new(".")).join(&config.weights_file);
        let bytes = read(&wpath)?;
        let actual = weights::sha256_hex(&bytes);
        if actual != config.weights_sha256 {
            return Err(QualityError::Checksum { path: wpath, expected: config.weights_sha256.clone(), actual });
        }
        let present = WeightsFile::EfficientNetLite0.expected_sha256();
        if config.lite0_sha256 != present {
            return Err(QualityError::BackboneMismatch { trained: config.lite0_sha256.clone(), present: present.to_string() });
        }
        let net = load_lite0(lite0_path, DType::F32, device)?
            .fold(DType::F32)
            .map_err(|source| QualityError::Load { path: lite0_path.to_owned(), source })?;
        let load_err = |source: candle_core::Error| QualityError::Load { path: wpath.clone(), source };
        let stored = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(load_err)?;
        let head = if multilevel {
            let plan = config.levels.clone().ok_or_else(|| invalid("a multi-level model needs `levels`".into()))?;
            if ColumnKind::parse(&config.column) != Some(ColumnKind::Lite0) || config.head != "quality" {
                return Err(invalid(format!("column {:?} / head {:?}: expected lite0 / quality", config.column, config.head)));
            }
            let bad = |reason: String| QualityError::Invalid { path: wpath.clone(), reason };
            if let Some(extra) = stored.keys().find(|k| *k != "w" && *k != "bias") {
                return Err(bad(format!("unexpected tensor {extra}")));
            }
            let get = |k: &str| -> Result<Vec<f64>, QualityError> {
                let t = stored.get(k).ok_or_else(|| bad(format!("no tensor {k}")))?;
                t.to_dtype(DType::F64).and_then(|t| t.flatten_all()?.to_vec1::<f64>()).map_err(load_err)
            };
            let (w, bias) = (get("w")?, get("bias")?);
            if w.len() != plan.dim() || bias.len() != 1 {
                return Err(bad(format!(
                    "w has {} values and bias {}, the plan {} needs {} and 1",
                    w.len(),
                    bias.len(),
                    plan.name(),
                    plan.dim()
                )));
            }
            Head::Linear { plan, head: LinearHead { w, bias: bias[0] } }
        } else {
            let sys_cfg = config.system_config().map_err(invalid)?;
            let varmap = VarMap::new();
            let system = System::new(&sys_cfg, VarBuilder::from_varmap(&varmap, DType::F32, device)).map_err(load_err)?;
            let wanted = head_variables(&varmap);
            if let Some(extra) = stored.keys().find(|k| !wanted.contains_key(*k)) {
                return Err(QualityError::Invalid { path: wpath, reason: format!("unexpected tensor {extra}") });
            }
            let data = varmap.data().lock().expect("variable map poisoned");
            for name in wanted.keys() {
                let t =
                    stored.get(name).ok_or_else(|| QualityError::Invalid { path: wpath.clone(), reason: format!("no tensor {name}") })?;
                let var = &data[name];
                if t.dims() != var.dims() {
                    return Err(QualityError::Invalid {
                        path: wpath.clone(),
                        reason: format!("{name}: shape {:?}, the network has {:?}", t.dims(), var.dims()),
                    });
                }
                var.set(&t.to_dtype(DType::F32).and_then(|t| t.to_device(device)).map_err(load_err)?).map_err(load_err)?;
            }
            drop(data);
            Head::Dma(Box::new(system))
        };
        Ok(Self { config, net, head, device: device.clone() })
    }

    /// The weights' sha256 prefix (12 hex digits): stored outputs are keyed by it.
    pub fn version(&self) -> &str {
        &self.config.weights_sha256[..12.min(self.config.weights_sha256.len())]
    }

    pub fn config(&self) -> &QualityConfig {
        &self.config
    }

    /// Scores photos (decoded, upright RGB): grid patches of every photo through the backbone
    /// in batches, cyclic DMA bags per photo (see the module docs).
    pub fn score(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<QualityScore>> {
        Ok(self.score_and_features(images)?.into_iter().map(|(s, _)| s).collect())
    }

    /// [`Self::score`] plus each photo's grid-patch features, flattened `(patches x 1280)` in the
    /// order of [`QualityScore::patches`]: the input of the app's taste profiles
    /// ([`PATCH_FEATURES_ID`]), computed once with the score.
    pub fn score_and_features(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<(QualityScore, Vec<f32>)>> {
        let grids: Vec<Vec<GridPatch>> = images.par_iter().map(|img| grid_patches(img, self.config.grid_max, self.config.patch)).collect();
        if let Some(i) = grids.iter().position(Vec::is_empty) {
            candle_core::bail!("photo {i} of the batch is empty");
        }
        let all: Vec<&RgbImage> = grids.iter().flatten().map(|g| &g.patch.image).collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(grids.len());
        match &self.head {
            Head::Linear { plan, head } => {
                let patch_imgs: Vec<Vec<&RgbImage>> = grids.iter().map(|g| g.iter().map(|p| &p.patch.image).collect()).collect();
                let levels = photo_levels(&self.net, images, &patch_imgs, plan, batch_for(&self.device), &self.device)?;
                for (grid, lv) in grids.iter().zip(&levels) {
                    let (score, patch_scores) = head.patch_scores(plan, lv)?;
                    let patches = grid
                        .iter()
                        .zip(patch_scores)
                        .map(|(g, score)| PatchScore { rect: g.patch.rect, cell: g.cell, score: score as f32 })
                        .collect();
                    let feats = lv.grid_pooled.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    out.push((QualityScore { score: score as f32, patches }, feats));
                }
            }
            Head::Dma(system) => {
                let mut feats = Vec::new();
                for chunk in all.chunks(batch_for(&self.device)) {
                    feats.push(self.net.features(&patches_tensor(chunk, DType::F32, &self.device)?)?.pooled);
                }
                let feats = Tensor::cat(&feats, 0)?;
                let mos = (self.config.mos_mean, self.config.mos_std);
                let mut offset = 0;
                for grid in &grids {
                    let own = feats.narrow(0, offset, grid.len())?;
                    let (score, patch_scores) = score_features(system, mos, &own)?;
                    offset += grid.len();
                    let patches =
                        grid.iter().zip(patch_scores).map(|(g, score)| PatchScore { rect: g.patch.rect, cell: g.cell, score }).collect();
                    out.push((QualityScore { score, patches }, own.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?));
                }
            }
        }
        Ok(out)
    }
}
