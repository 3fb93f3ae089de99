//! The training procedures by name (issue 4, item 2) on real photos (LIVE Challenge, with
//! their MOS): each runs a few steps with a fixed seed and its training loss goes down, at
//! pixel level and as its small-data variant; ADAPT fine-tunes a trained model; a run stopped
//! mid-epoch (in process, and a `keepers train` child process killed after its first
//! checkpoint) resumes to bit-identical final weights, on Arch-1 and on Lite0 columns; a dataset with a truncated JPEG, a
//! missing file and a zero-byte file trains and names those three; an album's picks, rejects
//! and stars (XMP and library database) become samples.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use keepers::library::db::{Library, PhotoRecord};
use keepers::library::xmp::{Decision, Pick, write_decision};
use keepers::model::column::Arch1Config;
use keepers::model::systems::{ColumnKind, SystemId};
use keepers::model::weights::WeightsFile;
use keepers::train::data::csv::{CsvOptions, load};
use keepers::train::data::{Dataset, album};
use keepers::train::features::FeaturePlan;
use keepers::train::procedures::{self, Procedure, RunSummary, Task, TrainConfig};
use keepers::train::schedule::Schedule;

fn livec(n: usize) -> Dataset {
    let dir = common::livec_dir();
    let d = load(&dir.join("labels.csv"), &CsvOptions { image_root: Some(dir.join("images")), ..Default::default() }).unwrap();
    Dataset { samples: d.samples[..n].to_vec(), ..d }
}

fn empty(d: &Dataset) -> Dataset {
    Dataset { samples: Vec::new(), ..d.clone() }
}

fn config(p: Procedure, task: Task, column: ColumnKind) -> TrainConfig {
    let mut c = TrainConfig::new(p, task, WeightsFile::EfficientNetLite0.path());
    c.column = Some(column);
    c.seed = 11;
    c.threads = 2;
    c.batch_size = Some(4);
    c.epochs = Some(4);
    c.pretrain_epochs = Some(1);
    c.test_views = 2;
    c.test_patches = 2;
    c.patches = Some(2);
    c.max_side = 192;
    c.feature_plan = FeaturePlan { native: 6, arp: 4, seed: 11 };
    c
}

fn train(c: &TrainConfig, train: &Dataset, val: &Dataset, out: &Path) -> RunSummary {
    procedures::train(c, train, val, out, &mut |_| {}, &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{}: {e}", c.procedure))
}

/// The final stage's training loss went down: the mean epoch loss of the second half of the
/// epochs is below that of the first half (single epochs are noisy: random patches, dropout).
fn assert_loss_down(what: &str, s: &RunSummary) {
    assert!(!s.stopped, "{what}: stopped");
    let st = s.last_stage().unwrap();
    let l = &st.epoch_losses;
    eprintln!("{what}: {} epoch losses {l:?}", st.system);
    assert!(l.len() >= 2 && l.iter().all(|x| x.is_finite()), "{what}: {l:?}");
    let h = l.len() / 2;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(&l[..h]), mean(&l[l.len() - h..]));
    assert!(b < a, "{what}: training loss did not go down ({a:.4} -> {b:.4}): {l:?}");
}

