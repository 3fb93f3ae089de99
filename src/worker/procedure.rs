//! The papers' training procedures inside the taste service (issue 8, item 1 and part of item 5):
//! the taste panel's "Advanced: paper procedure" mode. A [`ProcedureRequest`] names a labelled set
//! (the album's decisions, a CSV file, an AVA folder), a task, a procedure with its system and the
//! hyperparameters; [`run`] trains it with [`crate::train::procedures::train`] (its small-data
//! variant by default: frozen ImageNet Lite0, cached features where the system allows it) and
//! saves the best checkpoint as a named taste profile ([`crate::train::taste::ProcedureCheckpoint`]
//! in the [`ProfileStore`], atomically). [`score`] re-scores photos from their pixels with such a
//! profile.
//!
//! - The run goes into a hidden folder in the store (`.runs/run-<time>`), which is removed when the
//!   run ends (finished, cancelled or failed): a cancelled run leaves no profile and no folder. A
//!   folder left by a crash is never listed (the store lists only profile files) and is removed
//!   when the taste service next starts, 6 hours after its last write.
//! - Before training, the small-data variant's backbone features are computed into the feature
//!   cache a few photos at a time ([`ProcedureProgress::preparing`] reports, with an ETA), so pause
//!   and cancel work there too; training then reads them from the cache.
//! - Pause holds the run between optimiser steps; cancel stops it at the next step.
//! - Images of a CSV / AVA set that cannot be read are skipped by the procedure's check, named in
//!   the result (and kept in the profile's metadata), and training goes on.
//!
//! - A keep / reject run ends with the quick mode's held-out comparison ([`HeldOutReport`]): the
//!   best checkpoint on the validation photos beside the untuned quality score of the same photos
//!   ([`ProcedureRequest::baseline`]), stored in the profile's [`ProcedureInfo::heldout`].
//! - A small-data profile leaves out the frozen backbone's tensors (bit-identical to the shipped
//!   Lite0 weights; [`ProcedureCheckpoint::share_backbone`]) and [`load`] restores them from the
//!   weights file, so a profile is its head's size, not the backbone's.
//!
//! Touches: reads the labelled set and its photos, the Lite0 weights and the feature cache folder
//! it is given; writes only the store's folder and that cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::systems::SystemId;
use crate::model::weights::WeightsFile;
use crate::train::checkpoint;
use crate::train::data::{DataError, Dataset, ava, csv};
use crate::train::features::FeaturePlan;
use crate::train::procedures::{self, EvalConfig, LoadedModel, Procedure, Progress, ProgressEvent, Task, TrainConfig};
use crate::train::profiles::ProfileStore;
use crate::train::taste::{ProcedureCheckpoint, ProcedureInfo, TasteConfig, TasteMetrics, TasteProfile, TasteSystem};
use crate::train::taste_eval::{HeldOutReport, Labelled};

/// Where the labels of a procedure run come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelledSet {
    /// The open album's decisions, already a dataset (the app builds it: `album.rs`'s targets,
    /// star distributions, folder themes).
    Album(Dataset),
    /// A CSV with a path column and targets (`crate::train::data::csv`); paths relative to its folder.
    Csv(PathBuf),
    /// An AVA folder as published (`AVA.txt`, `challenges.txt`, `images/<id>.jpg`).
    Ava(PathBuf),
}

impl LabelledSet {
    /// The dataset (reads the CSV or the AVA files; the photos are not opened here).
    pub fn load(&self) -> Result<Dataset, DataError> {
        match self {
            LabelledSet::Album(d) => Ok(d.clone()),
            LabelledSet::Csv(p) => csv::load(p, &csv::CsvOptions::default()),
            LabelledSet::Ava(dir) => ava::aesthetics(&ava::AvaFiles::in_dir(dir), 0.0),
        }
    }
}

/// What the run learns (the set must carry its targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum TaskChoice {
    /// Keep vs reject (an album's picks / rejects; a CSV label; AVA's high / low).
    #[default]
    Binary,
    /// A score (stars, a CSV score or MOS, AVA's mean vote).
    Score,
    /// A score distribution (album stars as 5 bins, a CSV histogram, AVA's 10-bin votes).
    Distribution,
    /// Multi-label styles / tags.
    Styles,
}

