//! The scoring service the desktop app drives: ImageNet content classes, the backbone embedding (for
//! bursts) and, when a trained model is available, technical quality for every photo of an album,
//! computed on a background thread the UI never blocks on.
//!
//! - One dedicated thread owns the models (loaded lazily, on first need) and its own [`Library`]
//!   connection (the database is in WAL mode; the album's thread has another connection).
//! - Queue: a mutex + condvar priority queue ([`super::queue`]), deduplicated by photo id. Photos named
//!   by the last [`Scoring::prioritise`] call (those on screen) go first, in that order, then the rest in
//!   submission order.
//! - A batch of [`ScoringConfig::batch`] photos: stored outputs for the current model versions are read
//!   first and sent at once with `from_db: true` (a re-opened album is instant); the rest are decoded in
//!   parallel (rayon) at [`ScoringConfig::max_side`], go through one backbone forward (centre 224 view,
//!   the view [`Classifier::top_k`] uses: top-5 classes and the pooled 1280-d features), then through
//!   the quality model if one loaded.
//! - The quality model also hands back its grid patches' pooled features; they are stored as the
//!   [`PATCH_FEATURES_ID`] embedding (about 80 KB for a 16-patch photo), the input taste profiles train
//!   and score on ([`super::taste`]). A photo scored before they were kept is scored again once.
//! - Each photo's outputs (classes JSON, embedding, quality JSON, patch features) are written in one transaction
//!   ([`Library::put_outputs`]), which also clears its `needs_scoring` mark, so cancelling or killing
//!   the process never leaves a photo half-stored. A database that cannot be opened or written is
//!   reported once ([`ScoreEvent::StoreFailed`]); the scores are still sent.
//! - A photo that cannot be decoded, or is damaged (a truncated JPEG decodes only partly, and scores of
//!   its grey remainder would not describe the photo), is reported ([`ScoreEvent::Failed`]) and the
//!   others go on. Missing Lite0 weights or a quality model that fails to load are reported once
//!   ([`ScoreEvent::ModelUnavailable`]) and everything else still works: without a quality model
//!   `quality` is `None`, never a made-up number; without the backbone `classes` and `embedding` are
//!   empty and nothing is stored for the photo (it still needs scoring).
//! - [`Scoring::cancel`] drops the queue, stops the running batch between photos, and sends nothing
//!   more for it: events of the cancelled work not yet received are dropped too. Dropping the
//!   [`Scoring`] cancels and joins the thread.
//!
//! Touches: the library database (outputs, embeddings, `needs_scoring`) and reads the photos and the
//! weights files. Never writes a photo.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::queue::{Queue, ScoreRequest};
use crate::library::db::{Embedding, Library, Output};
use crate::library::decode::{Decoded, Size, decode_intact};
use crate::model::imagenet::{ClassScore, Classifier, class_names, top_k};
use crate::model::preprocess::imagenet_batch;
use crate::model::quality::PATCH_FEATURES_ID;
use crate::model::views::Rect;
use crate::model::weights::WeightsFile;

