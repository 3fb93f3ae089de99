//! Training procedures by name (issue 4, item 2): each seed paper's recipe — optimiser,
//! learning rate and per-group multipliers, schedule, epochs, stages — as a [`Procedure`],
//! runnable at pixel level (through [`crate::train::pipeline`] batches and
//! `System::forward_t(train = true)`) or as its small-data variant (frozen ImageNet backbone;
//! cached features through [`crate::train::small_data`] where the system allows it).
//!
//! | name | paper | stages | optimiser (paper) | schedule (paper) |
//! |---|---|---|---|---|
//! | `scnn` | 002 (RAPID/DCNN, Lu et al.) sec. III-A, III-G | SCNN on one view | SGD, momentum 0.9, lr 0.001 (biases 0.002: `lr_mult 2`) | constant; about 50 epochs for `I_l^r` |
//! | `dcnn` | 002 sec. III-B | DCNN, both columns jointly | as `scnn` | constant |
//! | `rdcnn` | 002 sec. III-C | 1: Style-SCNN (Arch-1 style column) on the style labels (the task's labels when the data has none); 2: RDCNN-style with that column frozen, only the aesthetic columns and head train (RDCNN-semantic: the frozen column is the ImageNet Lite0, one stage) | as `scnn` | constant |
//! | `dma` | 000 (DMA-Net, Lu et al.) sec. 4.3 | 1: single-patch CNN (SCNN on one random native-resolution patch); 2: DMA-stat / DMA-fc whose shared columns start from it (its head also seeds DMA's per-patch head) | SGD, momentum 0.9, weight decay 1e-5, lr 0.001 for all layers | x0.1 when the training loss plateaus |
//! | `mp-avg`, `mp-min`, `mp-ada` | 001 (Sheng et al.) sec. 4.2 | MP network fine-tuned from the ImageNet backbone with MP_avg / MP_min / MP_ada (beta 0.5) | Nesterov SGD, momentum 0.9, weight decay 1e-4, lr 0.001, batch 32 | halved every 20 of 32 epochs |
//! | `theme-emd` | 003 sec. 4 | THEME-EMD, EMD (r = 2) loss | SGD, momentum 0.9, weight decay 1e-4, lr 0.001 on convolutions, 10x on fully-connected layers, batch 16 | halved every 10 of 30 epochs |
//! | `arp-mpemd-avg`, `arp-mpemd-ada` | 004 sec. 4.2 | 1: NIMA-style single-view pre-training (SCNN on the warped view, random crop + flip, 10-bin EMD); 2: ARP-MPEMD from it with MPEMD_avg / MPEMD_ada | SGD, momentum 0.9, lr 0.001 | x0.95 every 10 of 100 epochs |
//! | `adapt` | 002 sec. III-D (network adaptation) | fine-tune a trained model (its checkpoint) for a few epochs on a content subset | SGD, momentum 0.9, lr 1e-4 (0.1x of training; the paper gives no rate), biases 2x | constant, 10 epochs |
//!
//! **Scaling.** The papers trained for days on GPUs with batch sizes of 16-128; here epochs,
//! batch size and learning rate come from [`TrainConfig`] (defaults: the paper's lr and
//! epochs, batch 8 at pixel level), and step-schedule periods are scaled with the epochs
//! (`every * epochs / paper_epochs`, at least 1), so the shape of the schedule is kept.
//!
//! **Small-data variant** ([`TrainConfig::small_data`]): the column is always the frozen
//! ImageNet Lite0; systems that allow it train on cached features (SCNN, DCNN, DMA, MP,
//! ARP-MPEMD: `small_data::inputs` and its losses) with AdamW (lr 1e-3, weight decay 1e-4, as
//! tuned in `keepers cv`) and the paper's schedule shape; the two-stage procedures keep their
//! stages (stage 1's head seeds stage 2's). RDCNN (as RDCNN-semantic) and THEME-EMD must see
//! pixels: their small-data variant runs the pixel path with every column frozen and in
//! evaluation mode, so only the heads (and THEME's theme FC) train.
//!
//! **Runs** ([`train`]): each stage has a folder (stage 1 in `RUN/stage1-<name>/`, the final
//! stage in `RUN/` itself, so `RUN/best` is the model to use) with `last` (every
//! [`TrainConfig::checkpoint_every`] steps and at every epoch end) and `best` (by the
//! validation metric of the task, or the training loss without a validation set). A run
//! resumes from `last` with the same results as an uninterrupted one: batch order and
//! augmentation come from `(seed, epoch, index)`, dropout masks and MP_min's draws from
//! `(seed, step)`, and the optimiser, schedule and running epoch loss are in the checkpoint.
//! Progress goes to a callback ([`Progress`]: step, epoch, loss, metric, ETA); a cancel flag
//! is read between steps (the run then saves `last` and returns).

