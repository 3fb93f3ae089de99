//! The workers run off the caller's thread on real photos (assets/samples) with the real Lite0 weights.
//!
//! - Job worker (`keepers classify`): reports bad photos by name without stopping, stops within one
//!   batch when cancelled.
//! - Scoring service (the app's): one event per photo with the classifier's own top-5, embeddings for
//!   bursts, damaged files reported by name, on-screen photos first, cancelling stops soon and leaves
//!   every photo's outputs whole in the database, a re-opened album comes back from the database, a
//!   quality model's outputs are stored and read back, and missing models are reported once while the
//!   rest still works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use candle_core::Device;
use image::RgbImage;
use keepers::library::db::{Embedding, Library, Output, PhotoRecord};
use keepers::library::decode::{Size, decode_path};
use keepers::library::scan::list_photos;
use keepers::model::imagenet::Classifier;
use keepers::model::views::Rect;
use keepers::model::weights::WeightsFile;
use keepers::worker::{
    CLASSES_HEAD, CancelToken, Event, Job, LITE0_MODEL_ID, PatchScore, PhotoScores, QUALITY_HEAD, QualityLoader, QualityScore,
    QualityScorer, ScoreEvent, ScoreRequest, Scoring, ScoringConfig, Worker,
};

fn samples() -> Vec<std::path::PathBuf> {
    list_photos(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")).0
}

fn collect(rx: std::sync::mpsc::Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    for e in rx {
        let done = matches!(e, Event::Done { .. });
        v.push(e);
        if done {
            break;
        }
    }
    v
}

#[test]
fn classify_job_reports_every_photo_and_bad_ones_by_name() {
    let dir = std::env::temp_dir().join(format!("keepers-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("truncated.jpg");
    let good = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/china.jpg")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 3]).unwrap();
    let mut paths = samples();
    let n = paths.len();
    paths.insert(3, bad.clone());
    let worker = Worker::spawn(None);
    let (tx, rx) = channel();
    worker.submit(Job::Classify { paths, top: 3, batch: 4, cancel: CancelToken::new(), events: tx });
    let events = collect(rx);
    let classified = events.iter().filter(|e| matches!(e, Event::Classified { .. })).count();
    let failed: Vec<_> = events.iter().filter_map(|e| if let Event::PhotoFailed { path, .. } = e { Some(path) } else { None }).collect();
    // A truncated JPEG decodes partially (the decoder fills the rest with grey): it is refused,
    // by name, rather than classified from made-up pixels; every photo is accounted for once.
    assert_eq!(classified, n);
    assert_eq!(failed, vec![&bad]);
    let why = events.iter().find_map(|e| if let Event::PhotoFailed { error, .. } = e { Some(error.clone()) } else { None }).unwrap();
    assert!(why.contains("truncated.jpg") && why.contains("damaged or truncated"), "{why}");
    assert_eq!(events.last(), Some(&Event::Done { processed: n + 1, failed: failed.len(), cancelled: false }));
    let coffee = events.iter().find_map(|e| match e {
        Event::Classified { path, top } if path.ends_with("coffee.png") => Some(top[0].1),
        _ => None,
    });
    assert_eq!(coffee, Some("espresso"));
}

#[test]
fn cancelled_job_stops_within_a_batch() {
    let paths = samples();
    let total = paths.len();
    let worker = Worker::spawn(None);
    let (tx, rx) = channel();
    let cancel = CancelToken::new();
    worker.submit(Job::Classify { paths, top: 1, batch: 2, cancel: cancel.clone(), events: tx });
    let mut seen = 0;
    let mut done = None;
    for e in rx {
        match e {
            Event::Classified { .. } | Event::PhotoFailed { .. } => {
                seen += 1;
                cancel.cancel();
            }
            Event::Done { processed, cancelled, .. } => {
                done = Some((processed, cancelled));
                break;
            }
            Event::JobFailed { error } => panic!("{error}"),
        }
    }
    let (processed, cancelled) = done.expect("job ends with Done");
    assert!(cancelled);
    assert_eq!(processed, seen);
    // Cancelled after the first photo of batch 1: the worker may already have started batch 2
    // (it checks the token between batches), never more.
    assert!(processed <= 4 && processed < total, "processed {processed} of {total} after cancelling");
}

// ---------------------------------------------------------------------------------------------------
// Scoring service

const MAX_SIDE: u32 = 512;
const WAIT: Duration = Duration::from_secs(300);

/// Copies of the samples (`copies` times each, plus `extra` files) in a fresh folder, registered in a
/// fresh library database: the album as the app would hand it to the scoring service.
struct Album {
    dir: tempfile::TempDir,
    db: PathBuf,
    photos: Vec<ScoreRequest>,
}

impl Album {
    fn new(copies: usize, only: Option<&[&str]>, extra: &[(&str, Vec<u8>)]) -> Album {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for c in 0..copies {
            for src in samples() {
                let name = src.file_name().unwrap().to_str().unwrap();
                if only.is_some_and(|o| !o.contains(&name)) {
                    continue;
                }
                let dst = dir.path().join(format!("{c}_{name}"));
                std::fs::copy(&src, &dst).unwrap();
                files.push(dst);
            }
        }
        for (name, bytes) in extra {
            let dst = dir.path().join(name);
            std::fs::write(&dst, bytes).unwrap();
            files.push(dst);
        }
        let db = dir.path().join("db/library.sqlite");
        let (mut lib, _) = Library::open(&db).unwrap();
        let recs: Vec<PhotoRecord> = files
            .iter()
            .map(|p| PhotoRecord { path: p.clone(), size: std::fs::metadata(p).unwrap().len(), mtime_ns: 1, ..Default::default() })
            .collect();
        let ids = lib.upsert_photos(&recs).unwrap();
        let photos = ids.into_iter().zip(files).map(|((id, _), path)| ScoreRequest { id, path }).collect();
        Album { dir, db, photos }
    }

    fn config(&self, batch: usize) -> ScoringConfig {
        ScoringConfig {
            db_path: self.db.clone(),
            lite0: WeightsFile::EfficientNetLite0.path(),
            batch,
            max_side: MAX_SIDE,
            quality: None,
            brisque: false,
        }
    }

    fn path(&self, id: i64) -> &Path {
        &self.photos.iter().find(|p| p.id == id).unwrap().path
    }

    fn lib(&self) -> Library {
        Library::open(&self.db).unwrap().0
    }
}

/// Events until every photo of `ids` has had its `Scored` or `Failed` and the service said `Idle`.
fn run_until_idle(s: &Scoring, ids: &[i64]) -> Vec<ScoreEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    let mut open: std::collections::HashSet<i64> = ids.iter().copied().collect();
    loop {
        let left = WAIT.checked_sub(start.elapsed()).expect("scoring did not finish in time");
        let e = s.events().recv_timeout(left).expect("scoring did not finish in time");
        match &e {
            ScoreEvent::Scored { id, .. } | ScoreEvent::Failed { id, .. } => assert!(open.remove(id), "second event for photo {id}: {e:?}"),
            ScoreEvent::Idle if open.is_empty() => {
                events.push(e);
                return events;
            }
            _ => {}
        }
        events.push(e);
    }
}

fn scored(events: &[ScoreEvent]) -> HashMap<i64, (Arc<PhotoScores>, bool)> {
    let mut m = HashMap::new();
    for e in events {
        if let ScoreEvent::Scored { id, scores, from_db } = e {
            assert!(m.insert(*id, (scores.clone(), *from_db)).is_none(), "photo {id} scored twice");
        }
    }
    m
}

fn failed(events: &[ScoreEvent]) -> Vec<(i64, PathBuf, String)> {
    events
        .iter()
        .filter_map(|e| if let ScoreEvent::Failed { id, path, error } = e { Some((*id, path.clone(), error.clone())) } else { None })
        .collect()
}

fn unavailable(events: &[ScoreEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| if let ScoreEvent::ModelUnavailable { what, error } = e { Some((what.clone(), error.clone())) } else { None })
        .collect()
}

fn lite0_version() -> &'static str {
    WeightsFile::EfficientNetLite0.expected_sha256()
}

fn photos_per_s(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

#[test]
fn scoring_gives_every_sample_the_classifiers_top5_and_an_embedding() {
    let album = Album::new(1, None, &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let n = ids.len();
    assert_eq!(n, samples().len());
    assert!(n >= 16, "the sample photos are there");
    let t0 = Instant::now();
    let s = Scoring::start(album.config(4), None);
    s.submit(album.photos.clone());
    let mut events = Vec::new();
    let mut snapshots = Vec::new();
    while !matches!(events.last(), Some(ScoreEvent::Idle)) {
        events.push(s.events().recv_timeout(WAIT).expect("scoring finishes"));
        snapshots.push(s.progress());
    }
    let elapsed = t0.elapsed();
    // Once the first batch (4 photos) is done the rate is known: an ETA for as long as work is left.
    let mid: Vec<_> = snapshots.iter().filter(|p| p.done > 4 && p.done < n).collect();
    assert!(!mid.is_empty(), "progress seen mid-way: {snapshots:?}");
    assert!(mid.iter().all(|p| p.busy && p.eta.is_some_and(|e| e > Duration::ZERO)), "{mid:?}");
    eprintln!("scoring: ETA with {} of {n} done: {:?}", mid[0].done, mid[0].eta.unwrap());
    eprintln!(
        "scoring: {} samples from scratch (decode to {MAX_SIDE} px, batch 4, Lite0 load included) in {:.2} s = {:.1} photos/s",
        ids.len(),
        elapsed.as_secs_f64(),
        photos_per_s(ids.len(), elapsed)
    );
    let p = s.progress();
    assert_eq!((p.total, p.done, p.failed, p.busy, p.eta), (n, n, 0, false, None));
    drop(s);
    assert!(failed(&events).is_empty() && unavailable(&events).is_empty(), "{events:?}");
    let scores = scored(&events);
    assert_eq!(scores.len(), n);

    let classifier = Classifier::load(&WeightsFile::EfficientNetLite0.path(), &Device::Cpu).unwrap();
    let lib = album.lib();
    for (&id, (sc, from_db)) in &scores {
        assert!(!from_db);
        assert!(sc.quality.is_none(), "no quality model: no quality");
        assert_eq!(sc.embedding.len(), 1280);
        assert!(sc.embedding.iter().all(|v| v.is_finite()) && sc.embedding.iter().any(|&v| v != 0.0));
        let img = decode_path(album.path(id), Size::Fit(MAX_SIDE)).unwrap().image;
        let want = classifier.top_k(&[&img], 5).unwrap().remove(0);
        assert_eq!(sc.classes.len(), 5);
        for (got, want) in sc.classes.iter().zip(&want) {
            assert_eq!((got.0, got.1), (want.0, want.1), "{}", album.path(id).display());
            assert!((got.2 - want.2).abs() < 1e-4, "{got:?} vs {want:?}");
        }
        // Stored with it, in one piece.
        assert_eq!(lib.needs_scoring(id).unwrap(), Some(false));
        assert_eq!(lib.embedding(id, LITE0_MODEL_ID, lite0_version()).unwrap().as_deref(), Some(&sc.embedding[..]));
        let outs = lib.outputs(id, LITE0_MODEL_ID, lite0_version()).unwrap();
        assert_eq!(outs.iter().map(|o| o.head.as_str()).collect::<Vec<_>>(), vec![CLASSES_HEAD]);
    }
    let coffee = album.photos.iter().find(|p| p.path.ends_with("0_coffee.png")).unwrap().id;
    let top = scores[&coffee].0.classes[0];
    assert_eq!(top.1, "espresso");
    assert!(top.2 > 0.9, "{top:?}");
}

#[test]
fn cancelling_stops_soon_and_leaves_every_photo_whole() {
    let album = Album::new(3, None, &[]);
    let total = album.photos.len();
    assert_eq!(total, 3 * samples().len());
    let s = Scoring::start(album.config(2), None);
    s.submit(album.photos.clone());
    loop {
        match s.events().recv_timeout(WAIT).expect("first score") {
            ScoreEvent::Scored { .. } => break,
            ScoreEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    s.cancel();
    let p = s.progress();
    assert_eq!((p.total, p.done, p.busy), (0, 0, false), "progress starts again after a cancel");
    // Nothing more for the cancelled work: not even what was already on its way.
    let late: Vec<_> = std::iter::from_fn(|| s.events().recv_timeout(Duration::from_secs(2)).ok()).collect();
    let brief: Vec<String> = late
        .iter()
        .map(|e| match e {
            ScoreEvent::Scored { id, .. } => format!("Scored {id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(late.is_empty(), "events after cancel: {brief:?}");
    let t = Instant::now();
    drop(s);
    let join = t.elapsed();
    assert!(join < Duration::from_secs(20), "drop took {join:?}");

    let lib = album.lib();
    let mut stored = 0;
    for p in &album.photos {
        let outs = lib.outputs(p.id, LITE0_MODEL_ID, lite0_version()).unwrap();
        let emb = lib.embedding(p.id, LITE0_MODEL_ID, lite0_version()).unwrap();
        let needs = lib.needs_scoring(p.id).unwrap().unwrap();
        match (outs.len(), emb.is_some(), needs) {
            (1, true, false) => stored += 1,
            (0, false, true) => {}
            other => panic!("photo {} half-stored: (outputs, embedding, needs_scoring) = {other:?}", p.id),
        }
    }
    eprintln!("cancel: {stored} of {total} photos stored when cancelled after the first score (batch 2); drop joined in {join:?}");
    assert!(stored >= 1, "the photo whose score arrived is stored");
    assert!(stored <= 8, "{stored} of {total} photos stored after cancelling at the first score");
}

/// A JPEG cut off at a third of its length, and one whose data after the header is garbage.
fn damaged() -> Vec<(&'static str, Vec<u8>)> {
    let good = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/china.jpg")).unwrap();
    let truncated = good[..good.len() / 3].to_vec();
    let mut corrupt = good[..600].to_vec();
    corrupt.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    vec![("truncated.jpg", truncated), ("corrupt.jpg", corrupt)]
}

#[test]
fn damaged_photos_fail_by_name_and_the_others_score() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "flower.jpg", "chelsea.png", "china.jpg"]), &damaged());
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let s = Scoring::start(album.config(3), None);
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    let p = s.progress();
    assert_eq!((p.total, p.done, p.failed, p.busy), (7, 5, 2, false));
    let mut bad = failed(&events);
    bad.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(bad.len(), 2, "{bad:?}");
    let lib = album.lib();
    for ((id, path, error), name) in bad.iter().zip(["corrupt.jpg", "truncated.jpg"]) {
        assert!(path.ends_with(name) && album.path(*id) == path);
        assert!(error.contains(name), "error names the file: {error}");
        assert_eq!(lib.needs_scoring(*id).unwrap(), Some(true));
    }
    let good = scored(&events);
    assert_eq!(good.len(), 5);
    assert!(good.values().all(|(sc, _)| sc.classes.len() == 5 && sc.embedding.len() == 1280));
}

#[test]
fn prioritised_photos_are_scored_first_in_their_order() {
    let album = Album::new(1, None, &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let first = [ids[15], ids[12], ids[5], ids[9]];
    let s = Scoring::start(album.config(2), None);
    s.submit(album.photos.clone());
    s.prioritise(&first);
    let events = run_until_idle(&s, &ids);
    let order: Vec<i64> = events.iter().filter_map(|e| if let ScoreEvent::Scored { id, .. } = e { Some(*id) } else { None }).collect();
    assert_eq!(order.len(), ids.len());
    let pos: Vec<usize> = first.iter().map(|id| order.iter().position(|o| o == id).unwrap()).collect();
    // The worker may have taken its first batch (2 photos) before `prioritise`; nothing else comes first.
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "prioritised photos in their order: {pos:?}");
    assert!(pos[3] < 2 + first.len(), "prioritised photos first: positions {pos:?} in {order:?}");
    // Without a priority, submission order.
    let rest: Vec<i64> = order.iter().filter(|id| !first.contains(id)).copied().collect();
    let mut sorted = rest.clone();
    sorted.sort_by_key(|id| ids.iter().position(|i| i == id));
    assert_eq!(rest, sorted);
}

#[test]
fn a_reopened_album_comes_back_from_the_database() {
    let album = Album::new(1, None, &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let s = Scoring::start(album.config(4), None);
    s.submit(album.photos.clone());
    let first = scored(&run_until_idle(&s, &ids));
    drop(s);
    assert!(first.values().all(|(_, db)| !db));
    // No weights at all this time: nothing can be recomputed, so everything must come from the database.
    let mut cfg = album.config(4);
    cfg.lite0 = album.dir.path().join("no-such-weights.safetensors");
    let t = Instant::now();
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    let elapsed = t.elapsed();
    eprintln!(
        "reopen: {} samples read back in {:.3} s = {:.0} photos/s",
        ids.len(),
        elapsed.as_secs_f64(),
        photos_per_s(ids.len(), elapsed)
    );
    assert!(unavailable(&events).is_empty(), "the backbone was never needed: {events:?}");
    let again = scored(&events);
    assert_eq!(again.len(), ids.len());
    for (id, (sc, from_db)) in &again {
        assert!(from_db);
        let (orig, _) = &first[id];
        assert_eq!(sc.embedding, orig.embedding);
        assert_eq!(sc.classes.len(), 5);
        for (a, b) in sc.classes.iter().zip(&orig.classes) {
            assert_eq!((a.0, a.1), (b.0, b.1));
            assert!((a.2 - b.2).abs() <= 1e-7 * b.2.max(1.0));
        }
        assert!(sc.quality.is_none());
    }
}

/// Test double for a trained quality model: score = mean brightness in 0..100, and the four quadrants
/// as patches. Deterministic, so the worker's plumbing (call, rectangles, storage, read-back) is checked.
struct Brightness {
    version: &'static str,
    calls: Arc<AtomicUsize>,
}

fn brightness(img: &RgbImage, x0: u32, y0: u32, w: u32, h: u32) -> f32 {
    let mut sum = 0u64;
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            sum += img.get_pixel(x, y).0.iter().map(|&v| v as u64).sum::<u64>();
        }
    }
    sum as f32 / (3 * w * h) as f32 / 255.0 * 100.0
}

fn brightness_score(img: &RgbImage) -> QualityScore {
    let (w, h) = (img.width(), img.height());
    let (hw, hh) = (w / 2, h / 2);
    let patches = [(0, 0), (hw, 0), (0, hh), (hw, hh)]
        .into_iter()
        .map(|(x, y)| {
            let rect = Rect { x: x as f64, y: y as f64, w: hw as f64, h: hh as f64 };
            PatchScore { rect, cell: rect, score: brightness(img, x, y, hw, hh) }
        })
        .collect();
    QualityScore { score: brightness(img, 0, 0, w, h), patches }
}

impl QualityScorer for Brightness {
    fn model_id(&self) -> &str {
        "test-brightness"
    }
    fn version(&self) -> &str {
        self.version
    }
    fn score(&self, images: &[&RgbImage]) -> candle_core::Result<Vec<QualityScore>> {
        self.calls.fetch_add(images.len(), Ordering::SeqCst);
        Ok(images.iter().map(|i| brightness_score(i)).collect())
    }
}

fn brightness_loader(version: &'static str, calls: &Arc<AtomicUsize>) -> QualityLoader {
    let calls = calls.clone();
    Box::new(move |_: &Device| Ok(Box::new(Brightness { version, calls }) as Box<dyn QualityScorer>))
}

#[test]
fn a_quality_model_is_used_stored_and_read_back() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "Wine_by_Jakkub_Mede.jpg", "astronaut.png"]), &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut cfg = album.config(3);
    cfg.quality = Some(brightness_loader("v1", &calls));
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let first = scored(&run_until_idle(&s, &ids));
    drop(s);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let lib = album.lib();
    for (id, (sc, from_db)) in &first {
        assert!(!from_db);
        let d = decode_path(album.path(*id), Size::Fit(MAX_SIDE)).unwrap();
        let mut want = brightness_score(&d.image);
        // Rectangles come back in the photo's own pixels.
        let (sx, sy) = (d.full_width as f64 / d.image.width() as f64, d.full_height as f64 / d.image.height() as f64);
        let scale = |r: Rect| Rect { x: r.x * sx, y: r.y * sy, w: r.w * sx, h: r.h * sy };
        for p in &mut want.patches {
            p.rect = scale(p.rect);
            p.cell = scale(p.cell);
        }
        let q = sc.quality.as_ref().expect("quality from the supplied model");
        assert_eq!(q, &want);
        assert!(q.patches[3].rect.x + q.patches[3].rect.w <= d.full_width as f64 + 1e-9);
        assert_eq!(sc.classes.len(), 5);
        let outs = lib.outputs(*id, "test-brightness", "v1").unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].head, QUALITY_HEAD);
        assert_eq!(&serde_json::from_str::<QualityScore>(outs[0].json.as_deref().unwrap()).unwrap(), q);
    }

    // Same model again: everything from the database, the model is not called.
    let mut cfg = album.config(3);
    cfg.quality = Some(brightness_loader("v1", &calls));
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let again = scored(&run_until_idle(&s, &ids));
    drop(s);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for (id, (sc, from_db)) in &again {
        assert!(from_db);
        assert_eq!(sc.quality, first[id].0.quality);
    }

    // A new version of the quality model: its scores are computed, the backbone's still come from the
    // database (its weights are gone, and nobody asks for them).
    let mut cfg = album.config(3);
    cfg.lite0 = album.dir.path().join("gone.safetensors");
    cfg.quality = Some(brightness_loader("v2", &calls));
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    drop(s);
    assert!(unavailable(&events).is_empty(), "{events:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    for (id, (sc, from_db)) in &scored(&events) {
        assert!(!from_db);
        assert_eq!(sc.quality, first[id].0.quality);
        assert_eq!(sc.embedding, first[id].0.embedding);
        assert_eq!(lib.outputs(*id, "test-brightness", "v2").unwrap().len(), 1);
    }
}