/// The backbone's outputs for each photo, as the worker stores them: the top [`TOP_CLASSES`]
/// ImageNet classes of the centre 224 view and its pooled 1280-d features (the embedding).
pub fn backbone_outputs(
    c: &Classifier,
    names: &[&'static str],
    images: &[&RgbImage],
    device: &Device,
) -> candle_core::Result<Vec<(Vec<ClassScore>, Vec<f32>)>> {
    let x = imagenet_batch(images, c.input_size(), device)?;
    let f = c.network().features(&x)?;
    let p = candle_nn::ops::softmax(&c.network().classify(&f.pooled)?, D::Minus1)?;
    let p = p.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let e = f.pooled.to_dtype(DType::F32).and_then(|t: Tensor| t.to_vec2::<f32>())?;
    Ok(p.iter().zip(e).map(|(row, e)| (top_k(row, TOP_CLASSES).into_iter().map(|(i, p)| (i, names[i], p)).collect(), e)).collect())
}

/// Model id of the backbone's outputs and embeddings in the database.
pub const LITE0_MODEL_ID: &str = "lite0";
/// Output head holding the ImageNet top-5 (`[[class index, probability], ...]`).
pub const CLASSES_HEAD: &str = "imagenet-top5";
/// Output head holding a [`QualityScore`] as JSON.
pub const QUALITY_HEAD: &str = "quality";
/// ImageNet classes kept per photo.
pub const TOP_CLASSES: usize = 5;
/// Model id and version of BRISQUE's outputs (head [`QUALITY_HEAD`], the score as a JSON number).
pub const BRISQUE_MODEL_ID: &str = "brisque";
pub const BRISQUE_VERSION: &str = "pypi-brisque-0.2.0";

/// A photo's technical quality and its patches' (the shipped model's types; the worker maps their
/// rectangles to full-resolution photo pixels).
pub use crate::model::quality::{PatchScore, QualityScore};

/// Everything the worker knows about one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoScores {
    /// ImageNet top-5, most probable first (content); empty when the backbone is unavailable.
    pub classes: Vec<ClassScore>,
    /// Pooled backbone features (1280 for Lite0), for bursts; empty when the backbone is unavailable.
    pub embedding: Vec<f32>,
    /// `None`: no trained quality model is available.
    pub quality: Option<QualityScore>,
    /// The classical BRISQUE score (LIVE DMOS scale, lower is better), when the app asked for it.
    pub brisque: Option<f32>,
}