#[test]
fn every_procedure_is_selectable_by_name_with_its_papers_recipe() {
    for p in Procedure::ALL {
        assert_eq!(Procedure::parse(p.name()), Some(p));
        assert_eq!(Procedure::parse(&p.name().to_uppercase().replace('-', "_")), Some(p));
        assert_eq!(p.systems().is_empty(), p == Procedure::Adapt, "{p}");
    }
    for id in SystemId::ALL {
        assert!(Procedure::for_system(id).systems().contains(&id), "{id}");
    }
    assert_eq!(Procedure::parse("nope"), None);
    let (scnn, dma, mp, theme, arp) = (
        Procedure::Scnn.recipe(),
        Procedure::Dma.recipe(),
        Procedure::MpAda.recipe(),
        Procedure::ThemeEmd.recipe(),
        Procedure::ArpMpemdAda.recipe(),
    );
    // Paper 002: lr 0.001, biases 0.002, momentum 0.9.
    assert_eq!((scnn.lr, scnn.bias_lr_mult), (1e-3, 2.0));
    assert!(matches!(scnn.optimizer, procedures::OptimKind::Sgd { momentum: 0.9, nesterov: false }));
    // Paper 000: weight decay 1e-5, x0.1 on plateau.
    assert_eq!(dma.weight_decay, 1e-5);
    assert!(matches!(dma.schedule, Schedule::Plateau { factor: 0.1, .. }));
    // Paper 001: Nesterov, wd 1e-4, halved every 20 of 32 epochs.
    assert!(matches!(mp.optimizer, procedures::OptimKind::Sgd { nesterov: true, .. }));
    assert_eq!((mp.weight_decay, mp.paper_epochs), (1e-4, 32));
    assert_eq!(mp.schedule_for(8), Schedule::Step { every: 5, factor: 0.5 });
    // Paper 003: FC layers 10x, halved every 10 of 30 epochs; paper 004: x0.95 every 10.
    assert_eq!(theme.head_lr_mult, 10.0);
    assert_eq!(theme.schedule_for(3), Schedule::Step { every: 1, factor: 0.5 });
    assert_eq!(arp.schedule, Schedule::Step { every: 10, factor: 0.95 });
    // Wrong pairings are refused with a clear message.
    let mut c = config(Procedure::MpAda, Task::Quality, ColumnKind::Lite0);
    c.system = Some(SystemId::MpAvg);
    let d = livec(2);
    let out = tempfile::tempdir().unwrap();
    let e = procedures::train(&c, &d, &empty(&d), out.path(), &mut |_| {}, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("mp-ada trains MP-ada, not MP-avg"), "{e}");
    let c = config(Procedure::ArpMpemdAda, Task::Quality, ColumnKind::Lite0);
    let e = procedures::train(&c, &d, &empty(&d), out.path(), &mut |_| {}, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("--task distribution"), "{e}");
    let c = config(Procedure::Adapt, Task::Quality, ColumnKind::Lite0);
    let e = procedures::train(&c, &d, &empty(&d), out.path(), &mut |_| {}, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("--init"), "{e}");
}

#[test]
fn arch1_procedures_train_and_their_loss_goes_down() {
    // Papers 002 and 000 train the Arch-1 column from scratch (the reduced arch1-small here).
    let d = livec(4);
    let small = ColumnKind::Arch1(Arch1Config::small());
    for (p, sys) in [
        (Procedure::Scnn, SystemId::Scnn),
        (Procedure::Dcnn, SystemId::Dcnn),
        (Procedure::Rdcnn, SystemId::RdcnnStyle),
        (Procedure::Dma, SystemId::DmaStat),
        (Procedure::Dma, SystemId::DmaFc),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut c = config(p, Task::Quality, small.clone());
        c.system = Some(sys);
        c.epochs = Some(6);
        let s = train(&c, &d, &empty(&d), out.path());
        assert_loss_down(p.name(), &s);
        let two_stage = matches!(p, Procedure::Rdcnn | Procedure::Dma);
        assert_eq!(s.stages.len(), 1 + two_stage as usize, "{p}");
        assert!(out.path().join("best.json").is_file() && out.path().join("last.json").is_file());
        if two_stage {
            assert!(s.stages[0].dir.join("best.json").is_file(), "{p}: stage 1 kept");
        }
    }
}

