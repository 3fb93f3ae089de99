//! The taste panel's advanced mode below the UI (issue 8, items 1 and 5): the papers' procedures
//! trained by the taste service on a labelled CSV of real photos (the bundled sample album), saved
//! as procedure profiles, re-loaded and used to score photos from their pixels.
//!
//! - A CSV with one missing and one corrupt image trains, names both in its result and in the
//!   saved profile, and the profile scores the readable photos and no others.
//! - The profile survives save / load / rename / export / import unchanged (weights included), a
//!   corrupt procedure profile is reported and ignored, and the grid-head profiles still load.
//! - A run cancelled mid-way through the service leaves no profile and no run folder.
//! - Album stars become a 5-bin distribution; a distribution run (ARP-MPEMD-avg, the default for
//!   that task) trains and gives 0..1 scores.
//! - A small-data profile leaves out the frozen backbone (bit-identical to the shipped Lite0
//!   weights), is a few tens of KB instead of 13.7 MB, scores exactly as the full checkpoint did
//!   after save / load / export / import, refuses another backbone file naming the profile, and a
//!   full (older) procedure profile still loads and scores the same.
//! - The taste service, when it starts, removes run folders a crash left (`.runs/run-*` without a
//!   write for 6 hours) and nothing else.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use keepers::app::screenshot::{SAMPLE_KEEPS, SAMPLE_REJECTS};
use keepers::model::weights::WeightsFile;
use keepers::train::data::album::{STAR_BINS, star_histogram, with_star_histograms};
use keepers::train::data::{Dataset, Sample, Target};
use keepers::train::features::FeaturePlan;
use keepers::train::procedures::{EvalConfig, Procedure, Task};
use keepers::train::profiles::ProfileStore;
use keepers::train::taste::TasteProfile;
use keepers::worker::procedure::{self, LabelledSet, ProcedureRequest, RunError, TaskChoice, default_procedure};
use keepers::worker::taste::{Taste, TasteEvent, TasteJob};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")
}

