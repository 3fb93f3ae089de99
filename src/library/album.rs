//! The album handle for the app and the trainer: open a folder, get everything the library already
//! knows about it at once, then scan results, thumbnails and decision outcomes as they happen, through
//! one channel of [`AlbumEvent`]s; send decisions back through the handle; cancel at any time.
//!
//! Threads: a database thread owns the [`Library`] connection (upserts, decisions, sidecar writes, in
//! the order they arrive); a scan thread walks the folder, reads EXIF and XMP of new or changed files,
//! then makes thumbnails in parallel (rayon) through the [`ThumbCache`]. Cancelling (or dropping the
//! handle) stops the scan and the thumbnails between files; decisions already sent are still saved.
//!
//! Sidecars: a decision is stored in the database first (marked pending), then merged into the XMP
//! sidecar of every file of the item (RAW and JPEG of a pair). A folder that cannot be written keeps the
//! decision pending, is reported once ([`AlbumEvent::SidecarsUnwritable`]) and is retried on
//! [`AlbumHandle::retry_sidecars`] and whenever the album is opened again. Originals are never written.
//!
//! Touches: the database, the thumbnail cache folder, XMP sidecars next to the photos.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use image::RgbImage;
use rayon::prelude::*;

use super::db::{Change, DbError, Library, OpenNote, PhotoRecord, PhotoRow};
use super::exif::{self, ExifSummary};
use super::scan::{self, ScanEvent, ScanIssue, ScanItem, ScanSummary};
use super::thumbs::{self, ThumbCache, ThumbKey};
use super::xmp::{self, ColorLabel, Decision, XmpError};

/// Where an album keeps its state; every location can be injected (tests, portable installs).
#[derive(Debug, Clone)]
pub struct AlbumConfig {
    pub root: PathBuf,
    pub db_path: PathBuf,
    pub thumb_dir: PathBuf,
    pub thumb_max_bytes: u64,
    pub thumb_side: u32,
    /// Make thumbnails after the scan (the trainer may not need them).
    pub thumbnails: bool,
}

impl AlbumConfig {
    /// The per-user database and cache locations of this platform; `None` where it has none.
    pub fn with_platform_dirs(root: &Path) -> Option<AlbumConfig> {
        Some(AlbumConfig {
            root: root.to_owned(),
            db_path: Library::default_path()?,
            thumb_dir: ThumbCache::default_dir()?,
            thumb_max_bytes: thumbs::DEFAULT_MAX_BYTES,
            thumb_side: thumbs::DEFAULT_SIDE,
            thumbnails: true,
        })
    }
}

/// A change the photographer makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionChange {
    Stars(u8),
    Label(Option<ColorLabel>),
    Pick,
    Reject,
    Unflag,
    /// Puts back a whole earlier decision (undo / redo).
    Restore(Decision),
}

#[derive(Debug, Clone)]
pub enum AlbumEvent {
    /// The database is open (and was created, opened, or rebuilt from a corrupt file).
    Opened(OpenNote),
    /// What the library already knew about this folder, before any file is read.
    Known(Vec<PhotoRow>),
    /// A photo found by the scan, with its database id; `Change::New`/`Modified` need (re-)scoring.
    Item {
        item: ScanItem,
        id: i64,
        change: Change,
        decision: Option<Decision>,
    },
    /// A file or folder the scan could not use; the scan went on.
    Issue(ScanIssue),
    /// Photos in the database that the scan no longer found (removed from the database).
    Forgotten(usize),
    ScanDone(ScanSummary),
    Thumbnail {
        id: i64,
        path: PathBuf,
        image: Arc<RgbImage>,
        from_cache: bool,
    },
    ThumbnailFailed {
        id: i64,
        path: PathBuf,
        error: String,
    },
    /// A decision is in the database; `sidecar_written` says whether every sidecar has it too.
    DecisionSaved {
        path: PathBuf,
        decision: Decision,
        sidecar_written: bool,
    },
    /// Sidecars in this folder cannot be written; decisions stay pending and are retried. Sent once per
    /// folder per handle.
    SidecarsUnwritable {
        folder: PathBuf,
        error: String,
    },
    /// Something failed that is not about one file (e.g. the database).
    Error(String),
    /// The scan and thumbnail work is over (decisions are still accepted until the handle is dropped).
    Finished {
        cancelled: bool,
    },
}