#[test]
fn imagenet_procedures_fine_tune_and_their_loss_goes_down() {
    // Three photos, two patches each, four steps: the ImageNet backbone trains at pixel level.
    let d = livec(3);
    let dist = Task::Distribution { bins: 10 };
    for (p, task) in [
        (Procedure::MpAvg, Task::Quality),
        (Procedure::MpMin, Task::Quality),
        (Procedure::MpAda, Task::Quality),
        (Procedure::ThemeEmd, dist.clone()),
        (Procedure::ArpMpemdAvg, dist.clone()),
        (Procedure::ArpMpemdAda, dist.clone()),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut c = config(p, task, ColumnKind::Lite0);
        c.epochs = Some(4);
        c.lr = Some(1e-2);
        let s = train(&c, &d, &empty(&d), out.path());
        assert_loss_down(p.name(), &s);
    }
}

#[test]
fn small_data_variants_train_and_their_loss_goes_down() {
    let d = livec(6);
    let dist = Task::Distribution { bins: 10 };
    for (p, sys, task) in [
        (Procedure::Scnn, SystemId::Scnn, Task::Quality),
        (Procedure::Dcnn, SystemId::Dcnn, Task::Binary),
        (Procedure::Rdcnn, SystemId::RdcnnSemantic, Task::Quality),
        (Procedure::Dma, SystemId::DmaFc, Task::Quality),
        (Procedure::MpMin, SystemId::MpMin, Task::Quality),
        (Procedure::MpAda, SystemId::MpAda, Task::Quality),
        (Procedure::ThemeEmd, SystemId::ThemeEmd, dist.clone()),
        (Procedure::ArpMpemdAda, SystemId::ArpMpemd, dist.clone()),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut c = config(p, task, ColumnKind::Lite0);
        c.system = Some(sys);
        c.small_data = true;
        c.batch_size = Some(6);
        c.epochs = Some(if matches!(sys, SystemId::RdcnnSemantic | SystemId::ThemeEmd) { 3 } else { 8 });
        let s = train(&c, &d, &empty(&d), out.path());
        assert_loss_down(&format!("{p} small-data"), &s);
    }
}

#[test]
fn adapt_fine_tunes_a_trained_model_on_a_subset() {
    let d = livec(6);
    let base = tempfile::tempdir().unwrap();
    let mut c = config(Procedure::Scnn, Task::Quality, ColumnKind::Arch1(Arch1Config::small()));
    c.epochs = Some(2);
    train(&c, &d, &empty(&d), base.path());
    let subset = Dataset { samples: d.samples[..3].to_vec(), ..d.clone() };
    let out = tempfile::tempdir().unwrap();
    let mut a = config(Procedure::Adapt, Task::Binary, ColumnKind::Lite0);
    a.init = Some(base.path().join("best"));
    a.epochs = Some(5);
    a.batch_size = Some(3);
    a.lr = Some(1e-3);
    let s = train(&a, &subset, &empty(&subset), out.path());
    assert_loss_down("adapt", &s);
    // It kept the trained model's system and task.
    let m = procedures::load_model(&out.path().join("best"), &WeightsFile::EfficientNetLite0.path(), None).unwrap();
    assert_eq!((m.spec.system.as_str(), m.spec.column.as_str(), m.spec.task.clone()), ("SCNN", "arch1-small", Task::Quality));
    assert_eq!(m.meta.procedure, "adapt");
}

fn tensors(dir: &Path) -> HashMap<String, Tensor> {
    let meta = keepers::train::checkpoint::load_meta(dir, "last").unwrap().unwrap();
    candle_core::safetensors::load(dir.join(meta.weights_file), &Device::Cpu).unwrap()
}

fn assert_same_bits(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    assert_eq!(a.len(), b.len());
    for (k, t) in a {
        let x: Vec<u32> = t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        let y: Vec<u32> = b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        assert!(x == y, "{k} differs after resuming");
    }
}

