//! The taste service the desktop app drives (issue 8): trains taste profiles from an album's own
//! decisions and scores the album with the active profile, on a background thread the UI never
//! blocks on.
//!
//! - Input: each photo's grid-patch features, stored in the library database by the scoring
//!   service ([`crate::model::quality::PATCH_FEATURES_ID`]). A labelled photo not scored yet is left
//!   out of training and counted.
//! - Training ([`TasteJob::Train`]) runs [`crate::train::taste::train`] twice: first on a seeded,
//!   stratified split, with the held-out labels as the validation curve and for the held-out report
//!   ([`HeldOutReport`]: the profile next to the untuned technical-quality score on the same photos);
//!   then on every label, which is the profile saved. For MP-ada every photo's grid is resampled
//!   to [`TRAIN_PATCHES`] patches (evenly spaced indices) so the bag has one size; scoring uses all
//!   of a photo's patches. Progress (step, loss, held-out AUC, ETA) streams as
//!   [`TasteEvent::Progress`]; [`Taste::pause`] holds the run between steps, [`Taste::cancel`]
//!   stops it and nothing is written.
//! - A finished run is saved in the [`ProfileStore`] by the service itself, atomically (a
//!   temporary file renamed into place): closing the app mid-run cancels it and leaves no file, and a
//!   crash mid-write leaves only a temporary file the store never lists.
//! - When the service starts, it removes the procedure run folders a crash left in the store
//!   (`.runs/run-*` without a write for 6 hours: [`ProfileStore::remove_stale_runs`]).
//! - Scoring ([`TasteJob::Score`]): keep probabilities of the given photos under one profile,
//!   streamed in chunks tagged with the profile's file name, so the app drops scores of a profile
//!   it has switched away from.
//!
//! - Paper procedures ([`TasteJob::Procedure`], the panel's advanced mode): one of the papers'
//!   procedures on an album, a CSV or an AVA folder ([`super::procedure`]), with the same pause and
//!   cancel; progress as [`TasteEvent::ProcedureProgress`], the saved profile as
//!   [`TasteEvent::ProcedureTrained`]. Such a profile scores from pixels ([`TasteJob::ScorePhotos`]),
//!   streamed like [`TasteJob::Score`] with [`TasteEvent::ScoreProgress`] between chunks.
//!
//! Touches: reads the library database, the photos and the labelled sets it is given; writes only
//! the profile store's folder and the feature cache it is given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

use super::Wake;
use crate::library::db::Library;
use crate::model::quality::PATCH_FEATURES_ID;
use crate::model::weights::WeightsFile;
use crate::train::metrics::roc_auc;
use crate::train::profiles::ProfileStore;
use crate::train::taste::{Example, FEATURE_DIM, Procedure, TagHead, TagInfo, TasteConfig, TasteError, TasteProfile, train};
use crate::train::taste_eval::{HeldOutReport, Labelled, split_holdout};

/// Patches per photo in training bags (the quality grid has up to 16).
pub const TRAIN_PATCHES: usize = 16;
/// A keyword becomes a style tag with at least this many photos with it and without it.
pub const MIN_TAG_PHOTOS: usize = 3;
/// At most this many tags (the most frequent) per profile.
pub const MAX_TAGS: usize = 20;
/// Photos per [`TasteEvent::Scores`] chunk.
const SCORE_CHUNK: usize = 64;

/// A training run: the labels, the untuned model's scores for the comparison, the settings.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub name: String,
    pub labels: Vec<Labelled>,
    /// Untuned score (technical quality) per photo id, for the held-out comparison.
    pub baseline: HashMap<i64, f64>,
    pub config: TasteConfig,
    /// The user's themes to condition on (empty: none), and each labelled photo's theme.
    pub themes: Vec<String>,
    pub theme_of: HashMap<i64, usize>,
    /// Photos whose XMP keywords become style tags (empty: no tags). Read on the service thread.
    pub keyword_photos: Vec<(i64, PathBuf)>,
    /// Fraction of each class held out for the report and the validation curve.
    pub holdout: f64,
    pub seed: u64,
}

pub enum TasteJob {
    Train(TrainRequest),
    /// A paper procedure's run, saved as a procedure profile.
    Procedure(Box<super::procedure::ProcedureRequest>),
    /// Scores of photos (id, path) under a procedure profile (stored as `file`), from pixels.
    ScorePhotos {
        file: String,
        profile: Arc<TasteProfile>,
        photos: Vec<(i64, PathBuf)>,
        lite0: PathBuf,
        feature_cache: Option<PathBuf>,
    },
    /// Keep probabilities of `ids` under `profile` (stored as `file`).
    Score {
        file: String,
        profile: Arc<TasteProfile>,
        ids: Vec<i64>,
    },
}