enum DbMsg {
    Items(Vec<(ScanItem, Option<ExifSummary>, Option<Decision>)>),
    ScanEnded { seen: HashSet<PathBuf>, complete: bool },
    Decide { path: PathBuf, change: DecisionChange },
    Retry,
    Stop,
}

/// An open album. Events arrive on [`AlbumHandle::events`]; dropping the handle cancels its work.
pub struct AlbumHandle {
    events: Receiver<AlbumEvent>,
    db_tx: Sender<DbMsg>,
    cancel: Arc<AtomicBool>,
    /// Photo ids to make thumbnails for first (the app's photos on screen).
    priority: Arc<Mutex<Vec<i64>>>,
    threads: Vec<JoinHandle<()>>,
}

impl AlbumHandle {
    /// Opens the database (reporting a locked one as an error) and starts the scan.
    pub fn open(mut cfg: AlbumConfig) -> Result<AlbumHandle, DbError> {
        // One spelling of the folder, so reopening finds what the last session stored.
        if let Ok(root) = std::fs::canonicalize(&cfg.root) {
            cfg.root = root;
        }
        let (lib, note) = Library::open(&cfg.db_path)?;
        let (ev_tx, events) = mpsc::channel();
        let (db_tx, db_rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let priority = Arc::new(Mutex::new(Vec::new()));
        let _ = ev_tx.send(AlbumEvent::Opened(note));
        let known = match lib.photos_under(&cfg.root) {
            Ok(rows) => rows,
            Err(e) => {
                let _ = ev_tx.send(AlbumEvent::Error(e.to_string()));
                Vec::new()
            }
        };
        let known_files: HashMap<PathBuf, (u64, i64)> =
            known.iter().map(|r| (r.record.path.clone(), (r.record.size, r.record.mtime_ns))).collect();
        let _ = ev_tx.send(AlbumEvent::Known(known));
        let (thumb_tx, thumb_rx) = mpsc::channel::<Vec<(i64, ScanItem)>>();
        let db_thread = {
            let ev_tx = ev_tx.clone();
            let root = cfg.root.clone();
            std::thread::Builder::new()
                .name("keepers-album-db".into())
                .spawn(move || DbWorker { lib, root, ev: ev_tx, unwritable: HashSet::new(), order: Vec::new() }.run(db_rx, thumb_tx))
                .expect("spawn album db thread")
        };
        let _ = db_tx.send(DbMsg::Retry);
        let scan_thread = {
            let (ev_tx, db_tx, cancel, priority) = (ev_tx.clone(), db_tx.clone(), cancel.clone(), priority.clone());
            std::thread::Builder::new()
                .name("keepers-album-scan".into())
                .spawn(move || scan_worker(cfg, known_files, ev_tx, db_tx, thumb_rx, cancel, priority))
                .expect("spawn album scan thread")
        };
        Ok(AlbumHandle { events, db_tx, cancel, priority, threads: vec![scan_thread, db_thread] })
    }

    pub fn events(&self) -> &Receiver<AlbumEvent> {
        &self.events
    }

    /// Applies a change to the photo whose primary path is `path` (database first, then its sidecars).
    pub fn decide(&self, path: &Path, change: DecisionChange) {
        let _ = self.db_tx.send(DbMsg::Decide { path: path.to_owned(), change });
    }

    /// Tries again to write every pending sidecar.
    pub fn retry_sidecars(&self) {
        let _ = self.db_tx.send(DbMsg::Retry);
    }

    /// Thumbnails of these photos (ids, most wanted first) are made before the others still waiting;
    /// replaces the previous list. Cheap: the app calls it whenever what is on screen changes.
    pub fn prioritise(&self, ids: &[i64]) {
        if let Ok(mut p) = self.priority.lock() {
            p.clear();
            p.extend_from_slice(ids);
        }
    }

    /// Stops the scan and thumbnails as soon as possible.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for every thread to finish after cancelling their remaining work (decisions already sent
    /// are saved first).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        let _ = self.db_tx.send(DbMsg::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for AlbumHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn scan_worker(
    cfg: AlbumConfig,
    known: HashMap<PathBuf, (u64, i64)>,
    ev: Sender<AlbumEvent>,
    db: Sender<DbMsg>,
    thumb_rx: Receiver<Vec<(i64, ScanItem)>>,
    cancel: Arc<AtomicBool>,
    priority: Arc<Mutex<Vec<i64>>>,
) {
    let mut seen = HashSet::new();
    let mut batch: Vec<ScanItem> = Vec::new();
    let flush = |batch: &mut Vec<ScanItem>| {
        if batch.is_empty() {
            return;
        }
        // EXIF and XMP only for files the library does not know in this version.
        let rows: Vec<_> = std::mem::take(batch)
            .into_par_iter()
            .map(|item| {
                let unchanged = known.get(&item.primary.path) == Some(&(item.primary.size, item.primary.mtime_ns));
                if unchanged {
                    return (item, None, None);
                }
                let d = item.display().clone();
                let ex = exif::read_summary(&d.path, d.format).ok().filter(|e| !e.is_empty());
                let decision = xmp::read_decision(&item.primary.path).ok().map(|(d, _)| d).filter(|d| *d != Decision::default());
                (item, ex, decision)
            })
            .collect();
        let _ = db.send(DbMsg::Items(rows));
    };
    let summary = scan::scan(&cfg.root, &cancel, |e| match e {
        ScanEvent::Item(item) => {
            seen.insert(item.primary.path.clone());
            batch.push(item);
            if batch.len() >= 256 {
                flush(&mut batch);
            }
        }
        ScanEvent::Issue(i) => {
            let _ = ev.send(AlbumEvent::Issue(i));
        }
    });
    flush(&mut batch);
    let cancelled = summary.cancelled;
    let _ = db.send(DbMsg::ScanEnded { seen, complete: !cancelled && summary.issues == 0 });
    let _ = ev.send(AlbumEvent::ScanDone(summary));
    let Ok(items) = thumb_rx.recv() else {
        let _ = ev.send(AlbumEvent::Finished { cancelled: true });
        return;
    };
    if cfg.thumbnails && !cancel.load(Ordering::Relaxed) {
        match ThumbCache::open(&cfg.thumb_dir, cfg.thumb_max_bytes) {
            Ok(cache) => {
                let queue = ThumbQueue::new(items);
                // One thread per core (outside rayon's pool, which the scoring worker's decodes and matmuls
                // use), each taking the most wanted photo still waiting.
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                std::thread::scope(|scope| {
                    for _ in 0..workers {
                        scope.spawn(|| thumb_loop(&queue, &cache, &cfg, &ev, &cancel, &priority));
                    }
                });
            }
            Err(e) => {
                let _ = ev.send(AlbumEvent::Error(e.to_string()));
            }
        }
    }
    let _ = ev.send(AlbumEvent::Finished { cancelled: cancel.load(Ordering::Relaxed) });
}

fn thumb_loop(
    queue: &ThumbQueue,
    cache: &ThumbCache,
    cfg: &AlbumConfig,
    ev: &Sender<AlbumEvent>,
    cancel: &AtomicBool,
    priority: &Mutex<Vec<i64>>,
) {
    while !cancel.load(Ordering::Relaxed) {
        let wanted = priority.lock().map(|p| p.clone()).unwrap_or_default();
        let Some((id, item)) = queue.next(&wanted) else { break };
        let d = item.display();
        let key = ThumbKey { path: d.path.clone(), size: d.size, mtime_ns: d.mtime_ns, side: cfg.thumb_side };
        let _ = ev.send(match cache.get_or_make(&key) {
            Ok(t) => AlbumEvent::Thumbnail { id, path: item.primary.path.clone(), image: Arc::new(t.image), from_cache: t.from_cache },
            Err(e) => AlbumEvent::ThumbnailFailed { id, path: item.primary.path.clone(), error: e.to_string() },
        });
    }
}

/// Thumbnails still to make: scan order, except that ids the app asks for go first.
struct ThumbQueue {
    inner: Mutex<(HashMap<i64, ScanItem>, std::collections::VecDeque<i64>)>,
}

impl ThumbQueue {
    fn new(items: Vec<(i64, ScanItem)>) -> ThumbQueue {
        let order = items.iter().map(|(id, _)| *id).collect();
        ThumbQueue { inner: Mutex::new((items.into_iter().collect(), order)) }
    }