mod evaluate;
mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

pub use evaluate::{EvalConfig, LoadedModel, evaluate, load_model, load_model_from, metrics_for, metrics_table, predict_photos};

use crate::model::heads::HeadKind;
use crate::model::systems::{ColumnKind, RoiKind, SystemConfig, SystemId};
use crate::model::views::GlobalView;
use crate::train::checkpoint::{Best, CheckpointError};
use crate::train::data::{Dataset, Target, histogram_mean_std};
use crate::train::features::FeaturePlan;
use crate::train::optim::OptimError;
use crate::train::pipeline::SkipReport;
use crate::train::schedule::{Schedule, ScheduleError};
use crate::train::small_data::{MpemdVariant, Standardizer};

#[derive(Debug, thiserror::Error)]
pub enum ProcedureError {
    #[error("training: {0}")]
    Config(String),
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("training: {0}")]
    Io(#[from] std::io::Error),
    #[error("training: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, ProcedureError>;

fn cfg_err(msg: impl Into<String>) -> ProcedureError {
    ProcedureError::Config(msg.into())
}

/// The training procedures by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Procedure {
    Scnn,
    Dcnn,
    Rdcnn,
    Dma,
    MpAvg,
    MpMin,
    MpAda,
    ThemeEmd,
    ArpMpemdAvg,
    ArpMpemdAda,
    Adapt,
}

/// Optimiser of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimKind {
    Sgd { momentum: f64, nesterov: bool },
    AdamW,
}

/// A paper's training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub optimizer: OptimKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// Learning-rate multiplier of biases (paper 002: 2).
    pub bias_lr_mult: f64,
    /// Learning-rate multiplier of everything after the columns (paper 003: 10).
    pub head_lr_mult: f64,
    /// The schedule at the paper's epoch count ([`Recipe::schedule_for`] scales it).
    pub schedule: Schedule,
    pub paper_epochs: usize,
    pub paper_batch: usize,
}

impl Recipe {
    /// The schedule with step periods scaled from `paper_epochs` to `epochs`.
    pub fn schedule_for(&self, epochs: usize) -> Schedule {
        match &self.schedule {
            Schedule::Step { every, factor } => {
                let scaled = ((*every as f64) * epochs as f64 / self.paper_epochs.max(1) as f64).round() as usize;
                Schedule::Step { every: scaled.max(1), factor: *factor }
            }
            s => s.clone(),
        }
    }
}

fn sgd(momentum: f64, nesterov: bool) -> OptimKind {
    OptimKind::Sgd { momentum, nesterov }
}

