//! Taste profiles in the app's hands (issue 8): the profile store (save, list, rename, export,
//! import, delete; corrupt files reported and ignored; an interrupted save never listed), the
//! held-out report's figures against hand-computed values, the "label these next" rule, and the
//! taste service on real photos: the sample album scored by the real models, a profile trained
//! from labels, checked, saved and used to score, and a run that is cancelled or whose app closes
//! mid-run leaving no profile behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use keepers::library::db::{Library, PhotoRecord};
use keepers::model::quality::PATCH_FEATURES_ID;
use keepers::model::weights::WeightsFile;
use keepers::rng::SeededRng;
use keepers::train::active::{self, Candidate};
use keepers::train::profiles::{EXTENSION, ProfileStore};
use keepers::train::taste::{self, Example, TasteConfig, TasteProfile, TasteSystem};
use keepers::train::taste_eval::{HeldOutReport, Labelled, auc_standard_error, split_holdout, top_k_hit_rate};
use keepers::worker::taste::{Phase, TRAIN_PATCHES, Taste, TasteEvent, TasteJob, TrainRequest, resample_patches};
use keepers::worker::{ScoreEvent, ScoreRequest, Scoring, ScoringConfig, shipped_quality};

/// A small profile trained on seeded random features (the store only cares about the file).
fn small_profile(name: &str, seed: u64) -> TasteProfile {
    let mut rng = SeededRng::new(seed);
    let feats: Vec<Tensor> = (0..8)
        .map(|i| {
            let v: Vec<f32> = (0..2 * taste::FEATURE_DIM).map(|_| rng.uniform() as f32 + if i % 2 == 0 { 0.3 } else { 0.0 }).collect();
            Tensor::from_vec(v, (2, taste::FEATURE_DIM), &Device::Cpu).unwrap()
        })
        .collect();
    let ex: Vec<Example> = feats.iter().enumerate().map(|(i, f)| Example { features: f, keep: i % 2 == 0, theme: None }).collect();
    let cfg = TasteConfig { system: TasteSystem::MP_ADA_GRID, steps: 20, ..TasteConfig::default() };
    taste::train(name, &ex, &[], &cfg, &[], "sha", |_| true).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_store_saves_lists_renames_exports_imports_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::new(tmp.path().join("profiles"));
    assert!(store.list().profiles.is_empty() && store.list().problems.is_empty(), "a missing folder is an empty store");
    let a = small_profile("Weddings 2026", 1);
    let (fa, na) = store.save_new(&a).unwrap();
    assert_eq!((fa.as_str(), na.as_str()), ("weddings-2026.keepers-taste", "Weddings 2026"));
    // The same name again is made unique, in the name and the file.
    let (fb, nb) = store.save_new(&small_profile("Weddings 2026", 2)).unwrap();
    assert_eq!(nb, "Weddings 2026 (2)");
    assert_ne!(fa, fb);
    let l = store.list();
    assert_eq!(l.profiles.len(), 2);
    let loaded = &l.profiles.iter().find(|s| s.file == fa).unwrap().profile;
    assert_eq!(loaded.weights, a.weights, "saved weights read back exactly");

    // Rename keeps the file (the identity the settings hold) and changes the name inside it.
    assert_eq!(store.rename(&fa, "  Street  ").unwrap(), "Street");
    assert_eq!(TasteProfile::load(&store.path_of(&fa)).unwrap().name, "Street");
    assert_eq!(store.rename(&fb, "Street").unwrap(), "Street (2)", "names stay unique");
    assert!(store.rename(&fa, "   ").is_err(), "an empty name is refused");

    // Export writes one file that loads as the same profile; import brings it back as a new entry.
    let out = tmp.path().join("shared.keepers-taste");
    store.export(&fa, &out).unwrap();
    let exported = TasteProfile::load(&out).unwrap();
    assert_eq!((exported.name.as_str(), &exported.weights), ("Street", &a.weights));
    let (fi, ni) = store.import(&out).unwrap();
    assert_eq!(ni, "Street (3)");
    assert_eq!(store.list().profiles.len(), 3);
    // A file that is not a profile is refused at import, and nothing is added.
    let junk = tmp.path().join("junk.keepers-taste");
    std::fs::write(&junk, b"not a profile").unwrap();
    let e = store.import(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.keepers-taste"), "{e}");
    assert_eq!(store.list().profiles.len(), 3);

    store.delete(&fi).unwrap();
    store.delete(&fb).unwrap();
    assert_eq!(store.list().profiles.iter().map(|s| s.file.clone()).collect::<Vec<_>>(), vec![fa.clone()]);
    assert!(store.delete(&fb).is_err(), "deleting twice is an error, not a panic");
}

#[test]
fn a_corrupt_profile_is_reported_by_name_and_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("profiles");
    let store = ProfileStore::new(&dir);
    let (good, _) = store.save_new(&small_profile("Good", 3)).unwrap();
    let bytes = std::fs::read(store.path_of(&good)).unwrap();
    // Truncated mid-tensor, garbage, and the temporary file of an interrupted save.
    std::fs::write(dir.join(format!("truncated.{EXTENSION}")), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join(format!("garbage.{EXTENSION}")), b"\x00\x01 nothing like safetensors").unwrap();
    std::fs::write(dir.join(format!(".good.{EXTENSION}.123.tmp")), &bytes[..100]).unwrap();
    let l = store.list();
    assert_eq!(l.profiles.iter().map(|s| s.file.as_str()).collect::<Vec<_>>(), vec![good.as_str()]);
    assert_eq!(l.problems.len(), 2, "{:?}", l.problems);
    for name in ["truncated", "garbage"] {
        assert!(l.problems.iter().any(|p| p.contains(&format!("{name}.{EXTENSION}")) && p.contains("ignored")), "{name}: {:?}", l.problems);
    }
    assert!(!l.problems.iter().any(|p| p.contains(&format!(".good.{EXTENSION}"))), "temporary files are not profiles");
}