    fn next(&self, wanted: &[i64]) -> Option<(i64, ScanItem)> {
        let mut g = self.inner.lock().ok()?;
        let (pending, order) = &mut *g;
        if let Some(item) = wanted.iter().find_map(|id| pending.remove(id).map(|it| (*id, it))) {
            return Some(item);
        }
        while let Some(id) = order.pop_front() {
            if let Some(it) = pending.remove(&id) {
                return Some((id, it));
            }
        }
        None
    }
}

struct DbWorker {
    lib: Library,
    root: PathBuf,
    ev: Sender<AlbumEvent>,
    unwritable: HashSet<PathBuf>,
    /// (id, item) in scan order, for thumbnails.
    order: Vec<(i64, ScanItem)>,
}

impl DbWorker {
    fn run(mut self, rx: Receiver<DbMsg>, thumbs: Sender<Vec<(i64, ScanItem)>>) {
        let mut thumbs = Some(thumbs);
        while let Ok(msg) = rx.recv() {
            match msg {
                DbMsg::Items(rows) => self.items(rows),
                DbMsg::ScanEnded { seen, complete } => {
                    // Forget vanished photos only after a complete, clean scan (an unreadable sub-folder must
                    // not erase its photos' history).
                    if complete {
                        match self.lib.forget_missing(&self.root, &seen) {
                            Ok(n) if n > 0 => self.send(AlbumEvent::Forgotten(n)),
                            Ok(_) => {}
                            Err(e) => self.send(AlbumEvent::Error(e.to_string())),
                        }
                    }
                    if let Some(t) = thumbs.take() {
                        let _ = t.send(std::mem::take(&mut self.order));
                    }
                }
                DbMsg::Decide { path, change } => self.decide(&path, change),
                DbMsg::Retry => self.retry(),
                DbMsg::Stop => break,
            }
        }
        // Drain decisions that were sent before the stop.
        while let Ok(msg) = rx.try_recv() {
            if let DbMsg::Decide { path, change } = msg {
                self.decide(&path, change);
            }
        }
    }