impl Procedure {
    pub const ALL: [Procedure; 11] = [
        Procedure::Scnn,
        Procedure::Dcnn,
        Procedure::Rdcnn,
        Procedure::Dma,
        Procedure::MpAvg,
        Procedure::MpMin,
        Procedure::MpAda,
        Procedure::ThemeEmd,
        Procedure::ArpMpemdAvg,
        Procedure::ArpMpemdAda,
        Procedure::Adapt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Scnn => "scnn",
            Self::Dcnn => "dcnn",
            Self::Rdcnn => "rdcnn",
            Self::Dma => "dma",
            Self::MpAvg => "mp-avg",
            Self::MpMin => "mp-min",
            Self::MpAda => "mp-ada",
            Self::ThemeEmd => "theme-emd",
            Self::ArpMpemdAvg => "arp-mpemd-avg",
            Self::ArpMpemdAda => "arp-mpemd-ada",
            Self::Adapt => "adapt",
        }
    }

    /// Case-insensitive, `_` and `-` interchangeable.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The procedure that trains `id` by default.
    pub fn for_system(id: SystemId) -> Self {
        match id {
            SystemId::Scnn => Self::Scnn,
            SystemId::Dcnn => Self::Dcnn,
            SystemId::RdcnnStyle | SystemId::RdcnnSemantic => Self::Rdcnn,
            SystemId::DmaStat | SystemId::DmaFc | SystemId::DmaImgFu => Self::Dma,
            SystemId::MpAvg => Self::MpAvg,
            SystemId::MpMin => Self::MpMin,
            SystemId::MpAda => Self::MpAda,
            SystemId::ThemeEmd => Self::ThemeEmd,
            SystemId::ArpMpemd => Self::ArpMpemdAda,
        }
    }

    /// The systems this procedure trains (the first is the default). `adapt` takes the
    /// system of the checkpoint it starts from.
    pub fn systems(self) -> &'static [SystemId] {
        match self {
            Self::Scnn => &[SystemId::Scnn],
            Self::Dcnn => &[SystemId::Dcnn],
            Self::Rdcnn => &[SystemId::RdcnnStyle, SystemId::RdcnnSemantic],
            Self::Dma => &[SystemId::DmaFc, SystemId::DmaStat, SystemId::DmaImgFu],
            Self::MpAvg => &[SystemId::MpAvg],
            Self::MpMin => &[SystemId::MpMin],
            Self::MpAda => &[SystemId::MpAda],
            Self::ThemeEmd => &[SystemId::ThemeEmd],
            Self::ArpMpemdAvg | Self::ArpMpemdAda => &[SystemId::ArpMpemd],
            Self::Adapt => &[],
        }
    }

    /// The paper file in `../shared/seeds/`.
    pub fn paper(self) -> &'static str {
        match self {
            Self::Scnn | Self::Dcnn | Self::Rdcnn | Self::Adapt => "002",
            Self::Dma => "000",
            Self::MpAvg | Self::MpMin | Self::MpAda => "001",
            Self::ThemeEmd => "003",
            Self::ArpMpemdAvg | Self::ArpMpemdAda => "004",
        }
    }

    /// The column the paper trains (Arch-1 from scratch in 002 and 000, the ImageNet backbone
    /// in 001, 003 and 004).
    pub fn default_column(self) -> ColumnKind {
        match self.paper() {
            "002" | "000" => ColumnKind::arch1(),
            _ => ColumnKind::Lite0,
        }
    }

    /// The main stage's recipe (see the module table).
    pub fn recipe(self) -> Recipe {
        let constant = Schedule::Constant;
        match self {
            Self::Scnn | Self::Dcnn | Self::Rdcnn => Recipe {
                optimizer: sgd(0.9, false),
                lr: 1e-3,
                weight_decay: 0.0,
                bias_lr_mult: 2.0,
                head_lr_mult: 1.0,
                schedule: constant,
                paper_epochs: 50,
                paper_batch: 128,
            },
            Self::Adapt => Recipe {
                optimizer: sgd(0.9, false),
                lr: 1e-4,
                weight_decay: 0.0,
                bias_lr_mult: 2.0,
                head_lr_mult: 1.0,
                schedule: constant,
                paper_epochs: 10,
                paper_batch: 128,
            },
            Self::Dma => Recipe {
                optimizer: sgd(0.9, false),
                lr: 1e-3,
                weight_decay: 1e-5,
                bias_lr_mult: 1.0,
                head_lr_mult: 1.0,
                schedule: Schedule::plateau(0.1, 2),
                paper_epochs: 30,
                paper_batch: 128,
            },
            Self::MpAvg | Self::MpMin | Self::MpAda => Recipe {
                optimizer: sgd(0.9, true),
                lr: 1e-3,
                weight_decay: 1e-4,
                bias_lr_mult: 1.0,
                head_lr_mult: 1.0,
                schedule: Schedule::Step { every: 20, factor: 0.5 },
                paper_epochs: 32,
                paper_batch: 32,
            },
            Self::ThemeEmd => Recipe {
                optimizer: sgd(0.9, false),
                lr: 1e-3,
                weight_decay: 1e-4,
                bias_lr_mult: 1.0,
                head_lr_mult: 10.0,
                schedule: Schedule::Step { every: 10, factor: 0.5 },
                paper_epochs: 30,
                paper_batch: 16,
            },
            Self::ArpMpemdAvg | Self::ArpMpemdAda => Recipe {
                optimizer: sgd(0.9, false),
                lr: 1e-3,
                weight_decay: 0.0,
                bias_lr_mult: 1.0,
                head_lr_mult: 1.0,
                schedule: Schedule::Step { every: 10, factor: 0.95 },
                paper_epochs: 100,
                paper_batch: 32,
            },
        }
    }

    /// The small-data variant's recipe: AdamW on the trainable part, the paper's schedule shape.
    pub fn small_data_recipe(self) -> Recipe {
        let r = self.recipe();
        Recipe { optimizer: OptimKind::AdamW, lr: 1e-3, weight_decay: 1e-4, bias_lr_mult: 1.0, head_lr_mult: 1.0, ..r }
    }

    fn mpemd(self) -> MpemdVariant {
        if self == Self::ArpMpemdAvg { MpemdVariant::Avg } else { MpemdVariant::Ada }
    }
}