impl TaskChoice {
    pub const ALL: [TaskChoice; 4] = [TaskChoice::Binary, TaskChoice::Score, TaskChoice::Distribution, TaskChoice::Styles];

    pub fn label(self) -> &'static str {
        match self {
            TaskChoice::Binary => "Keep vs reject",
            TaskChoice::Score => "Score",
            TaskChoice::Distribution => "Score distribution",
            TaskChoice::Styles => "Style tags (multi-label)",
        }
    }

    /// The procedure's task on `ds` (bins and tags from the data).
    pub fn task(self, ds: &Dataset) -> Task {
        let name = match self {
            TaskChoice::Binary => "binary",
            TaskChoice::Score => "quality",
            TaskChoice::Distribution => "distribution",
            TaskChoice::Styles => "styles",
        };
        Task::parse(name, ds).expect("known task names")
    }

    /// Whether `s` of `ds` carries this task's target (a label, a score, a histogram or a score to
    /// derive one from, style flags).
    pub fn has(self, ds: &Dataset, s: &crate::train::data::Sample) -> bool {
        match self {
            TaskChoice::Binary => s.target.label.is_some_and(|l| l < 2) || s.target.score.is_some(),
            TaskChoice::Score => s.target.score.is_some(),
            TaskChoice::Distribution => s.target.histogram.is_some() || s.target.score.is_some(),
            TaskChoice::Styles => !ds.style_names.is_empty() && s.target.styles.is_some(),
        }
    }

    /// How many samples of `ds` carry this task's target.
    pub fn count(self, ds: &Dataset) -> usize {
        ds.samples.iter().filter(|s| self.has(ds, s)).count()
    }
}

/// A procedure run the panel asks for.
#[derive(Debug, Clone)]
pub struct ProcedureRequest {
    pub name: String,
    pub set: LabelledSet,
    pub task: TaskChoice,
    pub procedure: Procedure,
    /// `None`: the procedure's first system.
    pub system: Option<SystemId>,
    pub small_data: bool,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    /// Share of the set held out for validation (the best checkpoint by its metric).
    pub val_fraction: f64,
    /// Backbone patches cached per photo (small-data variant): fewer is faster.
    pub feature_plan: FeaturePlan,
    /// Patches per photo (DMA's M, MP's and ARP's P) and test-time views.
    pub patches: usize,
    pub test_views: usize,
    pub lite0: PathBuf,
    /// Feature cache folder (`None`: not cached on disk).
    pub feature_cache: Option<PathBuf>,
    /// The untuned model's technical-quality score per photo (the album's stored outputs; empty
    /// for a CSV or AVA set): the held-out report's comparison.
    pub baseline: HashMap<PathBuf, f64>,
}

/// A progress report of a procedure run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcedureProgress {
    /// `main`, `stage1-nima`...; stage index and count.
    pub stage: String,
    pub stage_index: usize,
    pub stages: usize,
    pub epoch: u64,
    pub epochs: usize,
    /// Optimiser steps so far in the run (all stages).
    pub step: u64,
    /// Loss of the step just taken, and the epoch's mean so far.
    pub step_loss: f64,
    pub epoch_loss: f64,
    /// The validation metric after an epoch (name, value).
    pub metric: Option<(String, f64)>,
    pub end_of_epoch: bool,
    /// Seconds left in this stage.
    pub eta_s: Option<f64>,
    pub paused: bool,
    /// Computing the backbone's features before training: photos done (`epoch`) of `epochs`.
    pub preparing: bool,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct ProcedureOutcome {
    pub file: String,
    pub profile: std::sync::Arc<TasteProfile>,
    /// Images of the set that could not be read, each `path: reason`.
    pub skipped: Vec<String>,
    /// Samples without the task's target (not used).
    pub without_target: usize,
    /// What the run could not use besides images (unreadable keywords, tags with too few photos).
    pub notes: Vec<String>,
}

/// Why a run did not give a profile.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("training was cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> RunError {
    RunError::Failed(e.to_string())
}

/// Removes a run folder when dropped (the run ends in any way).
struct RunFolder(PathBuf);