/// A folder with copies of the sample keeps and rejects, one corrupt JPEG, and a CSV
/// `path,label,score` naming them and one missing file. Returns (folder, csv).
fn csv_set(dir: &Path) -> PathBuf {
    let mut rows = vec!["path,label,score".to_string()];
    for (names, label, score) in [(&SAMPLE_KEEPS, 1, 8.0), (&SAMPLE_REJECTS, 0, 3.0)] {
        for (i, n) in names.iter().enumerate() {
            std::fs::copy(samples_dir().join(n), dir.join(n)).unwrap();
            rows.push(format!("{n},{label},{}", score + i as f64 * 0.3));
        }
    }
    // A JPEG cut after its first 600 bytes, and a file that is not there.
    let bytes = std::fs::read(samples_dir().join("flower.jpg")).unwrap();
    std::fs::write(dir.join("broken.jpg"), &bytes[..600]).unwrap();
    rows.push("broken.jpg,1,7.5".into());
    rows.push("not_there.jpg,0,2.0".into());
    let csv = dir.join("labels.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    csv
}

fn request(name: &str, set: LabelledSet, task: TaskChoice, epochs: usize, cache: &Path) -> ProcedureRequest {
    ProcedureRequest {
        name: name.into(),
        set,
        task,
        procedure: default_procedure(task),
        system: None,
        small_data: true,
        epochs,
        lr: 1e-3,
        batch: 4,
        seed: 3,
        val_fraction: 0.25,
        feature_plan: FeaturePlan { native: 4, arp: 3, seed: 3 },
        patches: 3,
        test_views: 2,
        lite0: WeightsFile::EfficientNetLite0.path(),
        feature_cache: Some(cache.to_path_buf()),
        baseline: Default::default(),
    }
}

fn eval_cfg(cache: &Path) -> EvalConfig {
    EvalConfig { threads: 2, batch: 4, seed: 0, lite0: WeightsFile::EfficientNetLite0.path(), feature_cache: Some(cache.to_path_buf()) }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_csv_with_a_missing_and_a_corrupt_image_trains_names_both_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    let csv = csv_set(&data);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let cache = tmp.path().join("features");
    let mut r = request("CSV keeps", LabelledSet::Csv(csv.clone()), TaskChoice::Binary, 3, &cache);
    assert_eq!(r.procedure, Procedure::MpAda, "the default for few labels is the small-data MP-ada");
    // An "untuned" comparison score that is the label itself: its held-out AUC must be 1, which
    // checks that the comparison reaches the right photos.
    for (names, v) in [(&SAMPLE_KEEPS, 1.0), (&SAMPLE_REJECTS, 0.0)] {
        for n in names.iter() {
            r.baseline.insert(data.join(n), v);
        }
    }
    let mut reports = Vec::new();
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |p| reports.push(p))
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    assert!(reports.iter().any(|p| p.end_of_epoch), "epoch reports");
    assert!(reports.iter().filter(|p| !p.preparing).all(|p| p.step_loss.is_finite()), "finite losses");
    let prep: Vec<u64> = reports.iter().filter(|p| p.preparing).map(|p| p.epoch).collect();
    assert_eq!(prep, vec![0, 4, 8, 12], "feature progress, four photos at a time, before training");
    assert!(reports.iter().position(|p| !p.preparing).unwrap() == prep.len(), "features first");
    // Both bad images are named, with a reason each; training went on without them.
    assert_eq!(out.skipped.len(), 2, "{:?}", out.skipped);
    assert!(out.skipped.iter().any(|s| s.contains("broken.jpg")), "{:?}", out.skipped);
    assert!(out.skipped.iter().any(|s| s.contains("not_there.jpg")), "{:?}", out.skipped);
    let info = &out.profile.procedure.as_ref().unwrap().info;
    assert_eq!((info.procedure.as_str(), info.system.as_str()), ("mp-ada", "MP-ada"));
    assert_eq!(info.task, Task::Binary);
    assert!(info.small_data);
    assert_eq!(info.skipped, out.skipped, "the profile keeps the report");
    assert_eq!(info.n_train + info.n_val, 12, "12 rows, split before the images are read");
    assert!(info.metrics.contains_key("val_accuracy"), "validation metrics of the best checkpoint: {:?}", info.metrics);
    // The held-out comparison (issue 8 item 3): the profile's keep probability on the readable
    // validation photos beside the untuned score, with the label counts and a warning (few labels).
    let rep = info.heldout.as_ref().expect("a keep / reject run has a held-out report");
    let n_held = rep.n_heldout_keep + rep.n_heldout_reject;
    assert!(n_held >= 1 && n_held <= info.n_val, "{rep:?}");
    assert_eq!(rep.n_train, info.n_train);
    eprintln!("held-out report: {rep:?}");
    assert!(rep.n_heldout_keep > 0 && rep.n_heldout_reject > 0, "seed 3 holds out both classes: {rep:?}");
    assert!(rep.profile.auc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{rep:?}");
    assert_eq!(rep.baseline.as_ref().and_then(|b| b.auc), Some(1.0), "{rep:?}");
    assert!(rep.warning.as_deref().is_some_and(|w| w.contains("Too few labels")), "{rep:?}");
    eprintln!("procedure profile file: {} bytes", std::fs::metadata(store.path_of(&out.file)).unwrap().len());
    // Nothing else left in the store: the profile file only (the run folder is gone).
    assert_eq!(entries(store.dir()), vec![out.file.clone()]);

    // The file holds the checkpoint: the listing, a reload, an export and an import give the same profile.
    let listed = store.list();
    assert!(listed.problems.is_empty(), "{:?}", listed.problems);
    assert_eq!(listed.profiles.len(), 1);
    assert_eq!(*listed.profiles[0].profile, *out.profile);
    let loaded = TasteProfile::load(&store.path_of(&out.file)).unwrap();
    assert_eq!(loaded, *out.profile);
    let exported = tmp.path().join("exported.keepers-taste");
    store.export(&out.file, &exported).unwrap();
    let other = ProfileStore::new(tmp.path().join("other"));
    let (ifile, iname) = other.import(&exported).unwrap();
    assert_eq!(iname, "CSV keeps");
    let imported = TasteProfile::load(&other.path_of(&ifile)).unwrap();
    assert_eq!(imported.procedure, out.profile.procedure, "weights and metadata survive export and import");
    let renamed = store.rename(&out.file, "Renamed").unwrap();
    let after = TasteProfile::load(&store.path_of(&out.file)).unwrap();
    assert_eq!((after.name.as_str(), renamed.as_str()), ("Renamed", "Renamed"));
    assert_eq!(after.procedure, out.profile.procedure);
    // A procedure profile has no grid head: asking it for a grid score is an error, not a number.
    let grid =
        candle_core::Tensor::zeros((4, keepers::train::taste::FEATURE_DIM), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let e = imported.score(&grid).unwrap_err().to_string();
    assert!(e.contains("from their pixels"), "{e}");
    assert_eq!(imported.score_text(0.25), "25 % keep", "a keep / reject profile's score is a keep probability");

    // The imported profile scores from pixels: the readable photos get 0..1 scores, the broken one none.
    let model = procedure::load(&imported, &WeightsFile::EfficientNetLite0.path(), &other.path_of(&ifile)).unwrap();
    let photos: Vec<PathBuf> = [SAMPLE_KEEPS[0], SAMPLE_REJECTS[0], "broken.jpg", SAMPLE_KEEPS[1]].iter().map(|n| data.join(n)).collect();
    let mut last = (0, 0);
    let scores =
        procedure::score(&model, &imported.procedure.as_ref().unwrap().info, &photos, None, &eval_cfg(&cache), |d, t| last = (d, t))
            .unwrap();
    assert_eq!(last.1, 4);
    assert!(scores[2].is_none(), "the corrupt image has no score: {scores:?}");
    for i in [0, 1, 3] {
        let s = scores[i].unwrap_or_else(|| panic!("photo {i} has no score: {scores:?}"));
        assert!((0.0..=1.0).contains(&s), "{s}");
    }

    // A damaged procedure profile is reported by name and ignored; the good one is still listed.
    let bytes = std::fs::read(store.path_of(&out.file)).unwrap();
    std::fs::write(store.dir().join("damaged.keepers-taste"), &bytes[..bytes.len() / 2]).unwrap();
    let l = store.list();
    assert_eq!(l.profiles.len(), 1);
    assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
    assert!(l.problems[0].contains("damaged.keepers-taste"), "{:?}", l.problems);
}

#[test]
fn a_cancelled_service_run_leaves_no_profile_and_a_restart_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    let csv = csv_set(&data);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let cache = tmp.path().join("features");
    let taste = Taste::start(tmp.path().join("library.sqlite"), store.clone(), None);
    let wait = |what: &str, done: &mut dyn FnMut(&TasteEvent) -> bool| {
        let start = Instant::now();
        loop {
            match taste.events().recv_timeout(Duration::from_secs(1)) {
                Ok(TasteEvent::TrainFailed(e)) => panic!("training failed: {e}"),
                Ok(e) if done(&e) => return,
                Ok(_) => {}
                Err(_) => assert!(start.elapsed() < Duration::from_secs(300), "timed out waiting for {what}"),
            }
        }
    };
    // A long run: progress arrives, then cancel stops it with nothing saved.
    let long = request("Long", LabelledSet::Csv(csv.clone()), TaskChoice::Binary, 100_000, &cache);
    assert!(taste.submit(TasteJob::Procedure(Box::new(long))).is_ok());
    let (mut steps, mut preparing) = (0, 0);
    wait("three steps", &mut |e| {
        if let TasteEvent::ProcedureProgress(p) = e {
            if p.preparing {
                assert_eq!(steps, 0, "the features come before the first step");
                preparing += 1;
            } else {
                steps += !p.end_of_epoch as usize;
            }
        }
        steps >= 3
    });
    // 12 photos, four at a time: a report before, and after each four.
    assert_eq!(preparing, 4, "feature progress reports");
    // Pause holds it between steps (a paused report, then no step), resume lets it go on.
    taste.pause(true);
    wait("the paused report", &mut |e| matches!(e, TasteEvent::ProcedureProgress(p) if p.paused));
    std::thread::sleep(Duration::from_millis(400));
    let mut during = 0;
    while let Ok(e) = taste.events().try_recv() {
        during += matches!(e, TasteEvent::ProcedureProgress(p) if !p.paused) as usize;
    }
    assert_eq!(during, 0, "a paused run does not step");
    taste.pause(false);
    let mut more = 0;
    wait("steps after resuming", &mut |e| {
        more += matches!(e, TasteEvent::ProcedureProgress(p) if !p.paused) as usize;
        more >= 2
    });
    taste.cancel();
    wait("the run to stop", &mut |e| matches!(e, TasteEvent::Cancelled));
    assert!(store.list().profiles.is_empty(), "a cancelled run saved a profile");
    assert!(entries(store.dir()).is_empty(), "a cancelled run left {:?}", entries(store.dir()));

    // Restarted short, it finishes and its profile is listed.
    let short = request("Short", LabelledSet::Csv(csv), TaskChoice::Binary, 2, &cache);
    assert!(taste.submit(TasteJob::Procedure(Box::new(short))).is_ok());
    let mut file = None;
    wait("the run to finish", &mut |e| {
        if let TasteEvent::ProcedureTrained(o) = e {
            file = Some(o.file.clone());
            true
        } else {
            false
        }
    });
    let l = store.list();
    assert_eq!(l.profiles.len(), 1);
    assert_eq!(Some(l.profiles[0].file.clone()), file);
    assert_eq!(l.profiles[0].profile.name, "Short");
}

#[test]
fn album_stars_become_a_five_bin_distribution_and_arp_mpemd_learns_it() {
    assert_eq!(star_histogram(3.0), Some(vec![0.0, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(star_histogram(0.0), None);
    assert_eq!(star_histogram(6.0), None);
    assert_eq!(STAR_BINS, 5);
    // The album's photos with stars (1..5) as a dataset, as the panel builds it.
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<&str> = SAMPLE_KEEPS.iter().chain(SAMPLE_REJECTS.iter()).copied().collect();
    let samples: Vec<Sample> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let p = tmp.path().join(n);
            std::fs::copy(samples_dir().join(n), &p).unwrap();
            let stars = if i < 5 { 4.0 + (i % 2) as f64 } else { 1.0 + (i % 2) as f64 };
            Sample { path: p, key: n.to_string(), target: Target { score: Some(stars), ..Default::default() } }
        })
        .collect();
    let ds = with_star_histograms(&Dataset {
        source: "album".into(),
        samples,
        class_names: Vec::new(),
        style_names: Vec::new(),
        theme_names: Vec::new(),
    });
    assert!(
        ds.samples.iter().all(|s| s.target.histogram.as_ref().is_some_and(|h| h.len() == 5 && (h.iter().sum::<f64>() - 1.0).abs() < 1e-9))
    );
    assert_eq!(TaskChoice::Distribution.task(&ds), Task::Distribution { bins: 5 });
    assert_eq!(default_procedure(TaskChoice::Distribution), Procedure::ArpMpemdAvg);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let cache = tmp.path().join("features");
    let r = request("Stars", LabelledSet::Album(ds), TaskChoice::Distribution, 2, &cache);
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("the distribution run failed: {e}"));
    let c = out.profile.procedure.as_ref().unwrap();
    assert_eq!((c.info.procedure.as_str(), c.info.system.as_str()), ("arp-mpemd-avg", "ARP-MPEMD"));
    assert!(c.info.metrics.contains_key("val_emd_r2"), "{:?}", c.info.metrics);
    let model = procedure::load(&out.profile, &WeightsFile::EfficientNetLite0.path(), &store.path_of(&out.file)).unwrap();
    let paths: Vec<PathBuf> = names.iter().take(3).map(|n| tmp.path().join(n)).collect();
    let s = procedure::score(&model, &c.info, &paths, None, &eval_cfg(&cache), |_, _| {}).unwrap();
    assert!(s.iter().all(|v| v.is_some_and(|v| (0.0..=1.0).contains(&v))), "{s:?}");
    // The app writes a distribution profile's score as the predicted mean star rating.
    assert_eq!(out.profile.score_text(0.75), "mean 4.0 of 1–5");
}

#[test]
fn a_cancel_before_the_first_step_is_a_cancel() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    let csv = csv_set(&data);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let r = request("Never", LabelledSet::Csv(csv), TaskChoice::Binary, 3, &tmp.path().join("features"));
    let e = procedure::run(&r, &store, &AtomicBool::new(true), &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert!(matches!(e, RunError::Cancelled), "{e}");
    assert!(entries(store.dir()).is_empty(), "{:?}", entries(store.dir()));
}

/// Writes an XMP sidecar with `keywords` (dc:subject) beside `photo`, as Lightroom does.
fn write_keywords(photo: &Path, keywords: &[&str]) {
    let li: String = keywords.iter().map(|k| format!("<rdf:li>{k}</rdf:li>")).collect();
    let xmp = format!(
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>{li}</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"#
    );
    let mut name = photo.file_name().unwrap().to_os_string();
    name.push(".xmp");
    std::fs::write(photo.with_file_name(name), xmp).unwrap();
}

#[test]
fn the_albums_xmp_keywords_are_the_style_tags_of_a_multi_label_run() {
    let tmp = tempfile::tempdir().unwrap();
    let tags: &[(&str, &[&str])] = &[
        ("Dragonfly_by_Bolly.jpg", &["animal", "macro"]),
        ("Kleiber_by_Lukas_Baubkus.jpg", &["animal"]),
        ("chelsea.png", &["animal"]),
        ("friends_by_Aitzol_Berasategi.jpg", &["animal"]),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("sunset_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("seeding_by_Clements_Engelhardt.jpg", &["landscape", "macro"]),
        ("life_by_Aitzol_Berasategi.jpg", &["landscape"]),
        ("coffee.png", &["food"]),
        ("china.jpg", &[]),
    ];
    let mut samples = Vec::new();
    for (n, kw) in tags {
        let p = tmp.path().join(n);
        std::fs::copy(samples_dir().join(n), &p).unwrap();
        if !kw.is_empty() {
            write_keywords(&p, kw);
        }
        // The album's photos, undecided: the style task needs no keep / reject.
        samples.push(Sample { path: p, key: n.to_string(), target: Target::default() });
    }
    let ds = Dataset { source: "album".into(), samples, class_names: Vec::new(), style_names: Vec::new(), theme_names: Vec::new() };
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let cache = tmp.path().join("features");
    let r = request("Tags", LabelledSet::Album(ds), TaskChoice::Styles, 2, &cache);
    assert_eq!(r.procedure, Procedure::Dma, "MP's objectives are for one class or score: DMA-fc is the multi-patch default for tags");
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("the styles run failed: {e}"));
    let info = &out.profile.procedure.as_ref().unwrap().info;
    // "animal" (4 of 9 with keywords) and "landscape" (4 of 9) are learned; "macro" (2) and "food" (1) are too rare.
    assert_eq!(info.task, Task::Styles { tags: vec!["animal".into(), "landscape".into()] });
    assert_eq!(info.n_train + info.n_val, 9, "the photo without keywords is not a sample");
    assert_eq!(out.without_target, 1);
    assert!(out.notes.iter().any(|n| n.contains("\"macro\"")) && out.notes.iter().any(|n| n.contains("\"food\"")), "{:?}", out.notes);
    assert!(info.metrics.contains_key("val_map"), "{:?}", info.metrics);
    // A styles profile has no single score to show: scoring gives none rather than a made-up one.
    let model = procedure::load(&out.profile, &WeightsFile::EfficientNetLite0.path(), &store.path_of(&out.file)).unwrap();
    let s = procedure::score(&model, info, &[tmp.path().join("china.jpg")], None, &eval_cfg(&cache), |_, _| {}).unwrap();
    assert_eq!(s, vec![None]);
}

#[test]
fn an_ava_folder_trains_with_its_challenges_as_themes_and_names_a_missing_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("AVA");
    std::fs::create_dir_all(root.join("images")).unwrap();
    // Eight real photos as AVA images; high votes for the first four, low for the rest; two challenges.
    let names = [
        "Dragonfly_by_Bolly.jpg",
        "Kleiber_by_Lukas_Baubkus.jpg",
        "sunset_by_Aitzol_Berasategi.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "hubble_deep_field.jpg",
        "rocket.jpg",
        "china.jpg",
        "Wine_by_Jakkub_Mede.jpg",
    ];
    let mut rows = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let id = 9000 + i;
        std::fs::copy(samples_dir().join(n), root.join("images").join(format!("{id}.jpg"))).unwrap();
        let votes = if i < 4 { "0 0 0 1 2 5 9 12 6 2" } else { "2 6 12 9 5 2 1 0 0 0" };
        rows.push(format!("{} {id} {votes} 0 0 {}", i + 1, 1 + i % 2));
    }
    rows.push("9 9999 0 0 1 2 3 4 3 2 1 0 0 0 1".into());
    std::fs::write(root.join("AVA.txt"), rows.join("\n") + "\n").unwrap();
    std::fs::write(root.join("challenges.txt"), "1 Macro\n2 Landscapes\n").unwrap();
    let ds = LabelledSet::Ava(root.clone()).load().unwrap();
    assert_eq!((ds.len(), ds.theme_names.clone()), (9, vec!["Macro".to_string(), "Landscapes".to_string()]));
    assert_eq!(TaskChoice::Binary.count(&ds), 9);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let r = request("AVA keeps", LabelledSet::Ava(root), TaskChoice::Binary, 2, &tmp.path().join("features"));
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("the AVA run failed: {e}"));
    assert_eq!(out.skipped.len(), 1, "{:?}", out.skipped);
    assert!(out.skipped[0].contains("9999.jpg"), "{:?}", out.skipped);
    assert_eq!(store.list().profiles.len(), 1);
}

