//! The background workers: they own the models, run off the caller's thread and stream results.
//!
//! - [`scoring`]: the scoring service the desktop app drives ([`Scoring`]): a priority queue of photos,
//!   ImageNet classes, embeddings and technical quality, stored in and read back from the library
//!   database. See its module docs.
//! - [`queue`]: that service's priority queue.
//! - [`taste`]: the taste service ([`taste::Taste`]): trains taste profiles from an album's decisions
//!   and scores the album with the active one; with [`procedure`], also the papers' procedures on an
//!   album, a CSV or an AVA folder (the taste panel's advanced mode).
//! - This file: the job worker `keepers classify` uses ([`Worker`], [`Job::Classify`]).
//!
//! Job worker: callers never block on a model: they submit a [`Job`] with a [`CancelToken`] and an
//! event channel, and read [`Event`]s as they arrive. Models are loaded on the worker thread the first
//! time a job needs them. A job checks its token between batches, so cancelling stops it within one
//! batch; a photo that fails to decode is reported by name and the rest go on. An optional `wake`
//! callback is called after each event.
//!
//! Touches: reads photos and weights files; the scoring service also writes model outputs to the
//! library database.

pub mod procedure;
pub mod queue;
pub mod scoring;
pub mod taste;

pub use queue::ScoreRequest;
pub use scoring::{
    CLASSES_HEAD, LITE0_MODEL_ID, PatchScore, PhotoScores, Progress, QUALITY_HEAD, QualityLoader, QualityScore, QualityScorer, ScoreEvent,
    Scoring, ScoringConfig, TOP_CLASSES, Wake, shipped_quality,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::library::decode::{Size, decode_intact};
use crate::model::imagenet::{ClassScore, Classifier};
use crate::model::weights::WeightsFile;

/// Shared cancellation flag for one job.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Work the worker can do.
pub enum Job {
    /// ImageNet top-`top` classes for each photo, `batch` photos per forward pass.
    Classify { paths: Vec<PathBuf>, top: usize, batch: usize, cancel: CancelToken, events: Sender<Event> },
}

/// What a job reports, in order; every job ends with exactly one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Classified {
        path: PathBuf,
        top: Vec<ClassScore>,
    },
    /// This photo could not be processed; the job goes on.
    PhotoFailed {
        path: PathBuf,
        error: String,
    },
    /// The job could not run at all (e.g. missing weights).
    JobFailed {
        error: String,
    },
    Done {
        processed: usize,
        failed: usize,
        cancelled: bool,
    },
}

/// Handle to the worker thread. Dropping it closes the queue and joins the thread.
pub struct Worker {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// Jobs waiting beyond this block `submit` (back-pressure instead of an unbounded queue).
pub const QUEUE_LEN: usize = 8;

struct State {
    classifier: Option<Classifier>,
    device: candle_core::Device,
    wake: Option<Box<dyn Fn() + Send>>,
}

impl Worker {
    pub fn spawn(wake: Option<Box<dyn Fn() + Send>>) -> Self {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let (device, _) = crate::device::best_device();
        let state = State { classifier: None, device, wake };
        let thread = std::thread::Builder::new().name("keepers-worker".into()).spawn(move || run(rx, state)).expect("spawn worker thread");
        Self { tx: Some(tx), thread: Some(thread) }
    }

    /// Queues a job (blocks only while `QUEUE_LEN` jobs are already waiting).
    pub fn submit(&self, job: Job) {
        if let Some(tx) = &self.tx {
            // The worker only stops when this handle is dropped, so sending cannot fail here.
            let _ = tx.send(job);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Job>, mut state: State) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Classify { paths, top, batch, cancel, events } => classify(&mut state, &paths, top, batch.max(1), &cancel, &events),
        }
    }
}

fn classify(state: &mut State, paths: &[PathBuf], top: usize, batch: usize, cancel: &CancelToken, events: &Sender<Event>) {
    let send = |e: Event| {
        let _ = events.send(e);
        if let Some(w) = &state.wake {
            w();
        }
    };
    if state.classifier.is_none() {
        match Classifier::load(&WeightsFile::EfficientNetLite0.path(), &state.device) {
            Ok(c) => state.classifier = Some(c),
            Err(e) => {
                send(Event::JobFailed { error: e.to_string() });
                send(Event::Done { processed: 0, failed: 0, cancelled: false });
                return;
            }
        }
    }
    let classifier = state.classifier.as_ref().expect("loaded above");
    let (mut processed, mut failed) = (0, 0);
    for chunk in paths.chunks(batch) {
        if cancel.is_cancelled() {
            send(Event::Done { processed, failed, cancelled: true });
            return;
        }
        // Decoded as scoring decodes (the classifier's 224 crop needs no more); a damaged file is an error.
        let decoded: Vec<_> =
            chunk.par_iter().map(|p| decode_intact(p, Size::Fit(scoring::ScoringConfig::DEFAULT_MAX_SIDE)).map(|d| d.image)).collect();
        let images: Vec<_> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
        let results = if images.is_empty() { Ok(Vec::new()) } else { classifier.top_k(&images, top) };
        let mut results = match results {
            Ok(r) => r.into_iter(),
            Err(e) => {
                send(Event::JobFailed { error: format!("inference failed: {e}") });
                send(Event::Done { processed, failed, cancelled: false });
                return;
            }
        };
        for (path, r) in chunk.iter().zip(decoded) {
            processed += 1;
            match r {
                Ok(_) => send(Event::Classified { path: path.clone(), top: results.next().unwrap_or_default() }),
                Err(e) => {
                    failed += 1;
                    send(Event::PhotoFailed { path: path.clone(), error: e.to_string() });
                }
            }
        }
    }
    send(Event::Done { processed, failed, cancelled: false });
}
