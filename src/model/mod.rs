//! The networks: backbone, layers with our own gradients, and their weights.
//!
//! - [`efficientnet_lite`]: the ImageNet backbone (trainable and folded inference forms).
//! - [`depthwise`], [`batchnorm`], [`padding`]: its layers, each gradient-checked.
//! - [`column`]: the "Arch 1" CNN column of papers 002/000, trained from scratch.
//! - [`heads`]: binary, score-distribution, multi-label style and quality heads.
//! - [`aggregation`]: DMA-Net's statistics and sorting layers (tie-aware sort op).
//! - [`pooling`]: max pooling, LRN, ROI pooling and ROI align with checked gradients.
//! - [`pointwise`]: fused inference ops (1x1 conv and stem with bias + ReLU6).
//! - [`weights`]: shipped weights files, located and sha256-verified.
//! - [`preprocess`], [`imagenet`]: network input and ImageNet classification.
//! - [`init`]: seeded weight initialisation and dropout (reproducible training).
//! - [`quality`]: the shipped technical-quality model (ridge on multi-level Lite0 features, LIVE
//!   Challenge MOS; the previous DMA-fc still loads).
//! - [`multilevel`]: per-level mean/std pooling of the frozen Lite0 and the linear quality head.
//! - [`brisque`]: BRISQUE (Mittal et al. 2012) with the LIVE-trained SVR, the classical baseline.
//! - [`views`]: the papers' views and patches (seeded), each with its rectangle in the photo.
//! - [`systems`]: the seed systems by id (SCNN ... ARP-MPEMD), built from the pieces above.

pub mod aggregation;
pub mod batchnorm;
pub mod brisque;
pub mod column;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod heads;
pub mod imagenet;
pub mod init;
pub mod multilevel;
pub mod padding;
pub mod pointwise;
pub mod pooling;
pub mod preprocess;
pub mod quality;
pub mod systems;
pub mod views;
pub mod weights;

use candle_core::{CpuStorage, Layout, WithDType};

/// The contiguous CPU data of a custom op's operand; `what` names the op in the error.
pub(crate) fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what}: operands must be contiguous"),
    }
}