/// Which of the two fits a progress report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// On the training split, checked on the held-out labels.
    Check,
    /// On every label: the profile that is saved.
    Final,
    /// Style tag `i` of `n` (each a held-out check, then the final fit).
    Tag(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainProgress {
    pub phase: Phase,
    /// Steps done in this phase (1-based) and in the phase in all.
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub validation_auc: Option<f64>,
    /// Seconds left for the whole run (both phases).
    pub eta_s: f64,
    pub paused: bool,
}

/// One photo's outputs under a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoTaste {
    pub id: i64,
    /// Keep probability (the shared score).
    pub keep: f32,
    /// Keep probability conditioned on each of the profile's themes.
    pub themes: Vec<f32>,
    /// Probability of each of the profile's style tags.
    pub tags: Vec<f32>,
}

#[derive(Debug, Clone)]
pub enum TasteEvent {
    Progress(TrainProgress),
    /// A run finished and its profile was saved as `file`.
    /// `notes`: what the run could not use (unreadable keyword sidecars, tags with too few photos).
    Trained {
        file: String,
        profile: Arc<TasteProfile>,
        report: HeldOutReport,
        left_out: usize,
        notes: Vec<String>,
    },
    /// A run stopped with an error (nothing saved).
    TrainFailed(String),
    /// A run was cancelled (nothing saved).
    Cancelled,
    /// A procedure run's progress.
    ProcedureProgress(super::procedure::ProcedureProgress),
    /// A procedure run finished and its profile was saved.
    ProcedureTrained(super::procedure::ProcedureOutcome),
    /// Photos scored so far in a pixel scoring job of the profile stored as `file`.
    ScoreProgress {
        file: String,
        done: usize,
        total: usize,
    },
    /// Each photo's outputs under the profile stored as `file`.
    Scores {
        file: String,
        scores: Vec<PhotoTaste>,
    },
    /// Photos of a scoring job without stored features (not scored by the quality model yet).
    ScoreMissing {
        file: String,
        ids: Vec<i64>,
    },
    ScoreFailed {
        file: String,
        error: String,
    },
}

struct Flags {
    cancel: AtomicBool,
    pause: AtomicBool,
    stop: AtomicBool,
}

/// Handle of the service thread; dropping it cancels a run and joins the thread.
pub struct Taste {
    jobs: Option<SyncSender<TasteJob>>,
    events: Receiver<TasteEvent>,
    flags: Arc<Flags>,
    thread: Option<JoinHandle<()>>,
}

impl Taste {
    pub fn start(db_path: PathBuf, store: ProfileStore, wake: Option<Wake>) -> Taste {
        let (jtx, jrx) = sync_channel::<TasteJob>(16);
        let (etx, erx) = channel();
        let flags = Arc::new(Flags { cancel: AtomicBool::new(false), pause: AtomicBool::new(false), stop: AtomicBool::new(false) });
        let f = flags.clone();
        let thread = std::thread::Builder::new()
            .name("keepers-taste".into())
            .spawn(move || {
                // Run folders a crash left behind (a live run writes to its own every epoch).
                let (_, problems) = store.remove_stale_runs(crate::train::profiles::STALE_RUN_AGE);
                for p in problems {
                    eprintln!("keepers: {p}");
                }
                let mut svc = Service { db_path, lib: None, store, flags: f, send: etx, wake, models: Default::default() };
                while let Ok(job) = jrx.recv() {
                    if svc.flags.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match job {
                        TasteJob::Train(r) => svc.train(r),
                        TasteJob::Score { file, profile, ids } => svc.score(file, &profile, &ids),
                        TasteJob::Procedure(r) => svc.procedure(&r),
                        TasteJob::ScorePhotos { file, profile, photos, lite0, feature_cache } => {
                            svc.score_photos(file, &profile, &photos, &lite0, feature_cache)
                        }
                    }
                }
            })
            .expect("spawn the taste thread");
        Taste { jobs: Some(jtx), events: erx, flags, thread: Some(thread) }
    }