impl std::fmt::Display for Procedure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a model predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// A score (regression on standardised scores).
    Quality,
    /// High / low (AVA's delta-margin labels, an album's keep / reject).
    Binary,
    /// A K-bin score distribution.
    Distribution { bins: usize },
    /// Multi-label styles.
    Styles { tags: Vec<String> },
}

impl Task {
    /// `quality` (or `score`), `binary` (or `keep`), `distribution`, `styles`; the bins and
    /// tags come from `ds`.
    pub fn parse(s: &str, ds: &Dataset) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "quality" | "score" | "aesthetic-score" => Self::Quality,
            "binary" | "keep" | "aesthetic" => Self::Binary,
            "distribution" | "histogram" => {
                Self::Distribution { bins: ds.samples.iter().find_map(|s| s.target.histogram.as_ref().map(Vec::len)).unwrap_or(10) }
            }
            "styles" | "style" => Self::Styles { tags: ds.style_names.clone() },
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Quality => "quality",
            Self::Binary => "binary",
            Self::Distribution { .. } => "distribution",
            Self::Styles { .. } => "styles",
        }
    }

    pub fn head_kind(&self) -> HeadKind {
        match self {
            Self::Quality => HeadKind::Quality,
            Self::Binary => HeadKind::Binary,
            Self::Distribution { bins } => HeadKind::Distribution { bins: *bins },
            Self::Styles { tags } => HeadKind::Styles { tags: tags.clone() },
        }
    }

    /// The validation metric that picks `best`, and whether higher is better.
    pub fn primary_metric(&self) -> (&'static str, bool) {
        match self {
            Self::Quality => ("srcc", true),
            Self::Binary => ("accuracy", true),
            Self::Distribution { .. } => ("emd_r2", false),
            Self::Styles { .. } => ("map", true),
        }
    }
}

/// How targets missing from a dataset are derived for a task (kept in the checkpoint so
/// evaluation derives them the same way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetRules {
    /// Binary task on scored data without any label: label = score > this (the training median).
    pub binary_threshold: Option<f64>,
    /// Distribution task on data with a score and its std but no histogram: the score range
    /// mapped onto bins 1..K (a discretised normal of the ratings' mean and std).
    pub score_range: Option<(f64, f64)>,
}

impl TargetRules {
    /// Rules fitted on `train` for `task` (only what the data lacks).
    pub fn fit(train: &Dataset, task: &Task) -> Self {
        let scores: Vec<f64> = train.samples.iter().filter_map(|s| s.target.score).collect();
        let mut r = TargetRules::default();
        match task {
            // Only for data without any label (scores only, e.g. the LIVE Challenge MOS): an
            // album's starred photos without a pick or reject stay unlabelled.
            Task::Binary if train.samples.iter().all(|s| s.target.label.is_none()) && !scores.is_empty() => {
                let mut v = scores.clone();
                v.sort_by(f64::total_cmp);
                r.binary_threshold = Some(v[v.len() / 2]);
            }
            Task::Distribution { .. } if train.samples.iter().any(|s| s.target.histogram.is_none()) && !scores.is_empty() => {
                let max = scores.iter().copied().fold(f64::MIN, f64::max);
                r.score_range = Some(if max <= 10.0 { (1.0, 10.0) } else { (0.0, 100.0) });
            }
            _ => {}
        }
        r
    }

    /// Fills in what `t` lacks by these rules.
    pub fn apply(&self, t: &mut Target, task: &Task) {
        match task {
            Task::Binary if t.label.is_none() => {
                if let (Some(th), Some(s)) = (self.binary_threshold, t.score) {
                    t.label = Some((s > th) as usize);
                }
            }
            Task::Distribution { bins } if t.histogram.is_none() => {
                if let (Some((lo, hi)), Some(s)) = (self.score_range, t.score) {
                    let k = *bins as f64;
                    let to_bins = |x: f64| 1.0 + (x - lo) / (hi - lo) * (k - 1.0);
                    let mean = to_bins(s);
                    let sd = t.std.map(|d| d / (hi - lo) * (k - 1.0)).unwrap_or(1.0).max(0.25);
                    let w: Vec<f64> = (1..=*bins).map(|b| (-0.5 * ((b as f64 - mean) / sd).powi(2)).exp()).collect();
                    let total: f64 = w.iter().sum::<f64>().max(1e-12);
                    let h: Vec<f64> = w.iter().map(|x| x / total).collect();
                    t.std = histogram_mean_std(&h).map(|(_, s)| s);
                    t.histogram = Some(h);
                }
            }
            _ => {}
        }
    }