#[test]
fn brisque_is_computed_when_asked_stored_and_read_back() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "chelsea.png"]), &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let brisque = keepers::model::brisque::Brisque::load(&keepers::model::brisque::Brisque::default_dir()).unwrap();
    // Off by default: no BRISQUE.
    let s = Scoring::start(album.config(3), None);
    s.submit(album.photos.clone());
    let off = scored(&run_until_idle(&s, &ids));
    drop(s);
    assert!(off.values().all(|(sc, _)| sc.brisque.is_none()));
    // Asked for: the port's own score on the decoded photo, stored; then read back, photos already complete otherwise.
    let mut cfg = album.config(3);
    cfg.brisque = true;
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let on = scored(&run_until_idle(&s, &ids));
    drop(s);
    let lib = album.lib();
    for (id, (sc, _)) in &on {
        let d = decode_path(album.path(*id), Size::Fit(MAX_SIDE)).unwrap();
        assert_eq!(sc.brisque, Some(brisque.score(&d.image) as f32), "photo {id}");
        let outs = lib.outputs(*id, keepers::worker::scoring::BRISQUE_MODEL_ID, keepers::worker::scoring::BRISQUE_VERSION).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(serde_json::from_str::<f32>(outs[0].json.as_deref().unwrap()).unwrap(), sc.brisque.unwrap());
    }
    let mut cfg = album.config(3);
    cfg.brisque = true;
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let again = scored(&run_until_idle(&s, &ids));
    drop(s);
    for (id, (sc, from_db)) in &again {
        assert!(from_db, "photo {id} came back from the database");
        assert_eq!(sc.brisque, on[id].0.brisque);
    }
}