    /// Queues a job; gives it back when the queue is full or the service stopped (the caller may
    /// try again next frame).
    #[allow(clippy::result_large_err)] // the job itself comes back, so the caller can send it again
    pub fn submit(&self, job: TasteJob) -> Result<(), TasteJob> {
        if let TasteJob::Train(_) | TasteJob::Procedure(_) = job {
            self.flags.cancel.store(false, Ordering::SeqCst);
            self.flags.pause.store(false, Ordering::SeqCst);
        }
        match &self.jobs {
            Some(j) => j.try_send(job).map_err(|e| match e {
                TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
            }),
            None => Err(job),
        }
    }

    pub fn events(&self) -> &Receiver<TasteEvent> {
        &self.events
    }

    /// Cancels the running training (scoring jobs go on).
    pub fn cancel(&self) {
        self.flags.cancel.store(true, Ordering::SeqCst);
    }

    pub fn pause(&self, paused: bool) {
        self.flags.pause.store(paused, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.flags.pause.load(Ordering::SeqCst)
    }
}

impl Drop for Taste {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        self.flags.cancel.store(true, Ordering::SeqCst);
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Service {
    db_path: PathBuf,
    lib: Option<Library>,
    store: ProfileStore,
    flags: Arc<Flags>,
    send: std::sync::mpsc::Sender<TasteEvent>,
    wake: Option<Wake>,
    models: super::procedure::Models,
}

/// A photo's stored grid features `(n, 1280)`.
fn grid_tensor(flat: Vec<f32>) -> Result<Tensor, String> {
    if flat.is_empty() || !flat.len().is_multiple_of(FEATURE_DIM) {
        return Err(format!("stored patch features have {} values, not a multiple of {FEATURE_DIM}", flat.len()));
    }
    let n = flat.len() / FEATURE_DIM;
    Tensor::from_vec(flat, (n, FEATURE_DIM), &Device::Cpu).map_err(|e| e.to_string())
}

/// A photo's training input from its stored features: the grid, resampled to [`TRAIN_PATCHES`]
/// for MP-ada (one bag size per batch).
fn train_input(flat: Vec<f32>, procedure: Procedure) -> Result<Tensor, TasteError> {
    let x = grid_tensor(flat).map_err(TasteError::Input)?;
    Ok(match procedure {
        Procedure::MpAda => resample_patches(&x, TRAIN_PATCHES)?,
        Procedure::Logistic => x,
    })
}

/// `(p, D)` rows of `x (n, D)` at evenly spaced indices `floor((k + 0.5) n / p)`.
pub fn resample_patches(x: &Tensor, p: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(0)?;
    if n == p {
        return Ok(x.clone());
    }
    let idx: Vec<u32> = (0..p).map(|k| (((k as f64 + 0.5) * n as f64 / p as f64) as usize).min(n - 1) as u32).collect();
    x.index_select(&Tensor::new(idx, x.device())?, 0)
}

impl Service {
    fn emit(&self, e: TasteEvent) {
        let _ = self.send.send(e);
        if let Some(w) = &self.wake {
            w();
        }
    }

    fn library(&mut self) -> Result<&Library, String> {
        if self.lib.is_none() {
            self.lib = Some(Library::open(&self.db_path).map_err(|e| e.to_string())?.0);
        }
        Ok(self.lib.as_ref().expect("opened"))
    }

    fn features(&mut self, ids: &[i64]) -> Result<HashMap<i64, Vec<f32>>, String> {
        let sha = WeightsFile::EfficientNetLite0.expected_sha256();
        self.library()?.embeddings_of(ids, PATCH_FEATURES_ID, sha).map_err(|e| e.to_string())
    }

    fn train(&mut self, r: TrainRequest) {
        match self.try_train(r) {
            Ok(()) => {}
            Err(TasteError::Cancelled) => self.emit(TasteEvent::Cancelled),
            Err(e) => self.emit(TasteEvent::TrainFailed(e.to_string())),
        }
    }