    /// Applies the rules to every sample and drops the samples that still lack the task's
    /// target; returns the dataset and how many were dropped.
    pub fn prepare(&self, ds: &Dataset, task: &Task) -> (Dataset, usize) {
        let mut out = ds.clone();
        for s in &mut out.samples {
            self.apply(&mut s.target, task);
        }
        let n = out.samples.len();
        out.samples.retain(|s| has_target(&s.target, task));
        let dropped = n - out.samples.len();
        (out, dropped)
    }
}

/// Whether `t` has what `task` trains on.
pub fn has_target(t: &Target, task: &Task) -> bool {
    match task {
        Task::Quality => t.score.is_some(),
        Task::Binary => t.label.is_some_and(|l| l < 2),
        Task::Distribution { bins } => t.histogram.as_ref().is_some_and(|h| h.len() == *bins),
        Task::Styles { tags } => t.styles.as_ref().is_some_and(|s| s.len() == tags.len()),
    }
}

/// A system's configuration as stored in a checkpoint (enough to rebuild it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSpec {
    pub system: String,
    /// `arch1`, `arch1-style`, `arch1-small`, `lite0`.
    pub column: String,
    pub task: Task,
    /// SCNN's view: `warp`, `center`, `local`, `padding`.
    pub view: String,
    pub patches: usize,
    pub test_groups: usize,
    pub test_patches: usize,
    pub themes: usize,
    /// `pool` or `align`.
    pub roi: String,
    pub max_side: u32,
}

pub fn view_name(v: GlobalView) -> &'static str {
    match v {
        GlobalView::Warp => "warp",
        GlobalView::CenterCrop => "center",
        GlobalView::LocalRandomCrop => "local",
        GlobalView::Padding => "padding",
    }
}

pub fn parse_view(s: &str) -> Option<GlobalView> {
    Some(match s.to_ascii_lowercase().as_str() {
        "warp" | "global" => GlobalView::Warp,
        "center" | "centre" | "center-crop" => GlobalView::CenterCrop,
        "local" | "random-crop" | "local-random-crop" => GlobalView::LocalRandomCrop,
        "padding" | "pad" => GlobalView::Padding,
        _ => return None,
    })
}

impl SystemSpec {
    pub fn new(cfg: &SystemConfig, task: &Task) -> Self {
        Self {
            system: cfg.id.name().into(),
            column: cfg.column.name().into(),
            task: task.clone(),
            view: view_name(cfg.view).into(),
            patches: cfg.patches,
            test_groups: cfg.test_groups,
            test_patches: cfg.test_patches,
            themes: cfg.themes,
            roi: match cfg.roi {
                RoiKind::Pool => "pool".into(),
                RoiKind::Align { samples } => format!("align{samples}"),
            },
            max_side: cfg.max_side,
        }
    }

    pub fn id(&self) -> Result<SystemId> {
        SystemId::parse(&self.system).ok_or_else(|| cfg_err(format!("unknown system {:?}", self.system)))
    }

    pub fn config(&self) -> Result<SystemConfig> {
        let column = ColumnKind::parse(&self.column).ok_or_else(|| cfg_err(format!("unknown column {:?}", self.column)))?;
        let mut c = SystemConfig::new(self.id()?, column, self.task.head_kind());
        c.view = parse_view(&self.view).ok_or_else(|| cfg_err(format!("unknown view {:?}", self.view)))?;
        c.patches = self.patches;
        c.test_groups = self.test_groups;
        c.test_patches = self.test_patches;
        c.themes = self.themes;
        c.roi = match self.roi.strip_prefix("align") {
            Some(n) => RoiKind::Align { samples: n.parse().unwrap_or(2) },
            None => RoiKind::Pool,
        };
        c.max_side = self.max_side;
        Ok(c)
    }
}