#[test]
fn a_quality_model_that_fails_to_load_is_reported_once_and_photos_still_score() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "chelsea.png"]), &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let mut cfg = album.config(2);
    cfg.quality = Some(Box::new(|_: &Device| Err("quality weights not found".to_string())));
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    let un = unavailable(&events);
    assert_eq!(un.len(), 1, "{un:?}");
    assert!(un[0].0.contains("quality") && un[0].1 == "quality weights not found");
    let sc = scored(&events);
    assert_eq!(sc.len(), 3);
    assert!(sc.values().all(|(s, _)| s.quality.is_none() && s.classes.len() == 5 && s.embedding.len() == 1280));
    let lib = album.lib();
    assert!(ids.iter().all(|&id| lib.needs_scoring(id).unwrap() == Some(false)));
}

#[test]
fn missing_backbone_weights_are_reported_once_and_quality_still_works() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "chelsea.png"]), &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut cfg = album.config(2);
    cfg.lite0 = album.dir.path().join("missing.safetensors");
    cfg.quality = Some(brightness_loader("v1", &calls));
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let s = Scoring::start(cfg, Some(Arc::new(move || _ = w.fetch_add(1, Ordering::SeqCst))));
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    drop(s);
    let un = unavailable(&events);
    assert_eq!(un.len(), 1, "{un:?}");
    assert!(un[0].1.contains("missing.safetensors"), "{un:?}");
    let sc = scored(&events);
    assert_eq!(sc.len(), 3);
    assert!(sc.values().all(|(s, db)| !db && s.classes.is_empty() && s.embedding.is_empty() && s.quality.is_some()));
    assert!(wakes.load(Ordering::SeqCst) >= 3, "wake is called after events");
    // Nothing stored without the backbone: the photos still need scoring.
    let lib = album.lib();
    assert!(ids.iter().all(|&id| lib.needs_scoring(id).unwrap() == Some(true)));
}