#[test]
fn the_held_out_split_is_stratified_seeded_and_leaves_two_per_class_to_train() {
    let labels: Vec<Labelled> = (0..30).map(|i| Labelled { id: i, keep: i % 3 == 0, grade: (i % 3 == 0) as u8 as f64 }).collect();
    let (train, held) = split_holdout(&labels, 0.3, 7);
    assert_eq!(train.len() + held.len(), 30);
    let held_keep = held.iter().filter(|&&i| labels[i].keep).count();
    assert_eq!((held_keep, held.len() - held_keep), (3, 6), "30 % of 10 keeps and of 20 rejects");
    assert_eq!(split_holdout(&labels, 0.3, 7), (train.clone(), held.clone()), "same seed, same split");
    assert_ne!(split_holdout(&labels, 0.3, 8).1, held, "another seed, another split");
    // 3 keeps: 1 held out, 2 kept for training. 2 keeps: nothing can be held out.
    let few: Vec<Labelled> = (0..8).map(|i| Labelled { id: i, keep: i < 3, grade: 0.0 }).collect();
    let (t, h) = split_holdout(&few, 0.5, 0);
    assert_eq!(h.iter().filter(|&&i| few[i].keep).count(), 1);
    assert_eq!(t.iter().filter(|&&i| few[i].keep).count(), 2);
    let fewer: Vec<Labelled> = (0..8).map(|i| Labelled { id: i, keep: i < 2, grade: 0.0 }).collect();
    assert!(split_holdout(&fewer, 0.5, 0).1.is_empty());
}