/// A trained technical-quality model, as the worker calls it.
pub trait QualityScorer: Send {
    /// Database model id of its outputs.
    fn model_id(&self) -> &str;
    /// Weights version (e.g. the weights file's sha256): stored outputs of another version are recomputed.
    fn version(&self) -> &str;
    /// One score per image, in order. `images` are the decoded photos (long side at most
    /// [`ScoringConfig::max_side`]); patch rectangles are in the pixels of these images, and the worker
    /// maps them to the photo's full-resolution pixels.
    fn score(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<QualityScore>>;
    /// Whether [`Self::score_with_features`] gives each photo's patch features (taste profiles train on
    /// them); a scorer that does not leaves the app without taste profiles.
    fn gives_features(&self) -> bool {
        false
    }
    /// [`Self::score`] plus, when [`Self::gives_features`], each photo's grid-patch features flattened
    /// `(patches x 1280)`, stored as the [`crate::model::quality::PATCH_FEATURES_ID`] embedding.
    fn score_with_features(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<(QualityScore, Option<Vec<f32>>)>> {
        Ok(self.score(images)?.into_iter().map(|s| (s, None)).collect())
    }
}

impl QualityScorer for crate::model::quality::QualityModel {
    fn model_id(&self) -> &str {
        crate::model::quality::MODEL_ID
    }
    fn version(&self) -> &str {
        crate::model::quality::QualityModel::version(self)
    }
    fn score(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<QualityScore>> {
        crate::model::quality::QualityModel::score(self, images)
    }
    fn gives_features(&self) -> bool {
        true
    }
    fn score_with_features(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<(QualityScore, Option<Vec<f32>>)>> {
        Ok(self.score_and_features(images)?.into_iter().map(|(s, f)| (s, Some(f))).collect())
    }
}

/// Loads the shipped quality model (weights/quality_multilevel.*); a missing file is reported as "not trained
/// yet" through [`ScoreEvent::ModelUnavailable`].
pub fn shipped_quality() -> QualityLoader {
    Box::new(|device: &Device| {
        let (config, lite0) = crate::model::quality::default_paths();
        crate::model::quality::QualityModel::load(&config, &lite0, device)
            .map(|m| Box::new(m) as Box<dyn QualityScorer>)
            .map_err(|e| e.to_string())
    })
}

/// Loads the quality model on the worker thread, on the device the worker uses.
pub type QualityLoader = Box<dyn FnOnce(&Device) -> Result<Box<dyn QualityScorer>, String> + Send>;

/// Called after events are sent (the app passes egui's `request_repaint`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

pub struct ScoringConfig {
    /// The library database (the album's).
    pub db_path: PathBuf,
    /// EfficientNet-Lite0 weights (normally [`WeightsFile::EfficientNetLite0`]`.path()`).
    pub lite0: PathBuf,
    /// Photos per backbone forward.
    pub batch: usize,
    /// Decode size: long side at most this many pixels (the backbone needs 224 on the short side).
    pub max_side: u32,
    /// The quality model, if the app has one; `None`: every photo gets `quality: None`.
    pub quality: Option<QualityLoader>,
    /// Also compute BRISQUE ([`crate::model::brisque`], on the decoded photo) for every photo.
    pub brisque: bool,
}

impl ScoringConfig {
    /// Long side photos are decoded to for scoring (the app and `keepers predict`).
    pub const DEFAULT_MAX_SIDE: u32 = 1024;
    /// Photos per backbone batch (the app's, and the default).
    pub const APP_BATCH: usize = 8;

    /// The shipped Lite0 weights, batches of [`Self::APP_BATCH`], photos decoded to 1024 px, no quality model.
    pub fn new(db_path: PathBuf) -> ScoringConfig {
        ScoringConfig {
            db_path,
            lite0: WeightsFile::EfficientNetLite0.path(),
            batch: Self::APP_BATCH,
            max_side: Self::DEFAULT_MAX_SIDE,
            quality: None,
            brisque: false,
        }
    }

    /// What the desktop app scores with (and `keepers bench scoring` measures): batches of
    /// [`Self::APP_BATCH`], the shipped quality model and BRISQUE.
    pub fn app(db_path: PathBuf) -> ScoringConfig {
        ScoringConfig { quality: Some(shipped_quality()), brisque: true, ..ScoringConfig::new(db_path) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreEvent {
    /// Scores of photo `id`; `from_db`: all of them were read from the database, nothing was computed.
    Scored { id: i64, scores: Arc<PhotoScores>, from_db: bool },
    /// This photo could not be scored (cannot be read, damaged, inference error); the others go on.
    Failed { id: i64, path: PathBuf, error: String },
    /// A model could not be loaded; sent once, the rest still works.
    ModelUnavailable { what: String, error: String },
    /// Scores could not be saved to the library database (sent once until a save works again); they
    /// are still sent, and the photos stay marked as needing scoring.
    StoreFailed { error: String },
    /// The queue ran empty after some work.
    Idle,
}

/// A snapshot for the progress bar; counts since the last [`Scoring::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Photos submitted.
    pub total: usize,
    /// Scored (computed or read back).
    pub done: usize,
    pub failed: usize,
    /// Time left at the recent rate of computed photos; `None` until a rate is known or when idle.
    pub eta: Option<Duration>,
    pub busy: bool,
}

#[derive(Debug, Default)]
struct Stats {
    total: usize,
    done: usize,
    failed: usize,
    /// Computed photos per second, exponentially smoothed over batches.
    rate: Option<f64>,
}

/// Shared between the handle and the worker thread. Lock order: `outbox`, then `queue`, then `stats`.
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    stop: AtomicBool,
    /// Bumped by every cancel, under the `outbox` and `queue` locks; work taken under one generation
    /// sends nothing once it has changed.
    generation: AtomicU64,
    outbox: Mutex<Sender<ScoreEvent>>,
    stats: Mutex<Stats>,
    wake: Option<Wake>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }

    /// Sends `events` and applies `count` to the statistics if the work of `generation` was not
    /// cancelled; returns whether it was sent.
    fn emit(&self, generation: u64, events: Vec<ScoreEvent>, count: impl FnOnce(&mut Stats)) -> bool {
        let tx = lock(&self.outbox);
        if !self.current(generation) {
            return false;
        }
        count(&mut lock(&self.stats));
        if events.is_empty() {
            return true;
        }
        for e in events {
            let _ = tx.send(e);
        }
        drop(tx);
        self.wake();
        true
    }

    /// Sends an event that is not about the current work (model and database trouble).
    fn emit_always(&self, event: ScoreEvent) {
        let _ = lock(&self.outbox).send(event);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            w();
        }
    }
}

/// Handle to the scoring thread.
pub struct Scoring {
    shared: Arc<Shared>,
    events: Receiver<ScoreEvent>,
    thread: Option<JoinHandle<()>>,
}

impl Scoring {
    /// Starts the thread; models and the database connection are opened there, on first need.
    pub fn start(cfg: ScoringConfig, wake: Option<Wake>) -> Scoring {
        let (tx, events) = channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            outbox: Mutex::new(tx),
            stats: Mutex::new(Stats::default()),
            wake,
        });
        let engine = Engine::new(cfg, shared.clone());
        let thread = std::thread::Builder::new().name("keepers-scoring".into()).spawn(move || engine.run()).expect("spawn scoring thread");
        Scoring { shared, events, thread: Some(thread) }
    }

    /// Adds photos to the queue; ids already submitted since the last cancel are ignored.
    pub fn submit(&self, reqs: Vec<ScoreRequest>) {
        let mut q = lock(&self.shared.queue);
        let added = q.push(reqs);
        if added > 0 {
            lock(&self.shared.stats).total += added;
            self.shared.work.notify_one();
        }
    }

    /// These ids (photos on screen) are scored first, in this order. Cheap: call it every frame.
    pub fn prioritise(&self, ids: &[i64]) {
        lock(&self.shared.queue).prioritise(ids);
    }

    /// Drops the queue and stops the running batch between photos. Nothing more is sent for the
    /// cancelled work: its events still waiting in [`Scoring::events`] are dropped as well (model and
    /// database reports are kept). Progress counts start again from zero.
    pub fn cancel(&self) {
        let tx = lock(&self.shared.outbox);
        {
            let mut q = lock(&self.shared.queue);
            q.clear();
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
            let mut s = lock(&self.shared.stats);
            (s.total, s.done, s.failed) = (0, 0, 0);
        }
        let keep: Vec<ScoreEvent> =
            self.events.try_iter().filter(|e| matches!(e, ScoreEvent::ModelUnavailable { .. } | ScoreEvent::StoreFailed { .. })).collect();
        for e in keep {
            let _ = tx.send(e);
        }
    }

    pub fn events(&self) -> &Receiver<ScoreEvent> {
        &self.events
    }

    /// Counts and ETA for the progress bar (one short lock).
    pub fn progress(&self) -> Progress {
        let s = lock(&self.shared.stats);
        let left = s.total.saturating_sub(s.done + s.failed);
        let eta = s.rate.filter(|_| left > 0).map(|r| Duration::from_secs_f64(left as f64 / r));
        Progress { total: s.total, done: s.done, failed: s.failed, eta, busy: left > 0 }
    }
}

impl Drop for Scoring {
    fn drop(&mut self) {
        self.cancel();
        {
            let _q = lock(&self.shared.queue);
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.work.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A model loaded on first need.
enum Slot<T> {
    NotTried,
    Ready(T),
    Unavailable,
}

impl<T> Slot<T> {
    fn get(&self) -> Option<&T> {
        match self {
            Slot::Ready(t) => Some(t),
            _ => None,
        }
    }
}

/// What the database already holds for one photo (current model versions).
#[derive(Default)]
struct Known {
    classes: Option<Vec<ClassScore>>,
    embedding: Option<Vec<f32>>,
    quality: Option<QualityScore>,
    brisque: Option<f32>,
    /// The database holds the photo's patch features (taste profiles' input).
    has_patches: bool,
    /// Patch features computed in this batch, to store.
    patches: Option<Vec<f32>>,
}

impl Known {
    fn is_empty(&self) -> bool {
        self.classes.is_none() && self.embedding.is_none() && self.quality.is_none()
    }
}

/// One photo to compute in a batch.
struct Job {
    req: ScoreRequest,
    known: Known,
    backbone: bool,
    quality: bool,
    brisque: bool,
}

/// The worker thread's state.
struct Engine {
    shared: Arc<Shared>,
    db_path: PathBuf,
    lite0: PathBuf,
    batch: usize,
    max_side: u32,
    device: Device,
    names: Vec<&'static str>,
    lite0_version: &'static str,
    lib: Slot<Library>,
    classifier: Slot<Classifier>,
    quality_loader: Option<QualityLoader>,
    brisque: Slot<crate::model::brisque::Brisque>,
    quality: Slot<Box<dyn QualityScorer>>,
    store_failing: bool,
    /// Photos of the running batch without a `Scored` or `Failed` event yet.
    unreported: HashMap<i64, PathBuf>,
}

impl Engine {
    fn new(cfg: ScoringConfig, shared: Arc<Shared>) -> Engine {
        Engine {
            shared,
            db_path: cfg.db_path,
            lite0: cfg.lite0,
            batch: cfg.batch.max(1),
            max_side: cfg.max_side.max(1),
            device: crate::device::best_device().0,
            names: class_names(),
            lite0_version: WeightsFile::EfficientNetLite0.expected_sha256(),
            lib: Slot::NotTried,
            classifier: Slot::NotTried,
            quality_loader: cfg.quality,
            brisque: if cfg.brisque { Slot::NotTried } else { Slot::Unavailable },
            quality: Slot::NotTried,
            store_failing: false,
            unreported: HashMap::new(),
        }
    }

    fn run(mut self) {
        let mut idle_owed: Option<u64> = None;
        loop {
            let (batch, generation) = {
                let mut q = lock(&self.shared.queue);
                loop {
                    if self.shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if !q.is_empty() {
                        break;
                    }
                    if let Some(g) = idle_owed.take() {
                        drop(q);
                        self.shared.emit(g, vec![ScoreEvent::Idle], |_| {});
                        q = lock(&self.shared.queue);
                        continue;
                    }
                    q = self.shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                (q.take(self.batch), self.shared.generation.load(Ordering::SeqCst))
            };
            self.unreported = batch.iter().map(|r| (r.id, r.path.clone())).collect();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(batch, generation)));
            if let Err(panic) = outcome {
                let msg = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
                let error = format!("internal error while scoring: {}", msg.unwrap_or_else(|| "panic".into()));
                // The photos of the batch not yet reported fail; the worker goes on with the next batch.
                let events: Vec<_> = std::mem::take(&mut self.unreported)
                    .into_iter()
                    .map(|(id, path)| ScoreEvent::Failed { id, path, error: error.clone() })
                    .collect();
                self.send(generation, events);
            }
            idle_owed = Some(generation);
        }
    }

    fn process(&mut self, batch: Vec<ScoreRequest>, generation: u64) {
        self.ensure_library();
        self.ensure_quality();
        self.ensure_brisque();
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        let mut known = self.stored(&ids);

        // Complete in the database: sent at once.
        let mut jobs = Vec::new();
        let mut from_db = Vec::new();
        for req in batch {
            let known = known.remove(&req.id).unwrap_or_default();
            let backbone = known.classes.is_none() || known.embedding.is_none();
            let quality = self.quality.get().is_some_and(|q| known.quality.is_none() || (q.gives_features() && !known.has_patches));
            let brisque = self.brisque.get().is_some() && known.brisque.is_none();
            if backbone || quality || brisque {
                jobs.push(Job { req, known, backbone, quality, brisque });
            } else {
                from_db.push(scored(req.id, known, true));
            }
        }
        if !self.send(generation, from_db) {
            return;
        }
        if jobs.is_empty() {
            return;
        }

        if jobs.iter().any(|j| j.backbone) {
            self.ensure_classifier();
        }
        let have_backbone = self.classifier.get().is_some();
        // Nothing can be computed for these (no model): what the database had, nothing stored.
        let (jobs, stuck): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| (j.backbone && have_backbone) || j.quality || j.brisque);
        let stuck: Vec<ScoreEvent> = stuck
            .into_iter()
            .map(|j| {
                let from_db = !j.known.is_empty();
                scored(j.req.id, j.known, from_db)
            })
            .collect();
        if !self.send(generation, stuck) || jobs.is_empty() {
            return;
        }

        // Decode in parallel, skipping the rest once cancelled. The rate for the ETA is measured from
        // here (model loading is a one-off).
        let started = Instant::now();
        let max_side = self.max_side;
        let shared = &self.shared;
        let decoded: Vec<Option<Result<Decoded, String>>> = jobs
            .par_iter()
            .map(|j| {
                if !shared.current(generation) {
                    return None;
                }
                Some(decode_intact(&j.req.path, Size::Fit(max_side)).map_err(|e| e.to_string()))
            })
            .collect();
        if !self.shared.current(generation) {
            return;
        }
        let mut ok: Vec<(Job, Decoded)> = Vec::with_capacity(jobs.len());
        let mut failed = Vec::new();
        for (job, d) in jobs.into_iter().zip(decoded) {
            match d.expect("decoded unless cancelled") {
                Ok(d) => ok.push((job, d)),
                Err(error) => failed.push(ScoreEvent::Failed { id: job.req.id, path: job.req.path, error }),
            }
        }
        if !self.send(generation, failed) || ok.is_empty() {
            return;
        }

        // Backbone: one forward for every photo that needs it.
        let idx: Vec<usize> = (0..ok.len()).filter(|&i| ok[i].0.backbone && have_backbone).collect();
        let mut errors: HashMap<usize, String> = HashMap::new();
        if !idx.is_empty() {
            let images: Vec<&RgbImage> = idx.iter().map(|&i| &ok[i].1.image).collect();
            match self.backbone(&images) {
                Ok(rows) => {
                    for (&i, (classes, embedding)) in idx.iter().zip(rows) {
                        ok[i].0.known.classes = Some(classes);
                        ok[i].0.known.embedding = Some(embedding);
                    }
                }
                Err(e) => {
                    for &i in &idx {
                        errors.insert(i, format!("{}: backbone inference failed: {e}", ok[i].0.req.path.display()));
                    }
                }
            }
        }
        if !self.shared.current(generation) {
            return;
        }

        // Quality, if a model loaded.
        let idx: Vec<usize> = (0..ok.len()).filter(|&i| ok[i].0.quality && !errors.contains_key(&i)).collect();
        if let (Some(q), false) = (self.quality.get(), idx.is_empty()) {
            let images: Vec<&RgbImage> = idx.iter().map(|&i| &ok[i].1.image).collect();
            let scores = q.score_with_features(&images).and_then(|s| {
                if s.len() == images.len() {
                    Ok(s)
                } else {
                    Err(candle_core::Error::Msg(format!("quality model returned {} scores for {} photos", s.len(), images.len())))
                }
            });
            match scores {
                Ok(scores) => {
                    for (&i, (mut s, patches)) in idx.iter().zip(scores) {
                        let d = &ok[i].1;
                        let (sx, sy) = (d.full_width as f64 / d.image.width() as f64, d.full_height as f64 / d.image.height() as f64);
                        let scale = |r: Rect| Rect { x: r.x * sx, y: r.y * sy, w: r.w * sx, h: r.h * sy };
                        for p in &mut s.patches {
                            p.rect = scale(p.rect);
                            p.cell = scale(p.cell);
                        }
                        ok[i].0.known.quality = Some(s);
                        ok[i].0.known.patches = patches;
                    }
                }
                Err(e) => {
                    for &i in &idx {
                        errors.insert(i, format!("{}: quality model failed: {e}", ok[i].0.req.path.display()));
                    }
                }
            }
        }

        // BRISQUE, when asked for: a classical model, in parallel over the batch's photos.
        if let Some(b) = self.brisque.get() {
            let shared = &self.shared;
            let scores: Vec<Option<f32>> =
                ok.par_iter().map(|(j, d)| (j.brisque && shared.current(generation)).then(|| b.score(&d.image) as f32)).collect();
            for ((j, _), s) in ok.iter_mut().zip(scores) {
                if s.is_some() {
                    j.known.brisque = s;
                }
            }
        }

        // Store and send, photo by photo, stopping between photos once cancelled.
        let computed = ok.len();
        let quality_ids = self.quality.get().map(|q| (q.model_id().to_owned(), q.version().to_owned()));
        for (i, (job, _)) in ok.into_iter().enumerate() {
            if !self.shared.current(generation) {
                return;
            }
            if let Some(error) = errors.remove(&i) {
                let ev = ScoreEvent::Failed { id: job.req.id, path: job.req.path, error };
                if !self.send(generation, vec![ev]) {
                    return;
                }
                continue;
            }
            if job.known.classes.is_some() && job.known.embedding.is_some() {
                self.store(job.req.id, &job.known, quality_ids.as_ref());
            }
            let ev = scored(job.req.id, job.known, false);
            if !self.send(generation, vec![ev]) {
                return;
            }
        }
        let rate = computed as f64 / started.elapsed().as_secs_f64().max(1e-6);
        let mut s = lock(&self.shared.stats);
        s.rate = Some(s.rate.map_or(rate, |r| 0.7 * r + 0.3 * rate));
    }

    /// Sends photo events of the work of `generation` (nothing once it was cancelled) and counts them.
    fn send(&mut self, generation: u64, events: Vec<ScoreEvent>) -> bool {
        let (mut done, mut failed) = (0, 0);
        for e in &events {
            match e {
                ScoreEvent::Scored { id, .. } => {
                    done += 1;
                    self.unreported.remove(id);
                }
                ScoreEvent::Failed { id, .. } => {
                    failed += 1;
                    self.unreported.remove(id);
                }
                _ => {}
            }
        }
        self.shared.emit(generation, events, |s| {
            s.done += done;
            s.failed += failed;
        })
    }

    fn ensure_library(&mut self) {
        if let Slot::NotTried = self.lib {
            self.lib = match Library::open(&self.db_path) {
                Ok((lib, _)) => Slot::Ready(lib),
                Err(e) => {
                    self.store_failing = true;
                    self.shared.emit_always(ScoreEvent::StoreFailed { error: format!("scores are not saved: {e}") });
                    Slot::Unavailable
                }
            };
        }
    }

    fn ensure_quality(&mut self) {
        if let Slot::NotTried = self.quality {
            self.quality = match self.quality_loader.take() {
                None => Slot::Unavailable,
                Some(load) => match load(&self.device) {
                    Ok(q) => Slot::Ready(q),
                    Err(error) => {
                        self.shared.emit_always(ScoreEvent::ModelUnavailable { what: "technical quality model".into(), error });
                        Slot::Unavailable
                    }
                },
            };
        }
    }

    fn ensure_brisque(&mut self) {
        if let Slot::NotTried = self.brisque {
            let dir = crate::model::brisque::Brisque::default_dir();
            self.brisque = match crate::model::brisque::Brisque::load(&dir) {
                Ok(b) => Slot::Ready(b),
                Err(e) => {
                    self.shared.emit_always(ScoreEvent::ModelUnavailable { what: "BRISQUE".into(), error: e.to_string() });
                    Slot::Unavailable
                }
            };
        }
    }

    fn ensure_classifier(&mut self) {
        if let Slot::NotTried = self.classifier {
            self.classifier = match Classifier::load(&self.lite0, &self.device) {
                Ok(c) => Slot::Ready(c),
                Err(e) => {
                    let what = WeightsFile::EfficientNetLite0.description().to_owned();
                    self.shared.emit_always(ScoreEvent::ModelUnavailable { what, error: e.to_string() });
                    Slot::Unavailable
                }
            };
        }
    }

    /// What the database holds for these photos under the current model versions. A read error counts
    /// as nothing stored (the photos are computed again).
    fn stored(&mut self, ids: &[i64]) -> HashMap<i64, Known> {
        let mut known: HashMap<i64, Known> = HashMap::new();
        let Some(lib) = self.lib.get() else { return known };
        let quality_ids = self.quality.get().map(|q| (q.model_id().to_owned(), q.version().to_owned()));
        let read = (|| {
            let outputs = lib.outputs_of(ids, LITE0_MODEL_ID, self.lite0_version)?;
            let embeddings = lib.embeddings_of(ids, LITE0_MODEL_ID, self.lite0_version)?;
            let quality = match &quality_ids {
                Some((model, version)) => lib.outputs_of(ids, model, version)?,
                None => HashMap::new(),
            };
            let patches = lib.have_embeddings(ids, PATCH_FEATURES_ID, self.lite0_version)?;
            let brisque = lib.outputs_of(ids, BRISQUE_MODEL_ID, BRISQUE_VERSION)?;
            Ok::<_, crate::library::db::DbError>((outputs, embeddings, quality, patches, brisque))
        })();
        let (outputs, embeddings, quality, patches, brisque) = match read {
            Ok(r) => r,
            Err(e) => {
                self.report_store(Err(e));
                return known;
            }
        };
        for (id, outs) in outputs {
            let classes = outs.iter().find(|o| o.head == CLASSES_HEAD).and_then(|o| o.json.as_deref()).and_then(|j| self.parse_classes(j));
            known.entry(id).or_default().classes = classes;
        }
        for (id, v) in embeddings {
            known.entry(id).or_default().embedding = Some(v);
        }
        for (id, outs) in quality {
            let q = outs.iter().find(|o| o.head == QUALITY_HEAD).and_then(|o| o.json.as_deref()).and_then(|j| serde_json::from_str(j).ok());
            known.entry(id).or_default().quality = q;
        }
        for id in patches {
            known.entry(id).or_default().has_patches = true;
        }
        for (id, outs) in brisque {
            let v = outs
                .iter()
                .find(|o| o.head == QUALITY_HEAD)
                .and_then(|o| o.json.as_deref())
                .and_then(|j| serde_json::from_str::<f32>(j).ok());
            known.entry(id).or_default().brisque = v;
        }
        known
    }

    fn parse_classes(&self, json: &str) -> Option<Vec<ClassScore>> {
        let rows: Vec<(usize, f32)> = serde_json::from_str(json).ok()?;
        rows.into_iter().map(|(i, p)| self.names.get(i).map(|&n| (i, n, p))).collect()
    }

    /// Top-5 classes and pooled features for each image (centre 224 view).
    fn backbone(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<(Vec<ClassScore>, Vec<f32>)>> {
        let c = self.classifier.get().expect("backbone called with a classifier");
        backbone_outputs(c, &self.names, images, &self.device)
    }

    /// Writes one photo's outputs in one transaction.
    fn store(&mut self, id: i64, k: &Known, quality_ids: Option<&(String, String)>) {
        let Slot::Ready(lib) = &mut self.lib else { return };
        let (Some(classes), Some(embedding)) = (&k.classes, &k.embedding) else { return };
        let top: Vec<(usize, f32)> = classes.iter().map(|&(i, _, p)| (i, p)).collect();
        let mut outputs = vec![Output {
            model_id: LITE0_MODEL_ID.into(),
            weights_version: self.lite0_version.into(),
            head: CLASSES_HEAD.into(),
            json: Some(serde_json::to_string(&top).expect("plain data serialises")),
            blob: None,
        }];
        if let (Some(q), Some((model, version))) = (&k.quality, quality_ids) {
            outputs.push(Output {
                model_id: model.clone(),
                weights_version: version.clone(),
                head: QUALITY_HEAD.into(),
                json: Some(serde_json::to_string(q).expect("plain data serialises")),
                blob: None,
            });
        }
        if let Some(b) = k.brisque {
            outputs.push(Output {
                model_id: BRISQUE_MODEL_ID.into(),
                weights_version: BRISQUE_VERSION.into(),
                head: QUALITY_HEAD.into(),
                json: Some(serde_json::to_string(&b).expect("a number serialises")),
                blob: None,
            });
        }
        let mut embeddings =
            vec![Embedding { model_id: LITE0_MODEL_ID.into(), weights_sha: self.lite0_version.into(), vector: embedding.clone() }];
        if let Some(p) = &k.patches {
            embeddings.push(Embedding { model_id: PATCH_FEATURES_ID.into(), weights_sha: self.lite0_version.into(), vector: p.clone() });
        }
        let r = lib.put_outputs(id, &outputs, &embeddings);
        self.report_store(r);
    }

    /// Reports the first database failure of a run of failures.
    fn report_store(&mut self, r: Result<(), crate::library::db::DbError>) {
        match r {
            Ok(()) => self.store_failing = false,
            Err(e) => {
                if !self.store_failing {
                    self.store_failing = true;
                    self.shared.emit_always(ScoreEvent::StoreFailed { error: format!("scores are not saved: {e}") });
                }
            }
        }
    }
}

fn scored(id: i64, k: Known, from_db: bool) -> ScoreEvent {
    let scores = PhotoScores {
        classes: k.classes.unwrap_or_default(),
        embedding: k.embedding.unwrap_or_default(),
        quality: k.quality,
        brisque: k.brisque,
    };
    ScoreEvent::Scored { id, scores: Arc::new(scores), from_db }
}