/// Everything a run needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub procedure: Procedure,
    /// Default: the procedure's first system.
    pub system: Option<SystemId>,
    /// Default: the paper's column ([`Procedure::default_column`]); the small-data variant
    /// always uses the frozen Lite0.
    pub column: Option<ColumnKind>,
    /// SCNN's view (paper 002's `I_l^r`, `I_g^w`, `I_g^c`, `I_g^p`).
    pub view: GlobalView,
    pub task: Task,
    /// Main-stage epochs (default: the paper's).
    pub epochs: Option<usize>,
    /// First-stage epochs of two-stage procedures (default: half the main stage's, at least 1).
    pub pretrain_epochs: Option<usize>,
    /// Default: 8 at pixel level, 32 on cached features.
    pub batch_size: Option<usize>,
    /// Default: the recipe's.
    pub lr: Option<f64>,
    pub seed: u64,
    pub small_data: bool,
    /// Save `last` every this many optimiser steps (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Test-time views / bags (paper: 50) and MP / ARP test patches used for validation and
    /// stored with the model.
    pub test_views: usize,
    pub test_patches: usize,
    /// DMA's M, MP's and ARP's P (default: the paper's 5).
    pub patches: Option<usize>,
    /// THEME-EMD: longer side limit.
    pub max_side: u32,
    pub clip_grad_norm: Option<f64>,
    /// Decode threads.
    pub threads: usize,
    /// `adapt`: the checkpoint to start from (`RUN/best.json`, `RUN/best` or `RUN`).
    pub init: Option<PathBuf>,
    /// Continue from the run folder's `last` checkpoints.
    pub resume: bool,
    /// Stop after this many optimiser steps of the final stage (a partial run, resumable).
    pub max_steps: Option<u64>,
    pub feature_plan: FeaturePlan,
    /// Feature cache of the small-data variant (`None`: features are not cached on disk).
    pub feature_cache: Option<PathBuf>,
    /// The ImageNet Lite0 weights file.
    pub lite0: PathBuf,
}

impl TrainConfig {
    pub fn new(procedure: Procedure, task: Task, lite0: PathBuf) -> Self {
        Self {
            procedure,
            system: None,
            column: None,
            view: GlobalView::Warp,
            task,
            epochs: None,
            pretrain_epochs: None,
            batch_size: None,
            lr: None,
            seed: 0,
            small_data: false,
            checkpoint_every: 0,
            test_views: 5,
            test_patches: 10,
            patches: None,
            max_side: 800,
            clip_grad_norm: None,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            init: None,
            resume: false,
            max_steps: None,
            feature_plan: FeaturePlan::default(),
            feature_cache: None,
            lite0,
        }
    }
}

/// What happened at a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent {
    /// An optimiser step finished.
    Step,
    /// An epoch finished (validation metric, if any, in `metric`).
    EpochEnd,
    /// A stage finished.
    StageEnd,
}

/// A progress report (sent after every step and epoch).
#[derive(Debug, Clone)]
pub struct Progress {
    pub event: ProgressEvent,
    /// `stage1-scnn-local`, `main`, ...
    pub stage: String,
    pub stage_index: usize,
    pub stages: usize,
    pub epoch: u64,
    pub epochs: usize,
    /// Batch of the epoch just trained (1-based) and batches per epoch.
    pub batch: usize,
    pub batches: usize,
    pub global_step: u64,
    /// Mean training loss of the epoch so far.
    pub loss: f64,
    /// The loss of the step just taken.
    pub step_loss: f64,
    /// Latest validation metric (name, value).
    pub metric: Option<(String, f64)>,
    /// Seconds left in this stage, from the time per step so far.
    pub eta_s: Option<f64>,
}

/// One stage's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSummary {
    pub name: String,
    pub system: String,
    pub dir: PathBuf,
    /// Mean training loss per epoch (all epochs of the run, resumed ones included).
    pub epoch_losses: Vec<f64>,
    pub steps: u64,
    pub best: Option<Best>,
    /// Validation metrics of the last epoch.
    pub metrics: BTreeMap<String, f64>,
    pub finished: bool,
}

/// A run's outcome.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub stages: Vec<StageSummary>,
    /// Cancelled (or stopped by `max_steps`) before the end; `last` holds where it stopped.
    pub stopped: bool,
    /// Images that could not be read (named), from the check before training.
    pub skipped: SkipReport,
    /// Samples without the task's target.
    pub without_target: usize,
    pub out: PathBuf,
}

impl RunSummary {
    pub fn last_stage(&self) -> Option<&StageSummary> {
        self.stages.last()
    }
}