#[test]
fn held_out_figures_match_hand_computed_values() {
    // Hanley & McNeil: A = 0.8, 10 and 10. Q1 = 0.8/1.2, Q2 = 1.28/1.8;
    // SE^2 = (0.16 + 9 (Q1 - 0.64) + 9 (Q2 - 0.64)) / 100.
    let (q1, q2) = (0.8 / 1.2, 1.28 / 1.8);
    let want = ((0.16 + 9.0 * (q1 - 0.64) + 9.0 * (q2 - 0.64)) / 100.0f64).sqrt();
    assert!((auc_standard_error(0.8, 10, 10) - want).abs() < 1e-12);
    assert!((want - 0.10198).abs() < 1e-4);
    // Top-K: scores 0.9 0.8 0.7 0.1, keeps at 0.9 and 0.1: top-2 holds one keep.
    assert_eq!(top_k_hit_rate(&[0.9, 0.8, 0.7, 0.1], &[true, false, false, true], 2), Some(0.5));
    assert_eq!(top_k_hit_rate(&[0.9, 0.8], &[true, false], 0), None);
    // A report on 2 keeps and 2 rejects: AUC 0.75 (3 of 4 pairs ordered), warning on.
    let held: Vec<Labelled> =
        [(1, true), (2, true), (3, false), (4, false)].iter().map(|&(id, keep)| Labelled { id, keep, grade: keep as u8 as f64 }).collect();
    let r = HeldOutReport::new(&held, 6, 3, &[0.9, 0.4, 0.5, 0.1], Some(&[0.1, 0.2, 0.3, 0.4]));
    assert_eq!(r.profile.auc, Some(0.75));
    assert_eq!(r.baseline.unwrap().auc, Some(0.0));
    assert_eq!(r.profile.top_k, Some(0.5));
    assert_eq!(r.k, 2);
    assert!(r.warning.as_deref().is_some_and(|w| w.contains("Too few labels")), "{:?}", r.warning);
    // Enough labels: no warning.
    let many: Vec<Labelled> = (0..30).map(|i| Labelled { id: i, keep: i < 15, grade: 0.0 }).collect();
    let scores: Vec<f64> = (0..30).map(|i| -(i as f64)).collect();
    let r = HeldOutReport::new(&many, 60, 30, &scores, None);
    assert_eq!(r.profile.auc, Some(1.0));
    assert!(r.warning.is_none() && r.baseline.is_none());
}

#[test]
fn label_next_prefers_uncertain_photos_and_skips_near_duplicates() {
    // Four scenes; scene 0 has three near-identical frames. Embeddings: one-hot scene + tiny offset.
    let emb = |scene: usize, jitter: f32| -> Vec<f32> {
        let mut v = vec![0.0; 8];
        v[scene] = 1.0;
        v[7] = jitter;
        v
    };
    let e: Vec<Vec<f32>> = vec![emb(0, 0.0), emb(0, 0.01), emb(0, 0.02), emb(1, 0.0), emb(2, 0.0), emb(3, 0.0)];
    let p = [Some(0.5), Some(0.5), Some(0.5), Some(0.95), Some(0.6), Some(0.45)];
    let cands: Vec<Candidate> = e.iter().zip(p).map(|(e, p)| Candidate { embedding: e, p_keep: p }).collect();
    let s = active::suggest(&cands, &[], 4);
    assert_eq!(s[0], 0, "most uncertain first");
    assert_eq!(&s[1..3], &[5, 4], "then the uncertain new scenes, not the near-duplicates of 0");
    assert_eq!(s[3], 3, "a confident new scene beats a near-duplicate");
    // A labelled photo of scene 3 (candidate 5) pushes that scene out.
    let s = active::suggest(&cands, &[&emb(3, 0.0)], 3);
    assert_eq!(s, vec![0, 4, 3], "scene 3 is labelled already");
    // Without a profile it spreads over the scenes first.
    let unsure: Vec<Candidate> = e.iter().map(|e| Candidate { embedding: e, p_keep: None }).collect();
    let mut s = active::suggest(&unsure, &[], 4);
    s.sort();
    assert_eq!(s, vec![0, 3, 4, 5]);
    assert_eq!(active::uncertainty(Some(0.5)), 1.0);
    assert_eq!(active::uncertainty(Some(1.0)), 0.0);
}

#[test]
fn patches_are_resampled_evenly() {
    let x = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((6, 1)).unwrap();
    let r = resample_patches(&x, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(r, vec![1.0, 3.0, 5.0]);
    let r = resample_patches(&x, 12).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(r, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]);
}

/// The sample album in a temporary folder, scored by the real models (patch features stored).
struct Scored {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    ids: HashMap<String, i64>,
    quality: HashMap<i64, f64>,
}