#[test]
fn theme_emd_learns_theme_conditioned_distributions_from_a_csv_theme_column() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    // Two shoots (themes), scores 1..10 (a distribution is derived from each score).
    let mut rows = vec!["path,score,theme".to_string()];
    for (i, n) in SAMPLE_KEEPS.iter().chain(SAMPLE_REJECTS.iter()).enumerate() {
        std::fs::copy(samples_dir().join(n), data.join(n)).unwrap();
        let score = if i < 5 { 7.0 + (i % 3) as f64 } else { 2.0 + (i % 3) as f64 };
        rows.push(format!("{n},{score},{}", if i % 2 == 0 { "wedding" } else { "street" }));
    }
    let csv = data.join("labels.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let mut r = request("Themes", LabelledSet::Csv(csv), TaskChoice::Distribution, 1, &tmp.path().join("features"));
    r.procedure = Procedure::ThemeEmd;
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("the THEME-EMD run failed: {e}"));
    let c = out.profile.procedure.as_ref().unwrap();
    assert_eq!((c.info.procedure.as_str(), c.info.system.as_str()), ("theme-emd", "THEME-EMD"));
    assert_eq!(c.info.task, Task::Distribution { bins: 10 });
    let model = procedure::load(&out.profile, &WeightsFile::EfficientNetLite0.path(), &store.path_of(&out.file)).unwrap();
    assert_eq!(model.theme_names, vec!["street".to_string(), "wedding".to_string()], "the user's own themes");
    assert_eq!(model.spec.themes, 2);
    assert_eq!(out.profile.themes, model.theme_names, "the profile lists them for the loupe's theme selector");
    // The score is conditioned on the theme: the same photos score differently as "street" and as "wedding".
    let paths: Vec<PathBuf> = SAMPLE_KEEPS.iter().take(3).map(|n| data.join(n)).collect();
    let cfg = eval_cfg(&tmp.path().join("features"));
    let street = procedure::score(&model, &c.info, &paths, Some(0), &cfg, |_, _| {}).unwrap();
    let wedding = procedure::score(&model, &c.info, &paths, Some(1), &cfg, |_, _| {}).unwrap();
    assert!(street.iter().chain(&wedding).all(|v| v.is_some_and(|v| (0.0..=1.0).contains(&v))), "{street:?} {wedding:?}");
    assert_ne!(street, wedding, "theme-conditioned scores");
}

