//! ImageNet-1k classification with the shipped EfficientNet-Lite0 weights.
//!
//! Used by `keepers classify` and as the end-to-end check that the backbone port is right
//! (scikit-image's `coffee.png` must come out as "espresso"). Class names are in
//! `assets/imagenet_classes.txt` (source in `assets/README.md`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::efficientnet_lite::{EfficientNetLite, FoldedLite, LiteConfig};
use super::preprocess::imagenet_batch;
use super::weights::{WeightsError, WeightsFile, var_builder};

const CLASS_NAMES: &str = include_str!("../../assets/imagenet_classes.txt");

/// The 1000 ImageNet class names in index order.
pub fn class_names() -> Vec<&'static str> {
    CLASS_NAMES.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// Loads the backbone (trainable form) from a verified weights file.
pub fn load_lite0(path: &Path, dtype: DType, device: &Device) -> Result<EfficientNetLite, WeightsError> {
    let vb: VarBuilder = var_builder(WeightsFile::EfficientNetLite0, path, dtype, device)?;
    EfficientNetLite::new(&LiteConfig::lite0(), vb).map_err(|source| WeightsError::Load { path: path.to_owned(), source })
}

/// `(class index, name, probability)`.
pub type ClassScore = (usize, &'static str, f32);

/// Fast folded ImageNet classifier.
pub struct Classifier {
    net: FoldedLite,
    names: Vec<&'static str>,
    size: usize,
    device: Device,
}

impl Classifier {
    pub fn load(path: &Path, device: &Device) -> Result<Self, WeightsError> {
        let net = load_lite0(path, DType::F32, device)?;
        let size = net.config().image_size;
        let net = net.fold(DType::F32).map_err(|source| WeightsError::Load { path: path.to_owned(), source })?;
        Ok(Self { net, names: class_names(), size, device: device.clone() })
    }

    pub fn network(&self) -> &FoldedLite {
        &self.net
    }

    pub fn input_size(&self) -> usize {
        self.size
    }

    /// Class probabilities `(N, 1000)` for a batch of photos.
    pub fn probabilities(&self, images: &[&image::RgbImage]) -> candle_core::Result<Tensor> {
        let x = imagenet_batch(images, self.size, &self.device)?;
        self.net.probabilities(&x)
    }

    /// Top-`k` `(class index, name, probability)` for each photo.
    pub fn top_k(&self, images: &[&image::RgbImage], k: usize) -> candle_core::Result<Vec<Vec<ClassScore>>> {
        let p = self.probabilities(images)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(p.iter().map(|row| top_k(row, k).into_iter().map(|(i, p)| (i, self.names[i], p)).collect()).collect())
    }
}

/// Indices and values of the `k` largest entries, largest first.
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.into_iter().take(k).map(|i| (i, row[i])).collect()
}