    fn try_train(&mut self, r: TrainRequest) -> Result<(), TasteError> {
        let ids: Vec<i64> = r.labels.iter().map(|l| l.id).collect();
        let mut feats = self.features(&ids).map_err(TasteError::Input)?;
        let labels: Vec<Labelled> = r.labels.iter().copied().filter(|l| feats.contains_key(&l.id)).collect();
        let left_out = r.labels.len() - labels.len();
        let mut inputs = HashMap::new();
        for l in &labels {
            inputs.insert(l.id, train_input(feats.remove(&l.id).expect("filtered"), r.config.system.procedure)?);
        }
        let examples = |set: &[Labelled]| -> Vec<Example<'_>> {
            set.iter().map(|l| Example { features: &inputs[&l.id], keep: l.keep, theme: r.theme_of.get(&l.id).copied() }).collect()
        };
        let (train_idx, held_idx) = split_holdout(&labels, r.holdout, r.seed);
        let train_set: Vec<Labelled> = train_idx.iter().map(|&i| labels[i]).collect();
        let held: Vec<Labelled> = held_idx.iter().map(|&i| labels[i]).collect();
        let sha = WeightsFile::EfficientNetLite0.expected_sha256();
        let started = Instant::now();
        let total_steps = r.config.steps * if held.is_empty() { 1 } else { 2 };
        let flags = self.flags.clone();
        let send = self.send.clone();
        let wake = self.wake.clone();
        let mut done_steps = 0usize;
        let mut progress = |phase: Phase, p: &crate::train::taste::Progress| -> bool {
            done_steps += 1;
            let per_step = started.elapsed().as_secs_f64() / done_steps as f64;
            let mut report = TrainProgress {
                phase,
                step: p.step + 1,
                steps: p.steps,
                loss: p.loss,
                validation_auc: p.validation_auc,
                eta_s: per_step * total_steps.saturating_sub(done_steps) as f64,
                paused: false,
            };
            let mut said_paused = false;
            while flags.pause.load(Ordering::SeqCst) && !flags.cancel.load(Ordering::SeqCst) {
                if !said_paused {
                    report.paused = true;
                    let _ = send.send(TasteEvent::Progress(report));
                    if let Some(w) = &wake {
                        w();
                    }
                    said_paused = true;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            // Every step for short runs; at most about 200 reports a phase for long ones.
            let every = (p.steps / 200).max(1);
            if said_paused || p.step.is_multiple_of(every) || p.step + 1 == p.steps || p.validation_auc.is_some() {
                report.paused = false;
                let _ = send.send(TasteEvent::Progress(report));
                if let Some(w) = &wake {
                    w();
                }
            }
            !flags.cancel.load(Ordering::SeqCst)
        };
        let report = if held.is_empty() {
            None
        } else {
            let check = train(&r.name, &examples(&train_set), &examples(&held), &r.config, &r.themes, sha, |p| progress(Phase::Check, p))?;
            let profile_scores: Vec<f64> = held.iter().map(|l| check.score(&inputs[&l.id]).map(f64::from)).collect::<Result<_, _>>()?;
            let baseline: Option<Vec<f64>> = held.iter().map(|l| r.baseline.get(&l.id).copied()).collect();
            let train_keep = train_set.iter().filter(|l| l.keep).count();
            Some(HeldOutReport::new(&held, train_set.len(), train_keep, &profile_scores, baseline.as_deref()))
        };
        let final_cfg = TasteConfig { eval_every: 0, ..r.config.clone() };
        let profile = train(&r.name, &examples(&labels), &[], &final_cfg, &r.themes, sha, |p| progress(Phase::Final, p))?;
        let report = report.unwrap_or_else(|| {
            let keep = labels.iter().filter(|l| l.keep).count();
            HeldOutReport::new(&[], labels.len(), keep, &[], None)
        });
        if self.flags.cancel.load(Ordering::SeqCst) {
            return Err(TasteError::Cancelled);
        }
        let mut notes = Vec::new();
        let mut profile = profile;
        if !r.keyword_photos.is_empty() {
            profile.tags = self.learn_tags(&r, &mut notes, &mut progress)?;
            profile.metrics.seconds = started.elapsed().as_secs_f64();
        }
        if self.flags.cancel.load(Ordering::SeqCst) {
            return Err(TasteError::Cancelled);
        }
        let (file, name) = self.store.save_new(&profile)?;
        let profile = TasteProfile { name, ..profile };
        self.emit(TasteEvent::Trained { file, profile: Arc::new(profile), report, left_out, notes });
        Ok(())
    }

    /// Style tags from the photos' XMP keywords: each keyword with at least [`MIN_TAG_PHOTOS`]
    /// photos with it and without it (among the photos with keywords and stored features), the
    /// [`MAX_TAGS`] most frequent, learned one-vs-rest like the keep head: a held-out check when
    /// enough photos can be held out, then the final fit on all.
    fn learn_tags(
        &mut self,
        r: &TrainRequest,
        notes: &mut Vec<String>,
        progress: &mut impl FnMut(Phase, &crate::train::taste::Progress) -> bool,
    ) -> Result<Vec<TagHead>, TasteError> {
        use rayon::prelude::*;
        let read: Vec<(i64, Result<Vec<String>, String>)> =
            r.keyword_photos.par_iter().map(|(id, p)| (*id, crate::library::xmp::read_keywords(p).map_err(|e| e.to_string()))).collect();
        let mut with: Vec<(i64, Vec<String>)> = Vec::new();
        for (id, k) in read {
            match k {
                Ok(k) if !k.is_empty() => with.push((id, k)),
                Ok(_) => {}
                Err(e) => notes.push(format!("keywords not read: {e}")),
            }
        }
        let ids: Vec<i64> = with.iter().map(|(id, _)| *id).collect();
        let feats = self.features(&ids).map_err(TasteError::Input)?;
        with.retain(|(id, _)| feats.contains_key(id));
        if with.is_empty() {
            notes.push("No style tags: no scored photo of this album has keywords (XMP dc:subject).".into());
            return Ok(Vec::new());
        }
        let mut inputs = HashMap::new();
        for (id, _) in &with {
            inputs.insert(*id, train_input(feats[id].clone(), r.config.system.procedure)?);
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, k) in &with {
            for t in k {
                *counts.entry(t.as_str()).or_default() += 1;
            }
        }
        let n = with.len();
        let mut eligible: Vec<(&str, usize)> =
            counts.iter().map(|(t, c)| (*t, *c)).filter(|&(_, c)| c >= MIN_TAG_PHOTOS && n - c >= MIN_TAG_PHOTOS).collect();
        eligible.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let skipped = counts.len() - eligible.len().min(MAX_TAGS);
        eligible.truncate(MAX_TAGS);
        if skipped > 0 {
            notes.push(format!(
                "{skipped} keyword(s) not learned: a tag needs at least {MIN_TAG_PHOTOS} photos with it and {MIN_TAG_PHOTOS} without (at most {MAX_TAGS} tags)."
            ));
        }
        let sha = WeightsFile::EfficientNetLite0.expected_sha256();
        let cfg = TasteConfig { eval_every: 0, ..r.config.clone() };
        let mut heads = Vec::new();
        for (ti, (tag, _)) in eligible.iter().enumerate() {
            let labels: Vec<Labelled> = with
                .iter()
                .map(|(id, k)| Labelled { id: *id, keep: k.iter().any(|t| t == tag), grade: k.iter().any(|t| t == tag) as u8 as f64 })
                .collect();
            let ex = |set: &[Labelled]| -> Vec<Example<'_>> {
                set.iter().map(|l| Example { features: &inputs[&l.id], keep: l.keep, theme: None }).collect()
            };
            let (tr, held) = split_holdout(&labels, r.holdout, r.seed);
            let (heldout_auc, heldout_n) = if held.is_empty() {
                (None, 0)
            } else {
                let train_set: Vec<Labelled> = tr.iter().map(|&i| labels[i]).collect();
                let held_set: Vec<Labelled> = held.iter().map(|&i| labels[i]).collect();
                let check = train(tag, &ex(&train_set), &[], &cfg, &[], sha, |p| progress(Phase::Tag(ti, eligible.len()), p))?;
                let scores: Vec<f64> = held_set.iter().map(|l| check.score(&inputs[&l.id]).map(f64::from)).collect::<Result<_, _>>()?;
                (roc_auc(&scores, &held_set.iter().map(|l| l.keep).collect::<Vec<_>>()), held_set.len())
            };
            let fit = train(tag, &ex(&labels), &[], &cfg, &[], sha, |p| progress(Phase::Tag(ti, eligible.len()), p))?;
            let n_pos = labels.iter().filter(|l| l.keep).count();
            let info = TagInfo { name: tag.to_string(), n_pos, n_neg: labels.len() - n_pos, heldout_auc, heldout_n };
            heads.push(TagHead { info, weights: fit.weights });
        }
        Ok(heads)
    }