#[test]
fn a_two_stage_run_stopped_mid_epoch_resumes_bit_identically() {
    // DMA-fc on arch1-small: two stages, dropout in the columns and the aggregation layer.
    let d = livec(6);
    let (tr, val) = d.split(0.34, 5);
    let mut c = config(Procedure::Dma, Task::Quality, ColumnKind::Arch1(Arch1Config::small()));
    c.epochs = Some(3);
    c.batch_size = Some(2);
    let straight = tempfile::tempdir().unwrap();
    train(&c, &tr, &val, straight.path());
    let cut = tempfile::tempdir().unwrap();
    let mut first = c.clone();
    first.max_steps = Some(3); // stage 2, epoch 1, batch 1 of 2
    let s = train(&first, &tr, &val, cut.path());
    assert!(s.stopped && s.stages.len() == 2);
    let m = keepers::train::checkpoint::load_meta(cut.path(), "last").unwrap().unwrap();
    assert_eq!((m.epoch, m.batches_done, m.global_step), (1, 1, 3));
    let mut resume = c.clone();
    resume.resume = true;
    let s = train(&resume, &tr, &val, cut.path());
    assert!(!s.stopped);
    assert_same_bits(&tensors(straight.path()), &tensors(cut.path()));
    // Training again into a folder that holds a run without --resume is refused.
    let e = procedures::train(&c, &tr, &val, cut.path(), &mut |_| {}, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("already holds a run"), "{e}");
}

#[test]
fn lite0_training_is_bit_identical_from_run_to_run_and_after_a_resume() {
    // MP-ada on the ImageNet Lite0 column at pixel level: the depthwise weight gradient is
    // summed in a fixed order (src/model/depthwise.rs), so two runs with one seed end with the
    // same bits, and so does a run stopped after its second step and resumed.
    let d = livec(4);
    let (tr, val) = d.split(0.25, 3);
    let mut c = config(Procedure::MpAda, Task::Quality, ColumnKind::Lite0);
    c.epochs = Some(2);
    c.batch_size = Some(2);
    c.max_side = 160;
    let (one, two, cut) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(&c, &tr, &val, one.path());
    train(&c, &tr, &val, two.path());
    assert_same_bits(&tensors(one.path()), &tensors(two.path()));
    let mut first = c.clone();
    first.max_steps = Some(2);
    assert!(train(&first, &tr, &val, cut.path()).stopped);
    let mut resume = c.clone();
    resume.resume = true;
    assert!(!train(&resume, &tr, &val, cut.path()).stopped);
    assert_same_bits(&tensors(one.path()), &tensors(cut.path()));
}