impl Drop for RunFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // `.runs` itself when no other run is in it (fails, harmlessly, otherwise).
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Trains `r` and saves the profile in `store`. `report` gets each progress report (with
/// `paused` set while `pause` holds the run); `cancel` stops it.
pub fn run(
    r: &ProcedureRequest,
    store: &ProfileStore,
    cancel: &AtomicBool,
    pause: &AtomicBool,
    report: &mut dyn FnMut(ProcedureProgress),
) -> Result<ProcedureOutcome, RunError> {
    let started = Instant::now();
    let mut ds = r.set.load().map_err(failed)?;
    let mut notes = Vec::new();
    if r.task == TaskChoice::Styles && matches!(r.set, LabelledSet::Album(_)) {
        // The album's style tags are the photographer's own keywords (XMP dc:subject).
        use rayon::prelude::*;
        let read: Vec<(PathBuf, Result<Vec<String>, String>)> = ds
            .samples
            .par_iter()
            .map(|s| (s.path.clone(), crate::library::xmp::read_keywords(&s.path).map_err(|e| e.to_string())))
            .collect();
        let mut keywords = HashMap::new();
        for (p, k) in read {
            match k {
                Ok(k) => {
                    keywords.insert(p, k);
                }
                Err(e) => notes.push(format!("{}: keywords not read: {e}", p.display())),
            }
        }
        let (with, dropped) =
            crate::train::data::album::with_keyword_styles(&ds, &keywords, super::taste::MIN_TAG_PHOTOS, super::taste::MAX_TAGS);
        ds = with;
        notes.extend(dropped);
    }
    // Only the samples with the task's target (an album's undecided photos are in the set).
    let before = ds.len();
    let names_only = Dataset { samples: Vec::new(), ..ds.clone() };
    ds = ds.filter(|s| r.task.has(&names_only, s));
    let without = before - ds.len();
    let task = r.task.task(&ds);
    let usable = ds.len();
    if usable < 2 {
        return Err(RunError::Failed(format!("{}: only {usable} of {before} photos have a target for “{}”", ds.source, r.task.label())));
    }
    if let Task::Styles { tags } = &task
        && tags.is_empty()
    {
        return Err(RunError::Failed(format!("{}: the set has no style tags", ds.source)));
    }
    let (train, val) = ds.split(r.val_fraction, r.seed);
    let mut cfg = TrainConfig::new(r.procedure, task.clone(), r.lite0.clone());
    cfg.system = r.system;
    cfg.small_data = r.small_data;
    cfg.epochs = Some(r.epochs.max(1));
    cfg.pretrain_epochs = Some((r.epochs / 2).max(1));
    cfg.batch_size = Some(r.batch.max(1));
    cfg.lr = Some(r.lr);
    cfg.seed = r.seed;
    cfg.patches = Some(r.patches.max(1));
    cfg.test_views = r.test_views.max(1);
    cfg.test_patches = r.test_views.max(1);
    cfg.max_side = 512;
    cfg.threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cfg.feature_plan = r.feature_plan;
    cfg.feature_cache = r.feature_cache.clone();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = store.dir().join(".runs").join(format!("run-{nanos:x}-{}", std::process::id()));
    let id = cfg.system.or_else(|| r.procedure.systems().first().copied());
    let needs_pixels = matches!(r.procedure, Procedure::Rdcnn | Procedure::ThemeEmd) || id == Some(SystemId::DmaImgFu);
    if let (true, false, Some(cache)) = (r.small_data, needs_pixels, &r.feature_cache) {
        let paths: Vec<PathBuf> = ds.samples.iter().map(|s| s.path.clone()).collect();
        warm_features(&paths, r, cache, cancel, pause, report)?;
    }
    // Made after the features phase (which writes only to the feature cache), so a folder that
    // goes unwritten for hours is a crash's leftover ([`ProfileStore::remove_stale_runs`]).
    std::fs::create_dir_all(&dir).map_err(|e| RunError::Failed(format!("{}: cannot create the run folder: {e}", dir.display())))?;
    let _cleanup = RunFolder(dir.clone());

    let mut steps = 0u64;
    let mut progress = |p: &Progress| {
        steps = steps.max(p.global_step);
        let out = ProcedureProgress {
            stage: p.stage.clone(),
            stage_index: p.stage_index,
            stages: p.stages,
            epoch: p.epoch,
            epochs: p.epochs,
            step: p.global_step,
            step_loss: p.step_loss,
            epoch_loss: p.loss,
            metric: p.metric.clone(),
            end_of_epoch: p.event == ProgressEvent::EpochEnd,
            eta_s: p.eta_s,
            paused: false,
            preparing: false,
        };
        if p.event == ProgressEvent::StageEnd {
            return;
        }
        // A cancel here is seen by the trainer before its next step.
        let _ = hold(cancel, pause, &out, &mut *report);
        report(out);
    };
    let summary = procedures::train(&cfg, &train, &val, &dir, &mut progress, cancel).map_err(failed)?;
    if summary.stopped || cancel.load(Ordering::SeqCst) {
        return Err(RunError::Cancelled);
    }
    let meta = checkpoint::load_meta(&dir, "best").map_err(failed)?.ok_or_else(|| failed("the run saved no best checkpoint"))?;
    let wpath = dir.join(&meta.weights_file);
    let map = candle_core::safetensors::load(&wpath, &candle_core::Device::Cpu).map_err(|e| failed(format!("{}: {e}", wpath.display())))?;
    let mut tensors = Vec::with_capacity(map.len());
    for (name, t) in map {
        let v = t.to_dtype(candle_core::DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(failed)?;
        tensors.push((name, t.dims().to_vec(), v));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let last = summary.last_stage().ok_or_else(|| failed("the run has no stage"))?;
    let (read_train, read_val) = (train.len(), val.len());
    let skipped: Vec<String> = summary.skipped.skipped.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect();
    let scores: Vec<f64> = train.samples.iter().filter_map(|s| s.target.score).collect();
    let score_range = (task == Task::Quality && !scores.is_empty())
        .then(|| (scores.iter().copied().fold(f64::MAX, f64::min), scores.iter().copied().fold(f64::MIN, f64::max)));
    let info = ProcedureInfo {
        procedure: r.procedure.name().into(),
        system: last.system.clone(),
        task: task.clone(),
        small_data: r.small_data,
        source: ds.source.clone(),
        n_train: read_train,
        n_val: read_val,
        epochs: r.epochs,
        lr: r.lr,
        batch: r.batch,
        seed: r.seed,
        metrics: meta.metrics.clone(),
        score_range,
        skipped: skipped.clone(),
        heldout: None,
    };
    let heldout =
        if task == Task::Binary && !val.is_empty() { Some(heldout_report(r, &dir, &train, &val, &cfg).map_err(failed)?) } else { None };
    let info = ProcedureInfo { heldout, ..info };
    let labels: Vec<usize> = ds.samples.iter().filter_map(|s| s.target.label).collect();
    let metrics = TasteMetrics {
        n_keep: labels.iter().filter(|&&l| l == 1).count(),
        n_reject: labels.iter().filter(|&&l| l == 0).count(),
        steps: steps as usize,
        final_loss: last.epoch_losses.last().copied().unwrap_or(f64::NAN),
        train_auc: None,
        validation_auc: info.metrics.get("val_auc").copied(),
        validation_n: read_val,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut ckpt = ProcedureCheckpoint { info, checkpoint: meta, tensors, backbone: None };
    if r.small_data {
        // The frozen backbone's tensors are the shipped weights': the profile leaves them out
        // (restored from the weights file on load).
        let bytes = crate::model::weights::read_verified(WeightsFile::EfficientNetLite0, &r.lite0).map_err(failed)?;
        ckpt.share_backbone(&bytes).map_err(|e| failed(format!("{}: {e}", r.lite0.display())))?;
    }
    let profile = TasteProfile {
        name: r.name.clone(),
        // Not used by a procedure profile (it has no grid head); kept for the file's fields.
        system: TasteSystem::MP_ADA_GRID,
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        n_labels: read_train + read_val,
        metrics,
        config: TasteConfig { steps: steps as usize, lr: r.lr, ..TasteConfig::default() },
        backbone_sha256: WeightsFile::EfficientNetLite0.expected_sha256().to_string(),
        // THEME-EMD's themes (the set's own: CSV theme column, AVA challenges, album folders): the
        // loupe's theme selector shows the score conditioned on each.
        themes: if last.system == "THEME-EMD" { train.theme_names.clone() } else { Vec::new() },
        weights: crate::train::taste::TasteWeights { mean: Vec::new(), scale: Vec::new(), w: Vec::new(), b: 0.0, themes: Vec::new() },
        tags: Vec::new(),
        procedure: Some(std::sync::Arc::new(ckpt)),
    };
    if cancel.load(Ordering::SeqCst) {
        return Err(RunError::Cancelled);
    }
    let (file, name) = store.save_new(&profile).map_err(failed)?;
    Ok(ProcedureOutcome {
        file,
        profile: std::sync::Arc::new(TasteProfile { name, ..profile }),
        skipped,
        without_target: summary.without_target + without,
        notes,
    })
}

/// The held-out comparison of a keep / reject run (issue 8, item 3): the best checkpoint's keep
/// probability on the validation photos (the labels training did not see; they did choose the
/// best epoch, which the panel says), beside the untuned technical-quality score on the same
/// photos when the request has it for every one of them.
fn heldout_report(
    r: &ProcedureRequest,
    dir: &Path,
    train: &Dataset,
    val: &Dataset,
    cfg: &TrainConfig,
) -> procedures::Result<HeldOutReport> {
    let model = procedures::load_model(&dir.join("best"), &r.lite0, None)?;
    let ecfg = EvalConfig { threads: cfg.threads, batch: 4, seed: r.seed, lite0: r.lite0.clone(), feature_cache: r.feature_cache.clone() };
    let paths: Vec<PathBuf> = val.samples.iter().map(|s| s.path.clone()).collect();
    let (preds, _) = procedures::predict_photos(&model, &paths, None, &ecfg, |_, _| {})?;
    let (mut held, mut scores, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (s, p)) in val.samples.iter().zip(preds).enumerate() {
        if let (Some(label), Some(crate::model::heads::Prediction::Binary { p_high })) = (s.target.label, p) {
            held.push(Labelled { id: i as i64, keep: label == 1, grade: label as f64 });
            scores.push(p_high as f64);
            base.push(r.baseline.get(&s.path).copied());
        }
    }
    let baseline: Option<Vec<f64>> = base.into_iter().collect();
    let train_keep = train.samples.iter().filter(|s| s.target.label == Some(1)).count();
    let n_train = train.samples.iter().filter(|s| s.target.label.is_some()).count();
    Ok(HeldOutReport::new(&held, n_train, train_keep, &scores, baseline.as_deref().filter(|b| !b.is_empty())))
}

/// Holds the calling thread while `pause` is set (reporting `out` once as paused); `Err` when
/// `cancel` is set.
fn hold(
    cancel: &AtomicBool,
    pause: &AtomicBool,
    out: &ProcedureProgress,
    report: &mut dyn FnMut(ProcedureProgress),
) -> Result<(), RunError> {
    let mut said = false;
    while pause.load(Ordering::SeqCst) && !cancel.load(Ordering::SeqCst) {
        if !said {
            report(ProcedureProgress { paused: true, ..out.clone() });
            said = true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    if cancel.load(Ordering::SeqCst) { Err(RunError::Cancelled) } else { Ok(()) }
}

/// Computes the frozen Lite0's features of `paths` into `cache` (as training would), four photos
/// at a time with a progress report after each; honours pause and cancel between them. Photos
/// that cannot be read are left to the training's check, which names them.
fn warm_features(
    paths: &[PathBuf],
    r: &ProcedureRequest,
    cache: &Path,
    cancel: &AtomicBool,
    pause: &AtomicBool,
    report: &mut dyn FnMut(ProcedureProgress),
) -> Result<(), RunError> {
    use crate::model::weights;
    let total = paths.len();
    let mut out = ProcedureProgress {
        stage: "features".into(),
        stage_index: 0,
        stages: 1,
        epoch: 0,
        epochs: total,
        step: 0,
        step_loss: f64::NAN,
        epoch_loss: f64::NAN,
        metric: None,
        end_of_epoch: false,
        eta_s: None,
        paused: false,
        preparing: true,
    };
    hold(cancel, pause, &out, report)?;
    let bytes = weights::read_verified(WeightsFile::EfficientNetLite0, &r.lite0).map_err(failed)?;
    let sha = weights::sha256_hex(&bytes);
    let net = crate::model::imagenet::load_lite0(&r.lite0, candle_core::DType::F32, &candle_core::Device::Cpu)
        .map_err(failed)?
        .fold(candle_core::DType::F32)
        .map_err(failed)?;
    let started = Instant::now();
    let mut done = 0;
    report(out.clone());
    for chunk in paths.chunks(4) {
        hold(cancel, pause, &out, report)?;
        crate::train::features::extract(chunk, &r.feature_plan, &net, &sha, Some(cache), |_, _| {}).map_err(failed)?;
        done += chunk.len();
        out.epoch = done as u64;
        out.eta_s = Some(started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64);
        report(out.clone());
    }
    Ok(())
}

/// The model of a procedure profile (`origin` names its file in errors).
pub fn load(profile: &TasteProfile, lite0: &Path, origin: &Path) -> Result<LoadedModel, String> {
    let c = profile.procedure.as_ref().ok_or_else(|| format!("profile “{}” holds no procedure checkpoint", profile.name))?;
    let map = c.full_tensor_map(lite0, origin).map_err(|e| e.to_string())?;
    procedures::load_model_from(&c.checkpoint, &map, lite0, origin).map_err(|e| e.to_string())
}

/// 0..1 display scores of `paths` under `model` (`None` where the photo could not be read or the
/// task has no single score), in order, as photos of `theme` (THEME-EMD; `None`: no theme);
/// `progress(done, total)` as photos finish.
pub fn score(
    model: &LoadedModel,
    info: &ProcedureInfo,
    paths: &[PathBuf],
    theme: Option<usize>,
    cfg: &EvalConfig,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<Option<f32>>, String> {
    let (preds, _) = procedures::predict_photos(model, paths, theme, cfg, progress).map_err(|e| e.to_string())?;
    Ok(preds
        .into_iter()
        .map(|p| {
            p.and_then(|p| {
                // Quality heads predict standardised scores: back to the training units first.
                let p = match (p, &model.std) {
                    (crate::model::heads::Prediction::Quality { score }, Some(s)) => {
                        crate::model::heads::Prediction::Quality { score: s.inverse(score as f64) as f32 }
                    }
                    (p, _) => p,
                };
                info.display_score(&p)
            })
        })
        .collect())
}

/// The default system and procedure for few labels, always a multi-patch one on the frozen
/// backbone (small-data variant): MP-ada (paper 001) for keep / reject and scores, ARP-MPEMD-avg
/// (paper 004) for distributions, DMA-fc (paper 000) for style tags (MP's objectives are defined
/// for one class or score only).
pub fn default_procedure(task: TaskChoice) -> Procedure {
    match task {
        TaskChoice::Binary | TaskChoice::Score => Procedure::MpAda,
        TaskChoice::Distribution => Procedure::ArpMpemdAvg,
        TaskChoice::Styles => Procedure::Dma,
    }
}

/// Which tasks a procedure can train: MP-avg / min / ada's objectives are for keep / reject and
/// scores (paper 001), THEME-EMD and ARP-MPEMD predict distributions (papers 003, 004); the others
/// take any head.
pub fn procedure_tasks(p: Procedure) -> &'static [TaskChoice] {
    match p {
        Procedure::MpAvg | Procedure::MpMin | Procedure::MpAda => &[TaskChoice::Binary, TaskChoice::Score],
        Procedure::ThemeEmd | Procedure::ArpMpemdAvg | Procedure::ArpMpemdAda => &[TaskChoice::Distribution],
        _ => &TaskChoice::ALL,
    }
}

/// Keeps a cache of loaded models by profile file.
#[derive(Default)]
pub struct Models(HashMap<(String, u64), std::sync::Arc<LoadedModel>>);

impl Models {
    /// The model of `profile` stored as `file` (the last one loaded is kept).
    pub fn get(&mut self, file: &str, profile: &TasteProfile, lite0: &Path, origin: &Path) -> Result<std::sync::Arc<LoadedModel>, String> {
        let key = (file.to_string(), profile.created);
        if let Some(m) = self.0.get(&key) {
            return Ok(m.clone());
        }
        let m = std::sync::Arc::new(load(profile, lite0, origin)?);
        self.0.clear();
        self.0.insert(key, m.clone());
        Ok(m)
    }
}