    fn procedure(&mut self, r: &super::procedure::ProcedureRequest) {
        use super::procedure::RunError;
        let flags = self.flags.clone();
        let send = self.send.clone();
        let wake = self.wake.clone();
        let mut report = |p: super::procedure::ProcedureProgress| {
            let _ = send.send(TasteEvent::ProcedureProgress(p));
            if let Some(w) = &wake {
                w();
            }
        };
        match super::procedure::run(r, &self.store, &flags.cancel, &flags.pause, &mut report) {
            Ok(out) => self.emit(TasteEvent::ProcedureTrained(out)),
            Err(RunError::Cancelled) => self.emit(TasteEvent::Cancelled),
            Err(RunError::Failed(e)) => self.emit(TasteEvent::TrainFailed(e)),
        }
    }

    /// Pixel-level scores of `photos` under a procedure profile, in chunks (progress between them).
    fn score_photos(&mut self, file: String, profile: &TasteProfile, photos: &[(i64, PathBuf)], lite0: &Path, cache: Option<PathBuf>) {
        let Some(info) = profile.procedure.as_ref().map(|c| c.info.clone()) else {
            self.emit(TasteEvent::ScoreFailed { file, error: format!("profile “{}” holds no procedure checkpoint", profile.name) });
            return;
        };
        let model = match self.models.get(&file, profile, lite0, &self.store.path_of(&file)) {
            Ok(m) => m,
            Err(error) => {
                self.emit(TasteEvent::ScoreFailed { file, error });
                return;
            }
        };
        let cfg = crate::train::procedures::EvalConfig {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            batch: 4,
            seed: 0,
            lite0: lite0.to_path_buf(),
            feature_cache: cache,
        };
        let total = photos.len();
        let mut done = 0;
        self.emit(TasteEvent::ScoreProgress { file: file.clone(), done, total });
        for chunk in photos.chunks(4) {
            if self.flags.stop.load(Ordering::SeqCst) {
                return;
            }
            let paths: Vec<PathBuf> = chunk.iter().map(|(_, p)| p.clone()).collect();
            // The shared score (no theme), then one per theme of a THEME-EMD profile.
            let all: Result<Vec<Vec<Option<f32>>>, String> = std::iter::once(None)
                .chain((0..profile.themes.len()).map(Some))
                .map(|t| super::procedure::score(&model, &info, &paths, t, &cfg, |_, _| {}))
                .collect();
            match all {
                Ok(s) => {
                    let mut scores = Vec::new();
                    let mut missing = Vec::new();
                    for (k, (id, _)) in chunk.iter().enumerate() {
                        match s[0][k] {
                            Some(keep) => {
                                let themes = s[1..].iter().map(|v| v[k].unwrap_or(f32::NAN)).collect();
                                scores.push(PhotoTaste { id: *id, keep, themes, tags: Vec::new() })
                            }
                            None => missing.push(*id),
                        }
                    }
                    if !missing.is_empty() {
                        self.emit(TasteEvent::ScoreMissing { file: file.clone(), ids: missing });
                    }
                    self.emit(TasteEvent::Scores { file: file.clone(), scores });
                }
                Err(error) => {
                    self.emit(TasteEvent::ScoreFailed { file: file.clone(), error });
                    return;
                }
            }
            done += chunk.len();
            self.emit(TasteEvent::ScoreProgress { file: file.clone(), done, total });
        }
    }