#[test]
fn a_small_data_profile_leaves_out_the_shipped_backbone_and_scores_as_before_it_was_saved() {
    use keepers::train::taste::ProcedureCheckpoint;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    let csv = csv_set(&data);
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let cache = tmp.path().join("features");
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let r = request("Small", LabelledSet::Csv(csv), TaskChoice::Binary, 2, &cache);
    let out = procedure::run(&r, &store, &AtomicBool::new(false), &AtomicBool::new(false), &mut |_| {}).unwrap();
    let c = out.profile.procedure.clone().unwrap();
    assert_eq!(c.info.procedure, "mp-ada");
    let shared = c.backbone.as_ref().expect("a small-data profile shares the frozen backbone");
    assert_eq!(shared.sha256, WeightsFile::EfficientNetLite0.expected_sha256());
    // Every left-out tensor is the backbone file's tensor of the same key, bit for bit.
    let file = candle_core::safetensors::load(&lite0, &candle_core::Device::Cpu).unwrap();
    eprintln!(
        "{} tensors left out, {} kept: {:?}",
        shared.tensors.len(),
        c.tensors.len(),
        c.tensors.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    assert_eq!(shared.tensors.len(), file.len() - 2, "the whole column but the classifier (_fc.weight, _fc.bias) is left out");
    for s in &shared.tensors {
        assert_eq!(s.name, format!("column.{}", s.key));
        assert!(!c.tensors.iter().any(|(n, _, _)| *n == s.name), "{} both kept and left out", s.name);
    }
    assert!(!c.tensors.is_empty() && c.tensors.iter().all(|(n, _, _)| !n.starts_with("column.")), "only the head is kept");

    // The pre-save model: the checkpoint with every tensor (the left-out ones are the file's).
    let mut full = c.tensors.clone();
    for s in &shared.tensors {
        let t = &file[&s.key];
        full.push((s.name.clone(), t.dims().to_vec(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
    }
    full.sort_by(|a, b| a.0.cmp(&b.0));
    let full = ProcedureCheckpoint { tensors: full, backbone: None, ..(*c).clone() };
    let photos: Vec<PathBuf> =
        [SAMPLE_KEEPS[0], SAMPLE_REJECTS[0], SAMPLE_KEEPS[1], SAMPLE_REJECTS[1]].iter().map(|n| data.join(n)).collect();
    let scores = |p: &TasteProfile, origin: &Path| {
        let m = procedure::load(p, &lite0, origin).unwrap_or_else(|e| panic!("{e}"));
        procedure::score(&m, &c.info, &photos, None, &eval_cfg(&cache), |_, _| {}).unwrap()
    };
    let old = TasteProfile { procedure: Some(std::sync::Arc::new(full)), ..(*out.profile).clone() };
    let before = scores(&old, Path::new("pre-save"));
    assert!(before.iter().all(|s| s.is_some_and(|v| (0.0..=1.0).contains(&v))), "{before:?}");

    // Sizes: a profile written before this change (every tensor) and the new one.
    let old_path = tmp.path().join("old.keepers-taste");
    old.save(&old_path).unwrap();
    let old_size = std::fs::metadata(&old_path).unwrap().len();
    let new_size = std::fs::metadata(store.path_of(&out.file)).unwrap().len();
    eprintln!("procedure profile: {old_size} bytes with the backbone, {new_size} bytes without");
    assert!(old_size > 13_000_000, "{old_size}");
    assert!(new_size < 100_000, "{new_size}");

    // The old full file still loads (no backbone record) and scores the same.
    let reloaded_old = TasteProfile::load(&old_path).unwrap();
    assert!(reloaded_old.procedure.as_ref().unwrap().backbone.is_none());
    assert_eq!(reloaded_old, old);
    assert_eq!(scores(&reloaded_old, &old_path), before);

    // The new file: in memory, after load, after export and import, the same scores.
    assert_eq!(scores(&out.profile, &store.path_of(&out.file)), before);
    let loaded = TasteProfile::load(&store.path_of(&out.file)).unwrap();
    assert_eq!(loaded, *out.profile, "the backbone record survives the file");
    assert_eq!(scores(&loaded, &store.path_of(&out.file)), before);
    let exported = tmp.path().join("exported.keepers-taste");
    store.export(&out.file, &exported).unwrap();
    let other = ProfileStore::new(tmp.path().join("other"));
    let (ifile, _) = other.import(&exported).unwrap();
    let imported = TasteProfile::load(&other.path_of(&ifile)).unwrap();
    assert_eq!(std::fs::metadata(other.path_of(&ifile)).unwrap().len(), new_size);
    assert_eq!(scores(&imported, &other.path_of(&ifile)), before);

    // Another backbone file (not the recorded sha256): refused, naming the profile file.
    let mut bytes = std::fs::read(&lite0).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let other_lite0 = tmp.path().join("other_lite0.safetensors");
    std::fs::write(&other_lite0, &bytes).unwrap();
    let origin = other.path_of(&ifile);
    let e = procedure::load(&imported, &other_lite0, &origin).err().expect("another backbone is refused");
    assert!(e.contains(&origin.display().to_string()) && e.contains(&shared.sha256), "{e}");
}

/// Sets the modification time of every file under `dir` to `age` ago.
fn age_files(dir: &Path, age: Duration) {
    let t = std::time::SystemTime::now() - age;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            age_files(&p, age);
        } else {
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
        }
    }
}

#[test]
fn the_service_removes_run_folders_a_crash_left_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::new(tmp.path().join("profiles"));
    let runs = store.dir().join(".runs");
    let (old, fresh) = (runs.join("run-old-1"), runs.join("run-fresh-2"));
    for d in [&old, &fresh, &old.join("sub"), &store.dir().join("not-a-run")] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in [&old, &fresh] {
        std::fs::write(d.join("best.json"), "{}").unwrap();
    }
    std::fs::write(old.join("sub").join("step.safetensors"), "x").unwrap();
    // Outside `.runs/`: an old folder and an old file that look like leftovers but must stay.
    std::fs::write(store.dir().join("not-a-run").join("x"), "x").unwrap();
    std::fs::write(store.dir().join("notes.txt"), "x").unwrap();
    let seven_hours = Duration::from_secs(7 * 3600);
    age_files(&old, seven_hours);
    age_files(&store.dir().join("not-a-run"), seven_hours);
    std::fs::File::options()
        .write(true)
        .open(store.dir().join("notes.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - seven_hours)
        .unwrap();
    // A folder with one fresh file among old ones is live.
    let mixed = runs.join("run-mixed-3");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::write(mixed.join("old"), "x").unwrap();
    age_files(&mixed, seven_hours);
    std::fs::write(mixed.join("new"), "x").unwrap();

    let taste = Taste::start(tmp.path().join("library.db"), store.clone(), None);
    let start = Instant::now();
    while old.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(taste);
    assert!(!old.exists(), "the stale run folder is removed when the service starts");
    assert!(fresh.join("best.json").exists() && mixed.join("old").exists(), "live run folders stay");
    assert!(store.dir().join("not-a-run/x").exists() && store.dir().join("notes.txt").exists(), "nothing outside .runs is touched");
    assert_eq!(entries(&runs), vec!["run-fresh-2", "run-mixed-3"]);

    // Directly: the store reports what it removed; with nothing stale, nothing.
    age_files(&fresh, seven_hours);
    let (removed, problems) = store.remove_stale_runs(keepers::train::profiles::STALE_RUN_AGE);
    assert_eq!((removed, problems.len()), (vec![fresh.clone()], 0));
    let (removed, _) = store.remove_stale_runs(keepers::train::profiles::STALE_RUN_AGE);
    assert!(removed.is_empty());
    assert_eq!(entries(&runs), vec!["run-mixed-3"]);
}