fn scored_samples() -> Scored {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")).unwrap() {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("").to_lowercase();
        if ext == "jpg" || ext == "png" {
            let dst = tmp.path().join(p.file_name().unwrap());
            std::fs::copy(&p, &dst).unwrap();
            files.push(dst);
        }
    }
    let db = tmp.path().join("library.sqlite");
    let (mut lib, _) = Library::open(&db).unwrap();
    let recs: Vec<PhotoRecord> = files
        .iter()
        .map(|p| PhotoRecord { path: p.clone(), size: std::fs::metadata(p).unwrap().len(), mtime_ns: 1, ..Default::default() })
        .collect();
    let ids: Vec<i64> = lib.upsert_photos(&recs).unwrap().into_iter().map(|(id, _)| id).collect();
    let s = Scoring::start(ScoringConfig { quality: Some(shipped_quality()), ..ScoringConfig::new(db.clone()) }, None);
    s.submit(ids.iter().zip(&files).map(|(&id, p)| ScoreRequest { id, path: p.clone() }).collect());
    let mut quality = HashMap::new();
    let start = Instant::now();
    while quality.len() < ids.len() {
        match s.events().recv_timeout(Duration::from_secs(300)).expect("scoring finished") {
            ScoreEvent::Scored { id, scores, .. } => {
                quality.insert(id, scores.quality.as_ref().expect("the shipped quality model scores").score as f64);
            }
            ScoreEvent::Failed { path, error, .. } => panic!("{}: {error}", path.display()),
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(300));
    }
    drop(s);
    let names = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned());
    Scored { dir: tmp.path().to_owned(), _tmp: tmp, db, ids: names.zip(ids).collect(), quality }
}

use keepers::app::screenshot::{SAMPLE_KEEPS as KEEP, SAMPLE_REJECTS as REJECT};

fn request(s: &Scored, steps: usize) -> TrainRequest {
    let labels = KEEP
        .iter()
        .map(|n| (n, true))
        .chain(REJECT.iter().map(|n| (n, false)))
        .map(|(n, keep)| Labelled { id: s.ids[*n], keep, grade: keep as u8 as f64 })
        .collect();
    TrainRequest {
        name: "Test taste".into(),
        labels,
        baseline: s.quality.clone(),
        config: TasteConfig { system: TasteSystem::MP_ADA_GRID, steps, ..TasteConfig::default() },
        themes: Vec::new(),
        theme_of: HashMap::new(),
        keyword_photos: Vec::new(),
        holdout: 0.3,
        seed: 0,
    }
}

fn next_event(t: &Taste) -> TasteEvent {
    t.events().recv_timeout(Duration::from_secs(120)).expect("the taste service answered")
}

