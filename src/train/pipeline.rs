//! The input pipeline: decodes images and turns them into model inputs (views, patches, tensors)
//! in parallel, ahead of the model, deterministically from a seed, in bounded memory.
//!
//! - **Order**: epoch `e` visits the samples in [`epoch_order`] (a Fisher-Yates shuffle seeded
//!   by `(seed, e)`, or dataset order), cut into batches of `batch_size` (the last may be short).
//! - **Randomness per item**: the user's closure gets a [`SeededRng`] derived from
//!   `(seed, epoch, dataset index)` ([`item_rng`]), so the patches of an image do not depend on
//!   thread scheduling, batch size or where the epoch was resumed.
//! - **Parallelism and memory**: one background thread builds batches in order; the items of a
//!   batch are decoded and transformed on a rayon pool of `threads` workers; finished batches
//!   wait in a channel of `prefetch` slots. At most `prefetch + 2` batches exist at once
//!   (queued, being built, held by the consumer).
//! - **Failures**: a missing, empty, unreadable, corrupt or truncated image ([`load_checked`])
//!   or a closure error skips the item;
//!   it is listed in its batch's `skipped` and in the pipeline's [`SkipReport`], which names
//!   every skipped file with the reason; training goes on. A batch whose items were all skipped
//!   is not yielded (its skips are still reported).
//! - **Resume**: `start_batch` skips the first batches of the epoch without decoding them, so a
//!   run interrupted after batch `k` continues with exactly the batches it would have seen.
//!   [`Batch::number`] is the batch's position in the epoch (store `number + 1` in a checkpoint).
//! - A panic in the closure is re-raised in the consumer (not silently ending the epoch).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use image::RgbImage;
use rayon::prelude::*;

use crate::library::decode::load_rgb;
use crate::rng::SeededRng;
use crate::train::data::Sample;

/// How a pipeline runs one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub batch_size: usize,
    pub seed: u64,
    pub epoch: u64,
    /// Shuffle the samples each epoch (training) or keep dataset order (evaluation).
    pub shuffle: bool,
    /// Decode threads (rayon workers).
    pub threads: usize,
    /// Finished batches that may wait for the consumer.
    pub prefetch: usize,
    /// First batch of the epoch to produce (resume).
    pub start_batch: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { batch_size: 32, seed: 0, epoch: 0, shuffle: true, threads, prefetch: 2, start_batch: 0 }
    }
}

/// One item that reached the model.
#[derive(Debug)]
pub struct Item<T> {
    /// Index of the sample in the list given to the pipeline.
    pub index: usize,
    pub data: T,
}

/// One skipped item: which sample, which file, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub index: usize,
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug)]
pub struct Batch<T> {
    /// Position of this batch in the epoch (0-based, counting batches whose items were all skipped).
    pub number: usize,
    pub items: Vec<Item<T>>,
    pub skipped: Vec<Skipped>,
}

/// Every image skipped so far, once each (by path), in the order met.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkipReport {
    /// Items attempted (decoded or skipped).
    pub attempted: usize,
    pub skipped: Vec<Skipped>,
}

impl SkipReport {
    pub fn is_empty(&self) -> bool {
        self.skipped.is_empty()
    }

    /// Paths of the skipped images.
    pub fn paths(&self) -> Vec<&std::path::Path> {
        self.skipped.iter().map(|s| s.path.as_path()).collect()
    }

    /// Adds `s` unless its file is already listed.
    pub fn add(&mut self, s: Skipped) {
        if !self.skipped.iter().any(|x| x.path == s.path) {
            self.skipped.push(s);
        }
    }

    /// Merges another report (e.g. of the next epoch): attempts add up, files are listed once.
    pub fn merge(&mut self, other: &SkipReport) {
        self.attempted += other.attempted;
        for s in &other.skipped {
            self.add(s.clone());
        }
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped.is_empty() {
            return write!(f, "all {} images read", self.attempted);
        }
        write!(
            f,
            "{} image(s) skipped (missing, unreadable or corrupt) of {} attempted; the rest were used:",
            self.skipped.len(),
            self.attempted
        )?;
        for s in &self.skipped {
            write!(f, "\n  {}: {}", s.path.display(), s.reason)?;
        }
        Ok(())
    }
}

pub use crate::library::decode::check_jpeg_complete;

/// [`load_rgb`] after [`check_jpeg_complete`]: a truncated JPEG is an error, not a grey-padded photo.
/// Errors are the reasons without the path (the caller has it).
pub fn load_checked(path: &std::path::Path) -> Result<RgbImage, String> {
    let img = load_rgb(path).map_err(|e| strip_path(e.to_string(), path))?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    check_jpeg_complete(&bytes)?;
    Ok(img)
}

/// A uniformly random permutation of `0..n` (Fisher-Yates).
pub fn permutation(n: usize, rng: &mut SeededRng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// The order in which epoch `epoch` visits `n` samples.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    if shuffle { permutation(n, &mut SeededRng::new(seed).fork(0x5348_5546).fork(epoch)) } else { (0..n).collect() }
}

