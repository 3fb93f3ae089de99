//! Checkpoints: a small model trained on real LIVE Challenge photos through the pipeline, with
//! AdamW, parameter groups (frozen backbone for the first epoch, head at 10x), gradient
//! clipping and a plateau schedule, is interrupted mid-epoch and resumed from disk; the
//! result must be bit-identical to the uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use keepers::model::views::random_patches;
use keepers::rng::SeededRng;
use keepers::train::checkpoint::{self, CheckpointMeta, RunDir};
use keepers::train::data::csv::{CsvOptions, load};
use keepers::train::data::{Dataset, Sample};
use keepers::train::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, clip_grad_norm, named_vars};
use keepers::train::pipeline::{Pipeline, PipelineConfig};
use keepers::train::schedule::{LrScheduler, Schedule};

const SEED: u64 = 2024;
const EPOCHS: u64 = 3;

fn dataset() -> Dataset {
    let livec = common::livec_dir();
    let d = load(&livec.join("labels.csv"), &CsvOptions { image_root: Some(livec.join("images")), ..Default::default() }).unwrap();
    Dataset { samples: d.samples[..8].to_vec(), ..d }
}

struct Model {
    vm: VarMap,
    l1: candle_nn::Linear,
    l2: candle_nn::Linear,
}

/// 12 inputs (mean RGB of 4 random patches) -> 8 -> 1, weights from a seeded generator.
fn model() -> Model {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let l1 = candle_nn::linear(12, 8, vb.pp("backbone")).unwrap();
    let l2 = candle_nn::linear(8, 1, vb.pp("head")).unwrap();
    let mut rng = SeededRng::new(SEED);
    for (_, v) in named_vars(&vm) {
        let vals: Vec<f32> = (0..v.elem_count()).map(|_| (rng.uniform() * 0.6 - 0.3) as f32).collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    Model { vm, l1, l2 }
}

fn features(_: &Sample, img: image::RgbImage, rng: &mut SeededRng) -> anyhow::Result<Vec<f32>> {
    Ok(random_patches(&img, 32, 4, rng)
        .iter()
        .flat_map(|p| {
            let n = (p.image.width() * p.image.height()) as f32;
            (0..3).map(move |c| p.image.pixels().map(|px| px[c] as f32).sum::<f32>() / n / 255.0)
        })
        .collect())
}

enum Resume {
    /// Everything from the checkpoint.
    Full,
    /// Weights only, a fresh optimiser (must give a different result).
    WeightsOnly,
}

/// Trains (or resumes) in `dir`; returns `None` when "killed" after batch `kill.1` of epoch `kill.0`.
fn train(dir: &Path, kill: Option<(u64, usize)>, resume: Resume) -> Option<Vec<Vec<f32>>> {
    let data = dataset();
    let samples = Arc::new(data.samples.clone());
    let m = model();
    let vars = named_vars(&m.vm);
    let groups = vec![
        ParamGroup::from_varmap("backbone", &m.vm, |n| n.starts_with("backbone.")),
        ParamGroup::from_varmap("head", &m.vm, |n| n.starts_with("head.")).lr_mult(10.0),
    ];
    let mut opt = AdamW::new(groups, AdamWConfig { lr: 1e-2, weight_decay: 1e-3, ..Default::default() }).unwrap();
    let run = RunDir::new(dir);
    let mut meta = CheckpointMeta::new("test-mlp", "head-then-unfreeze", "score", &data.fingerprint(), SEED);
    let mut sched = LrScheduler::new(Schedule::plateau(0.5, 0), 1e-2);
    let resumed = match resume {
        Resume::Full => run.resume(&vars, Some(&mut opt)).unwrap(),
        Resume::WeightsOnly => run.resume(&vars, None).unwrap(),
    };
    if let Some(mm) = resumed {
        assert_eq!(mm.dataset_fingerprint, data.fingerprint());
        sched = mm.scheduler.clone().unwrap();
        meta = mm;
    }
    while meta.epoch < EPOCHS {
        opt.set_frozen("backbone", meta.epoch == 0).unwrap();
        opt.set_base_lr(sched.lr());
        let cfg = PipelineConfig {
            batch_size: 3,
            seed: SEED,
            epoch: meta.epoch,
            start_batch: meta.batches_done,
            threads: 2,
            prefetch: 1,
            shuffle: true,
        };
        for batch in Pipeline::start(samples.clone(), &cfg, features).unwrap() {
            let x: Vec<f32> = batch.items.iter().flat_map(|i| i.data.clone()).collect();
            let y: Vec<f32> = batch.items.iter().map(|i| (samples[i.index].target.score.unwrap() / 100.0) as f32).collect();
            let n = y.len();
            let x = Tensor::from_vec(x, (n, 12), &Device::Cpu).unwrap();
            let y = Tensor::from_vec(y, (n, 1), &Device::Cpu).unwrap();
            let pred = m.l2.forward(&m.l1.forward(&x).unwrap().relu().unwrap()).unwrap();
            let loss = (pred - y).unwrap().sqr().unwrap().mean_all().unwrap();
            let mut grads = loss.backward().unwrap();
            clip_grad_norm(&mut grads, &opt.trainable_vars(), 0.5).unwrap();
            opt.step(&grads).unwrap();
            meta.global_step += 1;
            meta.batches_done = batch.number + 1;
            let sum = meta.extra.get("loss_sum").and_then(|v| v.as_f64()).unwrap_or(0.0) + loss.to_scalar::<f32>().unwrap() as f64;
            meta.extra = serde_json::json!({ "loss_sum": sum });
            meta.scheduler = Some(sched.clone());
            run.save_last(&vars, Some(&opt), &meta).unwrap();
            if kill == Some((meta.epoch, batch.number)) {
                return None; // everything in memory is lost
            }
        }
        let epoch_loss = meta.extra["loss_sum"].as_f64().unwrap();
        sched.end_epoch(Some(epoch_loss)).unwrap();
        meta.metrics = BTreeMap::from([("train_loss".to_string(), epoch_loss)]);
        run.update_best(&vars, &mut meta, "train_loss", epoch_loss, false).unwrap();
        meta.epoch += 1;
        meta.batches_done = 0;
        meta.extra = serde_json::json!({ "loss_sum": 0.0 });
        meta.scheduler = Some(sched.clone());
        run.save_last(&vars, Some(&opt), &meta).unwrap();
    }
    Some(vars.iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect())
}

fn bits(w: &[Vec<f32>]) -> Vec<u32> {
    w.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn interrupted_run_resumes_bit_identically() {
    assert_eq!(dataset().len(), 8);
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train(straight_dir.path(), None, Resume::Full).unwrap();
    let start = model();
    assert_ne!(
        bits(&straight),
        bits(&named_vars(&start.vm).iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect::<Vec<_>>())
    );

    for kill in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        let dir = tempfile::tempdir().unwrap();
        assert!(train(dir.path(), Some(kill), Resume::Full).is_none());
        let m = checkpoint::load_meta(dir.path(), "last").unwrap().unwrap();
        assert_eq!((m.epoch, m.batches_done), (kill.0, kill.1 + 1));
        // A crash while the next checkpoint was being written leaves a temporary JSON and
        // orphaned tensor files; the last complete checkpoint is still what is loaded.
        std::fs::write(dir.path().join(".last.json.tmp"), "{ half written").unwrap();
        std::fs::write(dir.path().join("last.s999-dead.safetensors"), b"partial").unwrap();
        let resumed = train(dir.path(), None, Resume::Full).unwrap();
        assert_eq!(bits(&resumed), bits(&straight), "killed after epoch {} batch {}", kill.0, kill.1);
        assert!(!dir.path().join("last.s999-dead.safetensors").exists(), "stale tensor files are cleaned up");
        let (a, b) = (
            checkpoint::load_meta(dir.path(), "best").unwrap().unwrap(),
            checkpoint::load_meta(straight_dir.path(), "best").unwrap().unwrap(),
        );
        assert_eq!((a.best, a.epoch, a.global_step, a.metrics), (b.best, b.epoch, b.global_step, b.metrics));
    }
    // Without the optimiser state the continuation is not the same (the test above can fail).
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), Some((1, 1)), Resume::Full);
    let weights_only = train(dir.path(), None, Resume::WeightsOnly).unwrap();
    assert_ne!(bits(&weights_only), bits(&straight));
}