fn write_csv(dir: &Path, rows: &[(String, f64)]) -> PathBuf {
    let p = dir.join("labels.csv");
    let mut s = String::from("image,mos\n");
    for (f, m) in rows {
        s.push_str(&format!("{f},{m}\n"));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// A `keepers train` child process (DCNN on Arch-1 small columns, the fastest pixel-level
/// run) killed after its first checkpoint resumes to the bits of an uninterrupted run; Lite0
/// runs are bit-identical too (the test above).
#[test]
fn killed_train_process_resumes_to_the_same_weights() {
    let d = livec(8);
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, f64)> = d.samples.iter().map(|s| (s.path.display().to_string(), s.target.score.unwrap())).collect();
    let csv = write_csv(dir.path(), &rows);
    let bin = env!("CARGO_BIN_EXE_keepers");
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--system",
            "DCNN",
            "--column",
            "arch1-small",
            "--task",
            "quality",
            "--epochs",
            "3",
            "--batch",
            "2",
            "--seed",
            "9",
            "--checkpoint-every",
            "1",
            "--val-fraction",
            "0.25",
            "--test-views",
            "1",
            "--threads",
            "2",
            "--data",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([csv.display().to_string(), "--out".into(), out.display().to_string()])
        .collect()
    };
    let straight = dir.path().join("straight");
    let st = std::process::Command::new(bin).args(args(&straight)).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(stderr.contains("loss") && stderr.contains("ETA") && stderr.contains("val srcc"), "{stderr}");

    let killed = dir.path().join("killed");
    let mut child = std::process::Command::new(bin)
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !killed.join("last.json").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let m = keepers::train::checkpoint::load_meta(&killed, "last").unwrap().unwrap();
    assert!(m.epoch < 3 && m.batches_done >= 1, "killed mid-epoch, not at epoch {} batch {}", m.epoch, m.batches_done);
    let mut a = args(&killed);
    a.push("--resume".into());
    let r = std::process::Command::new(bin).args(&a).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_bits(&tensors(&straight), &tensors(&killed));

    // Ctrl-C (SIGINT): the run stops after the step in progress, saves its checkpoint, says how
    // to resume and exits with 130; the resumed run ends with the same bits.
    let stopped = dir.path().join("ctrl-c");
    let child = std::process::Command::new(bin)
        .args(args(&stopped))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !stopped.join("last.json").exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(130) {
        assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
        let m = keepers::train::checkpoint::load_meta(&stopped, "last").unwrap().unwrap();
        assert!(m.global_step >= 1, "{m:?}");
    } else {
        // The signal can only come too late if the run had already finished.
        assert!(out.status.success() && !err.contains("interrupted"), "{:?}: {err}", out.status);
    }
    let mut a = args(&stopped);
    a.push("--resume".into());
    let r = std::process::Command::new(bin).args(&a).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_bits(&tensors(&straight), &tensors(&stopped));

    // keepers eval prints the metrics table of the best checkpoint.
    let e = std::process::Command::new(bin)
        .args([
            "eval",
            "--checkpoint",
            &killed.join("best").display().to_string(),
            "--data",
            &csv.display().to_string(),
            "--test-views",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&e.stdout);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    for k in ["srcc", "plcc", "mse", "mae", "photos"] {
        assert!(text.contains(k), "{k} missing in\n{text}");
    }

    // keepers predict --checkpoint prints the trained model's score per photo (JSON Lines), the
    // score the library's prediction gives on the same photos, in the CSV's units.
    let photos: Vec<PathBuf> = d.samples.iter().take(2).map(|s| s.path.clone()).collect();
    let p = std::process::Command::new(bin)
        .args(["predict", "--format", "json", "--checkpoint", &killed.join("best").display().to_string()])
        .args(&photos)
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&p.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let model = procedures::load_model(&killed.join("best"), &lite0, None).unwrap();
    let cfg = procedures::EvalConfig { threads: 2, batch: 4, seed: 0, lite0, feature_cache: None };
    let (preds, _) = procedures::predict_photos(&model, &photos, None, &cfg, |_, _| {}).unwrap();
    assert_eq!(lines.len(), 2);
    for (l, pr) in lines.iter().zip(preds) {
        assert_eq!(l["checkpoint"]["system"], "DCNN", "{l}");
        let Some(keepers::model::heads::Prediction::Quality { score }) = pr else { panic!("{pr:?}") };
        let want = model.std.as_ref().unwrap().inverse(score as f64);
        let got = l["checkpoint"]["prediction"]["score"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "{got} vs {want}");
        assert!((0.0..=100.0).contains(&got), "a MOS-scale score: {got}");
    }
}

#[test]
fn broken_images_are_skipped_named_and_training_goes_on() {
    let d = livec(4);
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&d.samples[0].path).unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let zero = dir.path().join("zero.jpg");
    std::fs::write(&zero, b"").unwrap();
    let missing = dir.path().join("missing.jpg");
    let mut rows: Vec<(String, f64)> = d.samples.iter().map(|s| (s.path.display().to_string(), s.target.score.unwrap())).collect();
    for p in [&truncated, &missing, &zero] {
        rows.push((p.display().to_string(), 50.0));
    }
    let ds = load(&write_csv(dir.path(), &rows), &CsvOptions::default()).unwrap();
    assert_eq!(ds.len(), 7);
    let out = tempfile::tempdir().unwrap();
    let mut c = config(Procedure::Scnn, Task::Quality, ColumnKind::Arch1(Arch1Config::small()));
    c.epochs = Some(2);
    let s = train(&c, &ds, &empty(&ds), out.path());
    let named: Vec<PathBuf> = s.skipped.paths().into_iter().map(Path::to_path_buf).collect();
    assert_eq!(named.len(), 3, "{}", s.skipped);
    for p in [&truncated, &missing, &zero] {
        assert!(named.contains(p), "{} not named in: {}", p.display(), s.skipped);
    }
    let text = s.skipped.to_string();
    assert!(text.contains("truncated JPEG") && text.contains("3 image(s) skipped"), "{text}");
    // Training went on with the four good photos.
    let st = s.last_stage().unwrap();
    assert_eq!((st.epoch_losses.len(), st.steps), (2, 2), "one batch of 4 per epoch");
}

