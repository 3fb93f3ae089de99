//! Columns: the per-view feature extractors every seed system is built from (issue 3, item 1).
//!
//! - [`ColumnKind::Arch1`]: the "Arch 1" CNN column of papers 002/000 ([`crate::model::column`]),
//!   trained from scratch; its feature is fc256 (no spatial map: its fully-connected layers
//!   mix all positions).
//! - [`ColumnKind::Lite0`]: the ImageNet EfficientNet-Lite0 backbone, pre-trained
//!   ([`crate::model::efficientnet_lite`], classifier dropped); its feature is the global
//!   average of the final `(h, w, 1280)` map, which it also returns, so a linear head on it
//!   decomposes exactly into a spatial score map.
//!
//! Both take normalised NCHW patches `(N, 3, S, S)`, `(x - 127) / 128` (the backbone's own
//! normalisation, used for the Arch-1 column too).
//!
//! Pre-trained weights are copied into a [`VarMap`] by [`load_lite0_into`], name for name
//! under the column's prefix (the checkpoint's own keys), so a system's safetensors checkpoint
//! holds `<prefix>._blocks.3._bn1.weight` and friends.

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::model::column::{Arch1Column, Arch1Config};
use crate::model::efficientnet_lite::{EfficientNetLite, LiteConfig};
use crate::model::weights::{self, WeightsError, WeightsFile};

/// Which column a system uses.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// Trained from scratch (papers 000, 002).
    Arch1(Arch1Config),
    /// The ImageNet backbone (pre-trained).
    Lite0,
}

impl ColumnKind {
    /// Paper 002's aesthetics column (64 filters).
    pub fn arch1() -> Self {
        Self::Arch1(Arch1Config::aesthetics())
    }

    /// Parses `arch1`, `arch1-style` (32 filters in conv2/conv3), `arch1-small` (a reduced
    /// column for CPU runs, [`Arch1Config::small`]) or `lite0`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "arch1" | "arch-1" | "cnn" => Some(Self::arch1()),
            "arch1-style" | "arch1-quality" => Some(Self::Arch1(Arch1Config::style_quality())),
            "arch1-small" => Some(Self::Arch1(Arch1Config::small())),
            "lite0" | "efficientnet-lite0" | "imagenet" => Some(Self::Lite0),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Arch1(c) if *c == Arch1Config::small() => "arch1-small",
            Self::Arch1(c) if c.filters[1] == 32 => "arch1-style",
            Self::Arch1(_) => "arch1",
            Self::Lite0 => "lite0",
        }
    }

    pub fn feature_dim(&self) -> usize {
        match self {
            Self::Arch1(c) => c.feature_dim(),
            Self::Lite0 => LiteConfig::lite0().feature_channels(),
        }
    }

    /// Side of the square patches it takes.
    pub fn input_size(&self) -> u32 {
        match self {
            Self::Arch1(c) => c.input as u32,
            Self::Lite0 => LiteConfig::lite0().image_size as u32,
        }
    }

    pub fn is_pretrained(&self) -> bool {
        matches!(self, Self::Lite0)
    }
}

/// A column's output for a batch of patches.
#[derive(Debug, Clone)]
pub struct ColumnOut {
    /// `(N, D)` feature.
    pub pooled: Tensor,
    /// `(N, h, w, D)` channels-last map whose spatial mean is `pooled` (Lite0 only).
    pub map: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub enum Column {
    Arch1(Arch1Column),
    Lite0(EfficientNetLite),
}

impl Column {
    pub fn new(kind: &ColumnKind, vb: VarBuilder) -> Result<Self> {
        Ok(match kind {
            ColumnKind::Arch1(cfg) => Self::Arch1(Arch1Column::new(cfg, vb)?),
            ColumnKind::Lite0 => Self::Lite0(EfficientNetLite::new(&LiteConfig { num_classes: None, ..LiteConfig::lite0() }, vb)?),
        })
    }

    /// Restarts the column's dropout stream (Arch-1 only; Lite0 has no dropout).
    pub fn reseed_dropout(&self, seed: u64) {
        if let Self::Arch1(c) = self {
            c.reseed_dropout(seed);
        }
    }

    /// `x (N, 3, S, S)` -> features (and the map for Lite0).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<ColumnOut> {
        match self {
            Self::Arch1(c) => Ok(ColumnOut { pooled: c.forward_t(x, train)?, map: None }),
            Self::Lite0(n) => {
                let f = n.features_t(x, train)?;
                Ok(ColumnOut { pooled: f.pooled, map: Some(f.map) })
            }
        }
    }
}

/// Copies the shipped ImageNet Lite0 weights (sha256-verified) into every variable of
/// `varmap` under `prefix.` (classifier keys are not used). Returns how many were set; a
/// variable the file lacks, or one of the wrong shape, is an error.
pub fn load_lite0_into(varmap: &VarMap, prefix: &str, path: &Path) -> std::result::Result<usize, WeightsError> {
    let bytes = weights::read_verified(WeightsFile::EfficientNetLite0, path)?;
    let bad = |reason: String| WeightsError::Load { path: path.to_owned(), source: candle_core::Error::Msg(reason) };
    let data = varmap.data().lock().map_err(|_| bad("variable map poisoned".into()))?;
    let device = data.values().next().map(|v| v.device().clone()).unwrap_or(Device::Cpu);
    let tensors = candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| bad(e.to_string()))?;
    let want = format!("{prefix}.");
    let mut set = 0;
    for (name, var) in data.iter() {
        let Some(key) = name.strip_prefix(&want) else { continue };
        let t = tensors.get(key).ok_or_else(|| bad(format!("no tensor {key} for column {prefix}")))?;
        if t.dims() != var.dims() {
            return Err(bad(format!("{key}: shape {:?} in the file, {:?} in the network", t.dims(), var.dims())));
        }
        var.set(&t.to_dtype(var.dtype()).map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        set += 1;
    }
    Ok(set)
}

/// `(N, S, S)` RGB patches (all the same size) -> normalised `(N, 3, S, S)` on `device`.
pub fn patches_tensor(images: &[&image::RgbImage], dtype: DType, device: &Device) -> Result<Tensor> {
    use rayon::prelude::*;
    let Some(first) = images.first() else { candle_core::bail!("no patches") };
    let (w, h) = first.dimensions();
    if let Some(bad) = images.iter().find(|i| i.dimensions() != (w, h)) {
        candle_core::bail!("patches differ in size: {:?} and {:?}", (w, h), bad.dimensions());
    }
    let plane = (w * h) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    data.par_chunks_mut(3 * plane).zip(images.par_iter()).for_each(|(out, img)| {
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px.0[c] as f32 - 127.0) / 128.0;
            }
        }
    });
    Tensor::from_vec(data, (images.len(), 3, h as usize, w as usize), device)?.to_dtype(dtype)
}
