//! `keepers train`: runs one of the papers' training procedures by name
//! (`crate::train::procedures`) on a CSV dataset or an album's own decisions, with a progress
//! line on stderr (stage, epoch, batch, loss, validation metric, ETA), checkpoints in the run
//! folder (`last`, `best`), and `--resume` to continue an interrupted run. Ctrl-C (SIGINT)
//! stops the run after the step in progress, saves `last`, and says how to resume; a second
//! Ctrl-C quits at once (the last checkpoint written stays valid: checkpoints are written to a
//! temporary file and renamed).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::model::systems::{ColumnKind, SystemId};
use crate::model::weights::WeightsFile;
use crate::train::data::Dataset;
use crate::train::data::album;
use crate::train::features::FeaturePlan;
use crate::train::procedures::{self, Procedure, Progress, ProgressEvent, Task, TrainConfig, parse_view};

/// Where the photos and their targets come from (`keepers train` and `keepers eval`).
#[derive(Debug, clap::Args)]
pub struct DataSource {
    /// CSV with a path column and targets (e.g. ../shared/data/livec/labels.csv).
    #[arg(long, required_unless_present = "album")]
    pub data: Option<PathBuf>,
    /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// An album's own decisions (picks / rejects / stars), read from the XMP of the photos in this folder.
    #[arg(long, conflicts_with = "data")]
    pub album: Option<PathBuf>,
    /// With --album: read the decisions from this library database instead of XMP.
    #[arg(long, requires = "album")]
    pub library: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: DataSource,
    /// Seed system (SCNN, DCNN, RDCNN-style, RDCNN-semantic, DMA-stat, DMA-fc, DMA-ImgFu, MP-avg, MP-min, MP-ada, THEME-EMD, ARP-MPEMD).
    #[arg(long)]
    pub system: Option<String>,
    /// Procedure (scnn, dcnn, rdcnn, dma, mp-avg, mp-min, mp-ada, theme-emd, arp-mpemd-avg, arp-mpemd-ada, adapt); default: the system's.
    #[arg(long)]
    pub procedure: Option<String>,
    /// quality (score), binary (keep), distribution, styles.
    #[arg(long, default_value = "quality")]
    pub task: String,
    /// Column: arch1, arch1-style, arch1-small (reduced, for CPU), lite0 (default: the paper's).
    #[arg(long)]
    pub column: Option<String>,
    /// SCNN's view: warp, center, local, padding.
    #[arg(long, default_value = "warp")]
    pub view: String,
    /// Main-stage epochs (default: the paper's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// First-stage epochs of two-stage procedures (default: half the main stage's).
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate (default: the paper's).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (checkpoints `last` and `best`).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Frozen ImageNet backbone, cached features where the system allows it.
    #[arg(long)]
    pub small_data: bool,
    /// Share of the photos held out for validation (best checkpoint by its metric).
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Save the last checkpoint every N steps (0: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Test-time views / bags / patches for validation (the papers use 50).
    #[arg(long, default_value_t = 5)]
    pub test_views: usize,
    /// Patches per photo for DMA / MP / ARP-MPEMD (default: 5).
    #[arg(long)]
    pub patches: Option<usize>,
    /// THEME-EMD: longer side limit in pixels.
    #[arg(long, default_value_t = 800)]
    pub max_side: u32,
    /// adapt: the trained checkpoint to start from (RUN/best).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Keep only the photos of this theme (adapt's content subset).
    #[arg(long)]
    pub theme: Option<String>,
    /// Use only the first N photos.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Stop after N optimiser steps of the final stage (resumable).
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Decode threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Feature cache of the small-data variant (default: the user cache dir, keepers/features).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Native-resolution patches cached per photo (small-data variant).
    #[arg(long, default_value_t = 32)]
    pub native: usize,
    /// Aspect-preserving crops cached per photo (small-data variant).
    #[arg(long, default_value_t = 16)]
    pub arp: usize,
}

/// The dataset named by --data / --album (with --library), limited and filtered.
pub(crate) fn load_data(source: &DataSource, theme: Option<&str>, limit: Option<usize>) -> anyhow::Result<Dataset> {
    let mut ds = match (&source.data, &source.album) {
        (Some(csv), _) => super::cv::load_dataset(csv, source.images.as_deref())?,
        (None, Some(dir)) => {
            let (ds, report) = match &source.library {
                Some(db) => {
                    let (lib, _) = crate::library::db::Library::open(db).with_context(|| format!("opening {}", db.display()))?;
                    album::from_library(&lib, dir).with_context(|| format!("reading decisions under {}", dir.display()))?
                }
                None => album::from_xmp_dir(dir).with_context(|| format!("reading the XMP of {}", dir.display()))?,
            };
            eprintln!("album {}: {report}", dir.display());
            ds
        }
        (None, None) => bail!("give --data CSV or --album DIR"),
    };
    if let Some(t) = theme {
        let Some(ti) = ds.theme_names.iter().position(|n| n.eq_ignore_ascii_case(t)) else {
            bail!("{}: no theme {t:?} (themes: {})", ds.source, ds.theme_names.join(", "));
        };
        ds = ds.filter(|s| s.target.theme == Some(ti));
    }
    if let Some(n) = limit {
        ds.samples.truncate(n);
    }
    if ds.is_empty() {
        bail!("{}: no photos to use", ds.source);
    }
    Ok(ds)
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s / 60 % 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

/// The progress line: `[stage i/n name] epoch e/E batch b/B loss L metric M ETA`.
pub(crate) fn progress_line(p: &Progress) -> String {
    let metric = p.metric.as_ref().map(|(k, v)| format!(" val {k} {v:.4}")).unwrap_or_default();
    let eta = p.eta_s.map(|s| format!(" ETA {}", fmt_secs(s))).unwrap_or_default();
    format!(
        "[stage {}/{} {}] epoch {}/{} batch {}/{} step {} loss {:.4}{metric}{eta}",
        p.stage_index + 1,
        p.stages,
        p.stage,
        p.epoch + 1,
        p.epochs,
        p.batch,
        p.batches,
        p.global_step,
        p.loss
    )
}

pub fn run(a: TrainArgs) -> anyhow::Result<std::process::ExitCode> {
    let system = a.system.as_deref().map(|s| SystemId::parse(s).with_context(|| format!("unknown system {s:?}"))).transpose()?;
    let procedure = match (&a.procedure, system) {
        (Some(p), _) => Procedure::parse(p).with_context(|| {
            format!("unknown procedure {p:?} (known: {})", Procedure::ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "))
        })?,
        (None, Some(id)) => Procedure::for_system(id),
        (None, None) if a.init.is_some() => Procedure::Adapt,
        (None, None) => bail!("give --system or --procedure"),
    };
    let ds = load_data(&a.source, a.theme.as_deref(), a.limit)?;
    let task = Task::parse(&a.task, &ds).with_context(|| format!("unknown task {:?} (quality, binary, distribution, styles)", a.task))?;
    let mut cfg = TrainConfig::new(procedure, task, WeightsFile::EfficientNetLite0.path());
    cfg.system = system;
    cfg.column = a.column.as_deref().map(|c| ColumnKind::parse(c).with_context(|| format!("unknown column {c:?}"))).transpose()?;
    cfg.view = parse_view(&a.view).with_context(|| format!("unknown view {:?}", a.view))?;
    cfg.epochs = a.epochs;
    cfg.pretrain_epochs = a.pretrain_epochs;
    cfg.batch_size = a.batch;
    cfg.lr = a.lr;
    cfg.seed = a.seed;
    cfg.small_data = a.small_data;
    cfg.checkpoint_every = a.checkpoint_every;
    cfg.test_views = a.test_views;
    cfg.test_patches = a.test_views;
    cfg.patches = a.patches;
    cfg.max_side = a.max_side;
    cfg.clip_grad_norm = a.clip_grad_norm;
    if let Some(t) = a.threads {
        cfg.threads = t.max(1);
    }
    cfg.init = a.init.clone();
    cfg.resume = a.resume;
    cfg.max_steps = a.max_steps;
    cfg.feature_plan = FeaturePlan { native: a.native, arp: a.arp, seed: a.seed };
    cfg.feature_cache = Some(a.cache.clone().unwrap_or_else(super::cv::default_cache));

    let (train, val) = ds.split(a.val_fraction, a.seed);
    eprintln!(
        "train {} ({}{}) on {}: {} photos for training, {} for validation, seed {}, out {}",
        procedure,
        cfg.system.map(|s| s.name().to_string()).unwrap_or_else(|| "default system".into()),
        if cfg.small_data { ", small-data" } else { "" },
        ds.source,
        train.len(),
        val.len(),
        a.seed,
        a.out.display()
    );
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    let handler = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting now (the last checkpoint stays valid)");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after this step and saving a checkpoint (Ctrl-C again quits now)");
    });
    if let Err(e) = handler {
        eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
    }
    let cancel = &INTERRUPTED;
    let mut stderr = std::io::stderr();
    let mut on_progress = |p: &Progress| {
        let line = progress_line(p);
        match p.event {
            ProgressEvent::Step => {
                let _ = write!(stderr, "\r{line}\x1b[K");
            }
            ProgressEvent::EpochEnd | ProgressEvent::StageEnd => {
                let _ = writeln!(stderr, "\r{line}\x1b[K");
            }
        }
        let _ = stderr.flush();
    };
    let summary = procedures::train(&cfg, &train, &val, &a.out, &mut on_progress, cancel)
        .with_context(|| format!("training {procedure} into {}", a.out.display()))?;
    eprintln!();
    if !summary.skipped.is_empty() {
        eprintln!("{}", summary.skipped);
    }
    if summary.without_target > 0 {
        eprintln!("{} photo(s) had no {} target and were left out", summary.without_target, cfg.task.name());
    }
    for s in &summary.stages {
        let losses: Vec<String> = s.epoch_losses.iter().map(|l| format!("{l:.4}")).collect();
        println!("stage {} ({}): {} steps, epoch losses [{}]", s.name, s.system, s.steps, losses.join(", "));
        if let Some(b) = &s.best {
            println!("  best {} = {:.4} at epoch {} -> {}", b.metric, b.value, b.epoch + 1, s.dir.join("best.json").display());
        }
        if !s.metrics.is_empty() {
            print!("{}", procedures::metrics_table(&s.metrics));
        }
    }
    if summary.stopped {
        println!("stopped before the end; continue with --resume");
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("interrupted; {} holds the last checkpoint: run the same command with --resume to finish", a.out.display());
        return Ok(std::process::ExitCode::from(130));
    }
    Ok(std::process::ExitCode::SUCCESS)
}