    fn send(&self, e: AlbumEvent) {
        let _ = self.ev.send(e);
    }

    fn items(&mut self, rows: Vec<(ScanItem, Option<ExifSummary>, Option<Decision>)>) {
        let recs: Vec<PhotoRecord> = rows
            .iter()
            .map(|(item, ex, _)| PhotoRecord {
                path: item.primary.path.clone(),
                size: item.primary.size,
                mtime_ns: item.primary.mtime_ns,
                format: Some(item.primary.format.name().to_string()),
                companion: item.companion.as_ref().map(|c| c.path.clone()),
                exif: ex.clone(),
                ..Default::default()
            })
            .collect();
        match self.lib.upsert_photos(&recs) {
            Ok(ids) => {
                for ((item, _, decision), (id, change)) in rows.into_iter().zip(ids) {
                    let mut decision_out = None;
                    if let Some(d) = decision {
                        match self.lib.import_decision(id, &d) {
                            Ok(_) => decision_out = Some(d),
                            Err(e) => self.send(AlbumEvent::Error(e.to_string())),
                        }
                    }
                    if decision_out.is_none()
                        && let Ok(Some(stored)) = self.lib.decision(id)
                    {
                        decision_out = Some(stored.decision);
                    }
                    self.order.push((id, item.clone()));
                    self.send(AlbumEvent::Item { item, id, change, decision: decision_out });
                }
            }
            Err(e) => self.send(AlbumEvent::Error(e.to_string())),
        }
    }