/// Column prefixes of a system's variables (everything else is "head": aggregation, theme
/// FC, heads). `frozen.*` (RDCNN's regularising column) never trains.
pub fn column_prefixes(id: SystemId) -> &'static [&'static str] {
    match id {
        SystemId::Scnn => &["global"],
        SystemId::Dcnn | SystemId::RdcnnStyle | SystemId::RdcnnSemantic => &["global", "local"],
        SystemId::DmaStat | SystemId::DmaFc | SystemId::MpAvg | SystemId::MpMin | SystemId::MpAda | SystemId::ArpMpemd => &["column"],
        SystemId::ThemeEmd => &["column"],
        SystemId::DmaImgFu => &["dma.column", "imagenet.global"],
    }
}

/// One stage of a procedure.
#[derive(Debug, Clone)]
pub(crate) struct StagePlan {
    pub name: String,
    pub spec: SystemSpec,
    pub epochs: usize,
    pub recipe: Recipe,
    pub lr: f64,
    pub batch: usize,
    /// `(from previous stage, to this one)` variable-name prefixes copied at the start.
    pub init_from_previous: Vec<(String, String)>,
    pub dir: PathBuf,
    pub mpemd: MpemdVariant,
    /// Columns frozen and run in evaluation mode (pixel-level small-data variant).
    pub frozen_columns: bool,
    /// Trains on cached features.
    pub cached: bool,
    /// The last stage (its `max_steps` applies).
    pub last: bool,
}