#[test]
fn best_is_kept_by_validation_metric() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let v = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
    let vars = vec![("w".to_string(), v.clone())];
    let mut meta = CheckpointMeta::new("SCNN", "p", "binary", "f", 1);
    for (epoch, (acc, improves)) in [(0.6, true), (0.7, true), (0.65, false), (0.7, false), (0.8, true)].into_iter().enumerate() {
        meta.epoch = epoch as u64;
        v.set(&Tensor::new(&[epoch as f32, acc as f32], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(run.update_best(&vars, &mut meta, "val_accuracy", acc, true).unwrap(), improves, "epoch {epoch}");
        run.save_last(&vars, None, &meta).unwrap();
    }
    let w = Var::new(&[0f32, 0.0], &Device::Cpu).unwrap();
    let best = run.load_best(&[("w".to_string(), w.clone())]).unwrap().unwrap();
    assert_eq!(best.best.as_ref().unwrap().epoch, 4);
    assert_eq!(w.as_tensor().to_vec1::<f32>().unwrap(), [4.0, 0.8]);
    // Only the current tensor files remain.
    let mut files: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().filter(|f| f.ends_with(".safetensors")).all(|f| f.starts_with("best.s") || f.starts_with("last.s")));
}

#[test]
fn metadata_round_trip_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = Var::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let b = Var::new(&[0.5f64], &Device::Cpu).unwrap();
    let vars = vec![("fc.weight".to_string(), v.clone()), ("fc.bias".to_string(), b.clone())];
    let mut meta = CheckpointMeta::new("DMA-stat", "two-stage", "binary", "abc123", 42);
    meta.epoch = 3;
    meta.batches_done = 17;
    meta.global_step = 1234;
    meta.metrics.insert("val_accuracy".into(), 0.7512);
    meta.scheduler = Some(LrScheduler::new(Schedule::Step { every: 10, factor: 0.5 }, 1e-3));
    meta.extra = serde_json::json!({ "phase": "unfrozen" });
    let opt = AdamW::new(vec![ParamGroup::new("all", vars.clone())], AdamWConfig::default()).unwrap();
    let json = checkpoint::save(dir.path(), "last", &vars, Some(&opt), &meta).unwrap();
    let text = std::fs::read_to_string(&json).unwrap();
    for key in [
        "\"system\": \"DMA-stat\"",
        "\"procedure\": \"two-stage\"",
        "\"dataset_fingerprint\": \"abc123\"",
        "\"seed\": 42",
        "\"git_revision\"",
        "\"kind\": \"adamw\"",
    ] {
        assert!(text.contains(key), "{key} missing in\n{text}");
    }
    let back = checkpoint::load_meta(dir.path(), "last").unwrap().unwrap();
    assert_eq!(
        (back.epoch, back.batches_done, back.global_step, &back.metrics, &back.scheduler, &back.extra),
        (3, 17, 1234, &meta.metrics, &meta.scheduler, &meta.extra)
    );
    assert!(back.git_revision.is_some(), "the tests run inside a git checkout");

    // Loading into a model that does not match names the file and the problem.
    let err = |vars: &[(String, Var)]| checkpoint::load(dir.path(), "last", vars, None).unwrap_err().to_string();
    let e = err(&[("fc.weight".into(), Var::zeros((2, 3), DType::F64, &Device::Cpu).unwrap()), ("fc.bias".into(), b.clone())]);
    assert!(e.contains(".safetensors") && e.contains("fc.weight") && e.contains("[2, 3]"), "{e}");
    let e = err(&[("fc.weight".into(), v.clone()), ("fc.bias".into(), b.clone()), ("fc2.weight".into(), b.clone())]);
    assert!(e.contains("has no tensor for 1 variable(s): fc2.weight"), "{e}");
    let e = err(&[("fc.weight".into(), v.clone())]);
    assert!(e.contains("tensors the model lacks: fc.bias"), "{e}");
    // A corrupted tensor file is detected.
    let wfile = dir.path().join(&back.weights_file);
    let mut bytes = std::fs::read(&wfile).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&wfile, bytes).unwrap();
    let e = err(&vars);
    assert!(e.contains("sha256") && e.contains(&back.weights_file), "{e}");
    // No checkpoint: None, not an error.
    assert!(checkpoint::load(&PathBuf::from(dir.path()).join("nothing"), "last", &vars, None).unwrap().is_none());
    std::fs::write(dir.path().join("bad.json"), "not json").unwrap();
    let e = checkpoint::load_meta(dir.path(), "bad").unwrap_err().to_string();
    assert!(e.contains("bad.json: not a Keepers checkpoint"), "{e}");
}