#[test]
fn the_taste_service_trains_checks_saves_scores_and_stops_cleanly() {
    let s = scored_samples();
    // Every photo has its grid-patch features stored, as many 1280-d rows as the quality model's grid.
    let lib = Library::open(&s.db).unwrap().0;
    let all: Vec<i64> = s.ids.values().copied().collect();
    let feats = lib.embeddings_of(&all, PATCH_FEATURES_ID, WeightsFile::EfficientNetLite0.expected_sha256()).unwrap();
    assert_eq!(feats.len(), all.len());
    assert!(feats.values().all(|f| !f.is_empty() && f.len() % taste::FEATURE_DIM == 0 && f.len() / taste::FEATURE_DIM <= 16));

    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::new(tmp.path().join("profiles"));

    // Cancelled mid-run: a Cancelled event, nothing saved.
    let t = Taste::start(s.db.clone(), store.clone(), None);
    t.submit(TasteJob::Train(request(&s, 1_000_000))).ok().unwrap();
    assert!(matches!(next_event(&t), TasteEvent::Progress(_)));
    t.cancel();
    loop {
        match next_event(&t) {
            TasteEvent::Progress(_) => {}
            TasteEvent::Cancelled => break,
            e => panic!("unexpected {e:?}"),
        }
    }
    assert!(files_in(store.dir()).is_empty(), "{:?}", files_in(store.dir()));

    // The app closes mid-run (the service is dropped): the run stops, no profile, no temporary file.
    t.submit(TasteJob::Train(request(&s, 1_000_000))).ok().unwrap();
    assert!(matches!(next_event(&t), TasteEvent::Progress(_)));
    let closing = Instant::now();
    drop(t);
    assert!(closing.elapsed() < Duration::from_secs(5), "closing waited {:?}", closing.elapsed());
    assert!(files_in(store.dir()).is_empty(), "{:?}", files_in(store.dir()));
    assert!(store.list().profiles.is_empty());

    // A full run: progress of both phases with held-out AUC on the way, a saved profile, the report.
    let t = Taste::start(s.db.clone(), store.clone(), None);
    t.submit(TasteJob::Train(request(&s, 200))).ok().unwrap();
    let (mut check, mut last_final, mut aucs) = (Vec::new(), None, 0);
    let (file, profile, report, left_out) = loop {
        match next_event(&t) {
            TasteEvent::Progress(p) => {
                match p.phase {
                    Phase::Check => check.push(p.loss),
                    Phase::Final => last_final = Some(p),
                    Phase::Tag(..) => panic!("no keywords were given"),
                }
                aucs += p.validation_auc.is_some() as usize;
            }
            TasteEvent::Trained { file, profile, report, left_out, .. } => break (file, profile, report, left_out),
            e => panic!("unexpected {e:?}"),
        }
    };
    assert_eq!(check.len(), 200);
    assert!(check.last().unwrap() < &check[0], "the check fit's loss went down");
    assert_eq!(last_final.unwrap().step, 200);
    assert!(aucs >= 20, "held-out AUC every 10 steps: {aucs}");
    assert_eq!(left_out, 0);
    assert_eq!((report.n_labels, report.n_train, report.n_heldout_keep, report.n_heldout_reject), (10, 6, 2, 2));
    assert!(report.baseline.is_some(), "the untuned model scored every held-out photo");
    assert!(report.warning.is_some());
    assert_eq!(profile.system, TasteSystem::MP_ADA_GRID);
    assert_eq!((profile.metrics.n_keep, profile.metrics.n_reject), (5, 5), "the saved profile learned from every label");
    assert_eq!(store.list().profiles.len(), 1);
    let on_disk = TasteProfile::load(&store.path_of(&file)).unwrap();
    assert_eq!(on_disk.weights, profile.weights);

    // Scoring: the service's keep probabilities are the profile's own on each photo's stored patches.
    t.submit(TasteJob::Score { file: file.clone(), profile: Arc::new(on_disk.clone()), ids: all.clone() }).ok().unwrap();
    let mut got = HashMap::new();
    while got.len() < all.len() {
        match next_event(&t) {
            TasteEvent::Scores { file: f, scores } => {
                assert_eq!(f, file);
                got.extend(scores.into_iter().map(|t| {
                    assert!(t.themes.is_empty() && t.tags.is_empty(), "no themes or tags in this profile");
                    (t.id, t.keep)
                }));
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    for (id, p) in &got {
        let flat = feats[id].clone();
        let x = Tensor::from_vec(flat.clone(), (flat.len() / taste::FEATURE_DIM, taste::FEATURE_DIM), &Device::Cpu).unwrap();
        assert!((on_disk.score(&x).unwrap() - p).abs() < 1e-6);
    }
    let mean = |names: &[&str]| names.iter().map(|n| got[&s.ids[*n]]).sum::<f32>() / names.len() as f32;
    assert!(mean(&KEEP) > mean(&REJECT), "trained on them: keeps {} > rejects {}", mean(&KEEP), mean(&REJECT));
    // MP-ada bags have one size in training.
    assert_eq!(TRAIN_PATCHES, 16);

    // With the user's themes (two "folders"), the profile carries them and scores each photo per theme.
    let mut r = request(&s, 100);
    r.themes = vec!["nature".into(), "studio".into()];
    r.theme_of = r.labels.iter().enumerate().map(|(i, l)| (l.id, (i % 2 == 1) as usize)).collect();
    t.submit(TasteJob::Train(r)).ok().unwrap();
    let (file, profile) = loop {
        match next_event(&t) {
            TasteEvent::Progress(_) => {}
            TasteEvent::Trained { file, profile, .. } => break (file, profile),
            e => panic!("unexpected {e:?}"),
        }
    };
    assert_eq!(profile.themes, vec!["nature".to_string(), "studio".to_string()]);
    assert_eq!(TasteProfile::load(&store.path_of(&file)).unwrap().themes, profile.themes);
    t.submit(TasteJob::Score { file: file.clone(), profile: profile.clone(), ids: all[..3].to_vec() }).ok().unwrap();
    match next_event(&t) {
        TasteEvent::Scores { scores, .. } => {
            assert_eq!(scores.len(), 3);
            for t in scores {
                let f = &feats[&t.id];
                let x = Tensor::from_vec(f.clone(), (f.len() / taste::FEATURE_DIM, taste::FEATURE_DIM), &Device::Cpu).unwrap();
                assert_eq!(t.themes.len(), 2);
                assert!((profile.score_as(&x, "studio").unwrap().unwrap() - t.themes[1]).abs() < 1e-6);
                assert!((profile.score(&x).unwrap() - t.keep).abs() < 1e-6);
            }
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn the_photographers_keywords_become_style_tags() {
    let s = scored_samples();
    // Keywords in XMP sidecars, as Lightroom writes them; three photos have none; "food" is too rare.
    let tags: &[(&str, &[&str])] = &[
        ("Dragonfly_by_Bolly.jpg", &["animal", "macro"]),
        ("Kleiber_by_Lukas_Baubkus.jpg", &["animal"]),
        ("chelsea.png", &["animal", "pet"]),
        ("friends_by_Aitzol_Berasategi.jpg", &["animal", "pet"]),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("sunset_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("seeding_by_Clements_Engelhardt.jpg", &["landscape", "macro"]),
        ("life_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("astronaut.png", &["space"]),
        ("hubble_deep_field.jpg", &["space"]),
        ("rocket.jpg", &["space"]),
        ("coffee.png", &["food"]),
        ("Wine_by_Jakkub_Mede.jpg", &["food"]),
    ];
    for (name, kw) in tags {
        let li: String = kw.iter().map(|k| format!("<rdf:li>{k}</rdf:li>")).collect();
        let xmp = format!(
            r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>{li}</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"#
        );
        std::fs::write(s.dir.join(format!("{name}.xmp")), xmp).unwrap();
    }
    // A sidecar that is not XML: named in the notes, the rest goes on.
    std::fs::write(s.dir.join("china.jpg.xmp"), "<x:xmpmeta><broken").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let t = Taste::start(s.db.clone(), store.clone(), None);
    let mut r = request(&s, 200);
    r.keyword_photos = s.ids.iter().map(|(n, &id)| (id, s.dir.join(n))).collect();
    t.submit(TasteJob::Train(r)).ok().unwrap();
    let mut tag_steps = 0;
    let (file, profile, notes_seen) = loop {
        match next_event(&t) {
            TasteEvent::Progress(p) => tag_steps += matches!(p.phase, Phase::Tag(..)) as usize,
            TasteEvent::Trained { file, profile, notes, .. } => break (file, profile, notes),
            e => panic!("unexpected {e:?}"),
        }
    };
    assert!(tag_steps > 0, "tag training reported progress");
    let mut names: Vec<&str> = profile.tags.iter().map(|t| t.name()).collect();
    names.sort();
    assert_eq!(names, vec!["animal", "landscape", "space"], "macro, pet and food have 2 photos each");
    let animal = profile.tags.iter().find(|t| t.name() == "animal").unwrap();
    assert_eq!((animal.info.n_pos, animal.info.n_neg), (4, 9));
    assert!(animal.info.heldout_n > 0 && animal.info.heldout_auc.is_some());
    assert!(notes_seen.iter().any(|n| n.contains("china.jpg.xmp")), "{notes_seen:?}");
    assert!(notes_seen.iter().any(|n| n.contains("not learned")), "{notes_seen:?}");
    // The file keeps the tags; scoring gives each photo a probability per tag, highest on the photos that carry it.
    let loaded = TasteProfile::load(&store.path_of(&file)).unwrap();
    assert_eq!(loaded, *profile);
    let ids: Vec<i64> = s.ids.values().copied().collect();
    t.submit(TasteJob::Score { file: file.clone(), profile: profile.clone(), ids: ids.clone() }).ok().unwrap();
    let mut got = HashMap::new();
    while got.len() < ids.len() {
        if let TasteEvent::Scores { scores, .. } = next_event(&t) {
            got.extend(scores.into_iter().map(|t| (t.id, t)));
        }
    }
    for (k, head) in profile.tags.iter().enumerate() {
        let with: Vec<f32> = tags.iter().filter(|(_, kw)| kw.contains(&head.name())).map(|(n, _)| got[&s.ids[*n]].tags[k]).collect();
        let without: Vec<f32> = tags.iter().filter(|(_, kw)| !kw.contains(&head.name())).map(|(n, _)| got[&s.ids[*n]].tags[k]).collect();
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean(&with) > mean(&without) + 0.2, "{}: with {:?} without {:?}", head.name(), with, without);
    }
}

/// Profiles and checkpoints keep f64 metrics in JSON: they must read back bit-identical (serde_json's
/// default float parser can be one ulp off; the crate enables `float_roundtrip`).
#[test]
fn json_metrics_read_back_bit_identical() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((x % 9) as i32 - 4);
        let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back.to_bits(), v.to_bits(), "{v:e} read back as {back:e}");
    }
}