#[test]
fn a_photos_outputs_are_stored_all_or_nothing() {
    let album = Album::new(1, Some(&["coffee.png"]), &[]);
    let id = album.photos[0].id;
    let mut lib = album.lib();
    let out = Output { model_id: "m".into(), weights_version: "v".into(), head: "h".into(), json: Some("1".into()), blob: None };
    let emb = Embedding { model_id: "m".into(), weights_sha: "v".into(), vector: vec![1.0, 2.0] };
    // The embedding insert fails after the output insert went through: the transaction takes both back.
    let conn = rusqlite::Connection::open(&album.db).unwrap();
    conn.execute_batch("CREATE TRIGGER fail BEFORE INSERT ON embeddings BEGIN SELECT RAISE(ABORT, 'disk full'); END;").unwrap();
    let err = lib.put_outputs(id, std::slice::from_ref(&out), std::slice::from_ref(&emb)).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(lib.outputs(id, "m", "v").unwrap().is_empty());
    assert_eq!(lib.needs_scoring(id).unwrap(), Some(true));
    conn.execute_batch("DROP TRIGGER fail;").unwrap();
    lib.put_outputs(id, std::slice::from_ref(&out), std::slice::from_ref(&emb)).unwrap();
    assert_eq!(lib.outputs(id, "m", "v").unwrap(), vec![out.clone()]);
    assert_eq!(lib.embeddings_of(&[id, id + 1000], "m", "v").unwrap(), HashMap::from([(id, vec![1.0, 2.0])]));
    assert_eq!(lib.outputs_of(&[id, id + 1000], "m", "v").unwrap(), HashMap::from([(id, vec![out.clone()])]));
    assert_eq!(lib.needs_scoring(id).unwrap(), Some(false));
    // A photo the library does not know is refused, not half-written.
    assert!(lib.put_outputs(id + 1000, &[out], &[emb]).is_err());
    assert_eq!(lib.needs_scoring(id + 1000).unwrap(), None);
}

