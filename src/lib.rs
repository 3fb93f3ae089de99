//! Keepers: photo culling with multi-patch aesthetic and quality networks.
//!
//! - [`model`]: networks, layers, weights (candle).
//! - [`train`]: training procedures and gradient checks.
//! - [`library`]: the photographer's files: decoding (later: albums, caches, sidecars).
//! - [`worker`]: the background worker that owns the models and runs cancellable jobs.
//! - [`app`]: the desktop app (egui): grid, loupe, compare, keyboard culling.
//! - [`cli`]: the `keepers` command line.

pub mod app;
pub mod cli;
pub mod device;
pub mod library;
pub mod model;
pub mod rng;
pub mod train;
pub mod worker;