    fn score(&mut self, file: String, profile: &TasteProfile, ids: &[i64]) {
        for chunk in ids.chunks(SCORE_CHUNK) {
            if self.flags.stop.load(Ordering::SeqCst) {
                return;
            }
            let feats = match self.features(chunk) {
                Ok(f) => f,
                Err(error) => {
                    self.emit(TasteEvent::ScoreFailed { file: file.clone(), error });
                    return;
                }
            };
            let missing: Vec<i64> = chunk.iter().copied().filter(|id| !feats.contains_key(id)).collect();
            let mut scores = Vec::with_capacity(feats.len());
            for (id, flat) in feats {
                let all = grid_tensor(flat).map_err(TasteError::Input).and_then(|x| {
                    let shared = profile.score(&x)?;
                    let themed =
                        profile.themes.iter().map(|t| profile.score_as(&x, t).expect("own theme")).collect::<Result<Vec<_>, _>>()?;
                    Ok(PhotoTaste { id, keep: shared, themes: themed, tags: profile.tag_scores(&x)? })
                });
                match all {
                    Ok(t) => scores.push(t),
                    Err(e) => {
                        self.emit(TasteEvent::ScoreFailed { file: file.clone(), error: format!("photo {id}: {e}") });
                    }
                }
            }
            if !missing.is_empty() {
                self.emit(TasteEvent::ScoreMissing { file: file.clone(), ids: missing });
            }
            self.emit(TasteEvent::Scores { file: file.clone(), scores });
        }
    }
}
