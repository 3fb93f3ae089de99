//! The networks: backbone, layers with our own gradients, and their weights.
//!
//! - [`efficientnet_lite`]: the ImageNet backbone (trainable and folded inference forms).
//! - [`depthwise`], [`batchnorm`], [`padding`]: its layers, each gradient-checked.
//! - [`weights`]: shipped weights files, located and sha256-verified.
//! - [`preprocess`], [`imagenet`]: network input and ImageNet classification.

pub mod batchnorm;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod imagenet;
pub mod padding;
pub mod pointwise;
pub mod preprocess;
pub mod weights;