/// The stages of `cfg`'s procedure in `out`.
///
/// `style_task`: the styles task when every training sample has style labels (RDCNN's first
/// stage trains the style column on it; without it, on the run's own task).
pub(crate) fn plan(cfg: &TrainConfig, out: &Path, init: Option<&SystemSpec>, style_task: Option<Task>) -> Result<Vec<StagePlan>> {
    let p = cfg.procedure;
    let id = match (p, init) {
        (Procedure::Adapt, Some(spec)) => spec.id()?,
        (Procedure::Adapt, None) => return Err(cfg_err("adapt fine-tunes a trained model: give the checkpoint to start from (--init)")),
        _ => {
            let id = cfg.system.unwrap_or(p.systems()[0]);
            if !p.systems().contains(&id) {
                return Err(cfg_err(format!(
                    "procedure {p} trains {}, not {id}",
                    p.systems().iter().map(|s| s.name()).collect::<Vec<_>>().join(" / ")
                )));
            }
            id
        }
    };
    let small = cfg.small_data;
    let column = if small { ColumnKind::Lite0 } else { cfg.column.clone().unwrap_or_else(|| p.default_column()) };
    let recipe = if small { p.small_data_recipe() } else { p.recipe() };
    let epochs = cfg.epochs.unwrap_or(recipe.paper_epochs).max(1);
    let pre_epochs = cfg.pretrain_epochs.unwrap_or((epochs / 2).max(1)).max(1);
    let batch = cfg.batch_size.unwrap_or(if small { 32 } else { 8 }).max(1);
    let lr = cfg.lr.unwrap_or(recipe.lr);
    let spec_of = |id: SystemId, column: &ColumnKind, view: GlobalView, task: &Task| {
        let mut c = SystemConfig::new(id, column.clone(), task.head_kind());
        c.view = view;
        if let Some(n) = cfg.patches
            && !matches!(id, SystemId::Scnn | SystemId::Dcnn | SystemId::RdcnnStyle | SystemId::RdcnnSemantic)
        {
            c.patches = n;
        }
        c.test_groups = cfg.test_views.max(1);
        c.test_patches = cfg.test_patches.max(1);
        c.max_side = cfg.max_side;
        SystemSpec::new(&c, task)
    };
    // Systems that must see pixels get the frozen-column pixel path as their small-data variant.
    let needs_pixels =
        |id: SystemId| matches!(id, SystemId::RdcnnStyle | SystemId::RdcnnSemantic | SystemId::ThemeEmd | SystemId::DmaImgFu);
    let stage = |name: &str, spec: SystemSpec, epochs: usize, init: Vec<(&str, &str)>, last: bool| -> Result<StagePlan> {
        let sid = spec.id()?;
        Ok(StagePlan {
            name: name.into(),
            spec,
            epochs,
            recipe: recipe.clone(),
            lr,
            batch,
            init_from_previous: init.into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            dir: if last { out.to_path_buf() } else { out.join(format!("stage1-{name}")) },
            mpemd: p.mpemd(),
            frozen_columns: small && needs_pixels(sid),
            cached: small && !needs_pixels(sid),
            last,
        })
    };
    let task = &cfg.task;
    let mut stages = Vec::new();
    match p {
        Procedure::Adapt => {
            let mut spec = init.cloned().expect("checked above");
            spec.test_groups = cfg.test_views.max(1);
            spec.test_patches = cfg.test_patches.max(1);
            stages.push(stage("adapt", spec, epochs, vec![("", "")], true)?);
        }
        Procedure::Rdcnn if !small && id == SystemId::RdcnnStyle => {
            let style_task = style_task.unwrap_or_else(|| task.clone());
            let style_col = crate::model::systems::style_column_for(&column);
            stages.push(stage(
                "style-scnn",
                spec_of(SystemId::Scnn, &style_col, GlobalView::Warp, &style_task),
                pre_epochs,
                vec![],
                false,
            )?);
            stages.push(stage("main", spec_of(id, &column, cfg.view, task), epochs, vec![("global", "frozen")], true)?);
        }
        Procedure::Rdcnn => {
            // RDCNN-semantic (or any RDCNN on the small-data path): the frozen column is the ImageNet network.
            stages.push(stage("main", spec_of(SystemId::RdcnnSemantic, &column, cfg.view, task), epochs, vec![], true)?);
        }
        Procedure::Dma => {
            let (col, head) = if id == SystemId::DmaImgFu { ("dma.column", "dma.patch_head") } else { ("column", "patch_head") };
            let init: Vec<(&str, &str)> = if small { vec![("head", head)] } else { vec![("global", col), ("head", head)] };
            let first = if id == SystemId::DmaImgFu && small {
                // DMA-ImgFu runs on pixels; its single-patch CNN does too.
                let mut s =
                    stage("single-patch", spec_of(SystemId::Scnn, &column, GlobalView::LocalRandomCrop, task), pre_epochs, vec![], false)?;
                s.frozen_columns = true;
                s.cached = false;
                s
            } else {
                stage("single-patch", spec_of(SystemId::Scnn, &column, GlobalView::LocalRandomCrop, task), pre_epochs, vec![], false)?
            };
            stages.push(first);
            stages.push(stage("main", spec_of(id, &column, cfg.view, task), epochs, init, true)?);
        }
        Procedure::ArpMpemdAvg | Procedure::ArpMpemdAda => {
            if !matches!(task, Task::Distribution { .. }) {
                return Err(cfg_err(format!("{p} predicts score distributions: use --task distribution")));
            }
            let init: Vec<(&str, &str)> = if small { vec![("head", "head")] } else { vec![("global", "column"), ("head", "head")] };
            stages.push(stage("nima", spec_of(SystemId::Scnn, &column, GlobalView::Warp, task), pre_epochs, vec![], false)?);
            stages.push(stage("main", spec_of(id, &column, cfg.view, task), epochs, init, true)?);
        }
        _ => stages.push(stage("main", spec_of(id, &column, cfg.view, task), epochs, vec![], true)?),
    }
    if p == Procedure::ThemeEmd && !matches!(task, Task::Distribution { .. }) {
        return Err(cfg_err("theme-emd predicts score distributions (EMD loss): use --task distribution"));
    }
    Ok(stages)
}

/// Trains `cfg.procedure` on `train` (validating on `val` after each epoch when it is not
/// empty) into the run folder `out`. Images that cannot be read are found first, named in
/// the summary's report, and left out; samples without the task's target are dropped (their
/// count is in the summary).
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    val: &Dataset,
    out: &Path,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<RunSummary> {
    stage::run(cfg, train, val, out, progress, cancel)
}

/// A checkpoint location: `RUN/best.json`, `RUN/best`, or `RUN` (meaning `RUN/best`).
pub fn checkpoint_location(p: &Path) -> (PathBuf, String) {
    if p.is_dir() {
        return (p.to_path_buf(), "best".into());
    }
    let name = p.file_name().map(|n| n.to_string_lossy().trim_end_matches(".json").to_string()).unwrap_or_else(|| "best".into());
    (p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), name)
}

pub(crate) fn standardizer_of(train: &Dataset, task: &Task) -> Option<Standardizer> {
    match task {
        Task::Quality => Some(Standardizer::fit(&train.samples.iter().filter_map(|s| s.target.score).collect::<Vec<_>>())),
        _ => None,
    }
}