/// The generator handed to the closure for sample `index` in epoch `epoch`.
pub fn item_rng(seed: u64, epoch: u64, index: usize) -> SeededRng {
    SeededRng::new(seed).fork(0x4954_454D).fork(epoch).fork(index as u64)
}

/// The function that turns a decoded photo into a model input. An `Err` skips the item.
pub type Transform<T> = dyn Fn(&Sample, RgbImage, &mut SeededRng) -> anyhow::Result<T> + Send + Sync;

/// A running pipeline for one epoch; iterate it for the batches.
pub struct Pipeline<T> {
    rx: Option<Receiver<Batch<T>>>,
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    report: SkipReport,
    num_batches: usize,
}

fn strip_path(reason: String, path: &std::path::Path) -> String {
    let prefix = format!("{}: ", path.display());
    reason.strip_prefix(&prefix).map(str::to_string).unwrap_or(reason)
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts producing the batches of epoch `cfg.epoch` over `samples`.
    pub fn start<F>(samples: Arc<Vec<Sample>>, cfg: &PipelineConfig, f: F) -> std::io::Result<Self>
    where
        F: Fn(&Sample, RgbImage, &mut SeededRng) -> anyhow::Result<T> + Send + Sync + 'static,
    {
        assert!(cfg.batch_size > 0, "batch_size must be > 0");
        let order = epoch_order(samples.len(), cfg.seed, cfg.epoch, cfg.shuffle);
        let num_batches = order.len().div_ceil(cfg.batch_size);
        let (tx, rx) = sync_channel(cfg.prefetch);
        let stop = Arc::new(AtomicBool::new(false));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .thread_name(|i| format!("keepers-decode-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (cfg2, stop2) = (cfg.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("keepers-pipeline".into())
            .spawn(move || produce(samples, order, cfg2, pool, Box::new(f), tx, stop2))?;
        Ok(Self { rx: Some(rx), handle: Some(handle), stop, report: SkipReport::default(), num_batches })
    }

    /// Batches in this epoch (including those before `start_batch`).
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// What was skipped in the batches yielded so far.
    pub fn skip_report(&self) -> &SkipReport {
        &self.report
    }
}

fn produce<T: Send>(
    samples: Arc<Vec<Sample>>,
    order: Vec<usize>,
    cfg: PipelineConfig,
    pool: rayon::ThreadPool,
    f: Box<Transform<T>>,
    tx: SyncSender<Batch<T>>,
    stop: Arc<AtomicBool>,
) {
    for (number, chunk) in order.chunks(cfg.batch_size).enumerate().skip(cfg.start_batch) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let results: Vec<(usize, Result<T, String>)> = pool.install(|| {
            chunk
                .par_iter()
                .map(|&i| {
                    let s = &samples[i];
                    let r = load_checked(&s.path)
                        .and_then(|img| f(s, img, &mut item_rng(cfg.seed, cfg.epoch, i)).map_err(|e| format!("{e:#}")));
                    (i, r)
                })
                .collect()
        });
        let mut batch = Batch { number, items: Vec::new(), skipped: Vec::new() };
        for (index, r) in results {
            match r {
                Ok(data) => batch.items.push(Item { index, data }),
                Err(reason) => batch.skipped.push(Skipped { index, path: samples[index].path.clone(), reason }),
            }
        }
        if tx.send(batch).is_err() {
            return; // consumer gone
        }
    }
}

impl<T> Iterator for Pipeline<T> {
    type Item = Batch<T>;

    fn next(&mut self) -> Option<Batch<T>> {
        loop {
            match self.rx.as_ref()?.recv() {
                Ok(b) => {
                    self.report.attempted += b.items.len() + b.skipped.len();
                    for s in &b.skipped {
                        self.report.add(s.clone());
                    }
                    if b.items.is_empty() {
                        continue;
                    }
                    return Some(b);
                }
                Err(_) => {
                    self.rx = None;
                    if let Some(h) = self.handle.take()
                        && let Err(panic) = h.join()
                    {
                        std::panic::resume_unwind(panic);
                    }
                    return None;
                }
            }
        }
    }
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx = None; // unblocks a producer waiting to send
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Decodes every sample once (in parallel, no transform) and reports the ones that fail: the
/// "one clear report" to show before training starts.
pub fn verify_images(samples: Arc<Vec<Sample>>, threads: usize) -> SkipReport {
    let cfg = PipelineConfig { batch_size: 64, shuffle: false, threads, prefetch: 1, ..Default::default() };
    let mut p = match Pipeline::start(samples.clone(), &cfg, |_, _, _| Ok(())) {
        Ok(p) => p,
        Err(e) => {
            let mut r = SkipReport { attempted: samples.len(), skipped: Vec::new() };
            for (index, s) in samples.iter().enumerate() {
                r.add(Skipped { index, path: s.path.clone(), reason: format!("pipeline did not start: {e}") });
            }
            return r;
        }
    };
    for _ in p.by_ref() {}
    p.report.clone()
}
