//! Training: optimisers, schedules, datasets, the input pipeline, metrics, checkpoints, and the
//! checks that keep them honest.
//!
//! - [`gradcheck`]: the finite-difference check every trainable layer passes.
//! - [`losses`]: the seed systems' losses (cross-entropy, BCE, MP_avg/min/ada, EMD, MPEMD).
//! - [`optim`]: SGD (momentum, Nesterov, weight decay) and AdamW with parameter groups
//!   (learning-rate multipliers, frozen groups), gradient clipping, state for checkpoints.
//! - [`schedule`]: step, exponential and plateau learning-rate schedules.
//! - [`data`]: datasets (AVA as published, CSV) as samples with targets, fingerprinted.
//! - [`pipeline`]: parallel, seeded, bounded decode + transform of samples into batches, with a
//!   report of the images it had to skip.
//! - [`metrics`]: accuracy, AUC, AP/mAP, SRCC/PLCC, MSE/MAE, EMD and distribution distances,
//!   MAE per aspect-ratio bin.
//! - [`checkpoint`]: safetensors + JSON checkpoints, `last`/`best`, bit-identical resume.
//! - [`features`]: cached frozen-backbone features per photo (the small-data variant's input).
//! - [`small_data`]: training and prediction of the systems on cached features.
//! - [`taste`], [`taste_eval`], [`profiles`], [`active`]: personal taste profiles: training, the
//!   held-out report, the profile store, which photos to label next.
//! - [`procedures`]: the papers' training procedures by name (stages, recipes, checkpoints,
//!   progress, cancellation), their small-data variants, and evaluation of their checkpoints.
//! - [`cv`]: k-fold cross-validation of those procedures (mean and spread over folds).
//! - [`degrade`]: synthetic degradations and the quality model's acceptance check.
//! - [`tail_finetune`]: partial fine-tuning of the Lite0 column's last blocks for quality.

pub mod active;
pub mod checkpoint;
pub mod cv;
pub mod data;
pub mod degrade;
pub mod features;
pub mod gradcheck;
pub mod losses;
pub mod metrics;
pub mod optim;
pub mod pipeline;
pub mod procedures;
pub mod profiles;
pub mod ridge;
pub mod schedule;
pub mod small_data;
pub mod tail_finetune;
pub mod taste;
pub mod taste_eval;