#[test]
fn album_decisions_become_samples_from_xmp_and_from_the_library() {
    let d = livec(5);
    let dir = tempfile::tempdir().unwrap();
    let photos: Vec<PathBuf> = d
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.path().join(format!("p{i}.jpg"));
            std::fs::copy(&s.path, &p).unwrap();
            p
        })
        .collect();
    let picked = Decision { pick: Some(Pick::Picked), ..Default::default() };
    let rejected = Decision { rating: Some(-1), ..Default::default() };
    let starred = Decision { rating: Some(4), ..Default::default() };
    let picked_starred = Decision { rating: Some(2), pick: Some(Pick::Picked), ..Default::default() };
    let decisions = [Some(&picked), Some(&rejected), Some(&starred), Some(&picked_starred), None];
    for (p, dec) in photos.iter().zip(decisions) {
        if let Some(dec) = dec {
            write_decision(p, dec).unwrap();
        }
    }
    let (ds, report) = album::from_xmp_dir(dir.path()).unwrap();
    eprintln!("{report}");
    assert_eq!((report.photos, report.with_decision, report.picks, report.rejects, report.starred), (5, 4, 2, 1, 2));
    assert_eq!(report.without_decision, vec![photos[4].clone()]);
    let by_name: HashMap<String, (Option<usize>, Option<f64>)> =
        ds.samples.iter().map(|s| (s.key.clone(), (s.target.label, s.target.score))).collect();
    assert_eq!(by_name["p0.jpg"], (Some(1), None));
    assert_eq!(by_name["p1.jpg"], (Some(0), None));
    assert_eq!(by_name["p2.jpg"], (None, Some(4.0)));
    assert_eq!(by_name["p3.jpg"], (Some(1), Some(2.0)));
    assert_eq!(ds.class_names, ["reject", "keep"]);

    // The same decisions through the library database.
    let (mut lib, _) = Library::open(&dir.path().join("lib.sqlite")).unwrap();
    for (p, dec) in photos.iter().zip(decisions) {
        let rec = PhotoRecord { path: p.clone(), size: 1, mtime_ns: 1, ..Default::default() };
        let (id, _) = lib.upsert_photo(&rec).unwrap();
        if let Some(dec) = dec {
            lib.set_decision(id, dec, None).unwrap();
        }
    }
    let (ds2, report2) = album::from_library(&lib, dir.path()).unwrap();
    assert_eq!((report2.photos, report2.with_decision, report2.without_decision.clone()), (5, 4, vec![photos[4].clone()]));
    let mut a: Vec<_> = ds.samples.iter().map(|s| (s.key.clone(), s.target.clone())).collect();
    let mut b: Vec<_> = ds2.samples.iter().map(|s| (s.key.clone(), s.target.clone())).collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a, b);

    // A keep/reject model trains on the album (the photos with a pick or reject).
    let out = tempfile::tempdir().unwrap();
    let mut c = config(Procedure::Scnn, Task::Binary, ColumnKind::Arch1(Arch1Config::small()));
    c.epochs = Some(2);
    let s = train(&c, &ds, &empty(&ds), out.path());
    assert_eq!(s.without_target, 1, "the starred-only photo has no keep label");
    assert_eq!(s.last_stage().unwrap().epoch_losses.len(), 2);
}