#[test]
fn an_unusable_database_is_reported_once_and_photos_still_score() {
    let album = Album::new(1, Some(&["coffee.png", "rocket.jpg", "chelsea.png"]), &[]);
    let ids: Vec<i64> = album.photos.iter().map(|p| p.id).collect();
    let mut cfg = album.config(2);
    // A folder where the database file should be: it cannot be opened.
    cfg.db_path = album.dir.path().to_owned();
    let s = Scoring::start(cfg, None);
    s.submit(album.photos.clone());
    let events = run_until_idle(&s, &ids);
    let store: Vec<_> = events.iter().filter(|e| matches!(e, ScoreEvent::StoreFailed { .. })).collect();
    assert_eq!(store.len(), 1, "{events:?}");
    let sc = scored(&events);
    assert_eq!(sc.len(), 3);
    assert!(sc.values().all(|(s, db)| !db && s.classes.len() == 5));
}

/// `keepers bench scoring DIR --photos N` runs the app's scoring configuration on N photos made
/// from DIR's and prints the end-to-end and per-stage figures; it writes nothing under DIR.
#[test]
fn bench_scoring_scores_every_photo_and_leaves_the_folder_alone() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["coffee.png", "china.jpg"] {
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name), dir.path().join(name)).unwrap();
    }
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let before = listing();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_keepers"))
        .args(["bench", "scoring"])
        .arg(dir.path())
        .args(["--photos", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let scratch = std::env::temp_dir().join(format!("keepers-bench-scoring-{}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(!scratch.exists(), "the temporary album {} is removed", scratch.display());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("end to end: 10 photos (10 scored, 10 with a quality score, 0 failed)"), "{text}");
    let rate: f64 = text.split("steady state: ").nth(1).and_then(|t| t.split(' ').next()).and_then(|v| v.parse().ok()).expect(&text);
    assert!(rate > 0.0 && rate.is_finite(), "{text}");
    assert!(text.contains("by stage, ms per photo over 2 photos"), "{text}");
    assert_eq!(listing(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "nothing written under DIR");
}