    fn decide(&mut self, path: &Path, change: DecisionChange) {
        let r = (|| -> Result<(), DbError> {
            let Some(id) = self.lib.photo_id(path)? else {
                self.send(AlbumEvent::Error(format!("{}: not in the library (scan the album first)", path.display())));
                return Ok(());
            };
            let stored = self.lib.decision(id)?;
            let (mut d, mut prior) = match stored {
                Some(s) => (s.decision, s.prior_stars),
                None => (xmp::read_decision(path).map(|(d, _)| d).unwrap_or_default(), None),
            };
            match change {
                DecisionChange::Stars(s) => d.set_rating(s),
                DecisionChange::Label(l) => d.set_label(l),
                DecisionChange::Pick => d.mark_picked(),
                DecisionChange::Reject => {
                    if !d.is_rejected() {
                        prior = d.rating.filter(|r| *r >= 0).map(|r| r as u8);
                    }
                    d.mark_rejected();
                }
                DecisionChange::Unflag => d.unflag(prior),
                DecisionChange::Restore(r) => {
                    if r.is_rejected() && !d.is_rejected() {
                        prior = d.rating.filter(|r| *r >= 0).map(|r| r as u8);
                    }
                    d = r;
                }
            }
            self.lib.set_decision(id, &d, prior)?;
            let companion = self.lib.companion(id)?;
            let written = self.write_sidecars(id, path, companion.as_deref(), &d)?;
            self.send(AlbumEvent::DecisionSaved { path: path.to_owned(), decision: d, sidecar_written: written });
            Ok(())
        })();
        if let Err(e) = r {
            self.send(AlbumEvent::Error(e.to_string()));
        }
    }

    /// Writes `d` to the sidecar of `path` and of its companion; records the outcome in the database.
    fn write_sidecars(&mut self, id: i64, path: &Path, companion: Option<&Path>, d: &Decision) -> Result<bool, DbError> {
        let mut error = None;
        for file in std::iter::once(path).chain(companion) {
            if let Err(e) = xmp::write_decision(file, d) {
                if matches!(e, XmpError::Write { .. }) {
                    let folder = file.parent().map(Path::to_owned).unwrap_or_default();
                    if self.unwritable.insert(folder.clone()) {
                        self.send(AlbumEvent::SidecarsUnwritable { folder, error: e.to_string() });
                    }
                } else {
                    self.send(AlbumEvent::Error(e.to_string()));
                }
                error.get_or_insert(e.to_string());
            }
        }
        self.lib.set_sidecar_state(id, error.as_deref())?;
        Ok(error.is_none())
    }

    fn retry(&mut self) {
        let pending = match self.lib.pending_sidecars() {
            Ok(p) => p,
            Err(e) => return self.send(AlbumEvent::Error(e.to_string())),
        };
        for (id, path, companion) in pending {
            let r = self.lib.decision(id).and_then(|s| match s {
                Some(s) => self.write_sidecars(id, &path, companion.as_deref(), &s.decision).map(|w| Some((s.decision, w))),
                None => Ok(None),
            });
            match r {
                Ok(Some((decision, true))) => {
                    self.send(AlbumEvent::DecisionSaved { path, decision, sidecar_written: true });
                }
                Ok(_) => {}
                Err(e) => self.send(AlbumEvent::Error(e.to_string())),
            }
        }
    }
}
