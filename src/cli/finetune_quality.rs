//! `keepers finetune-quality`: does partial fine-tuning of the Lite0 column help the quality
//! model? Cross-validation only (it writes a JSON of figures, no model): on the folds of
//! `keepers train-quality` (same seed, same photos), each outer training set
//! 1. fits the **frozen probe**: ridge (penalty by inner CV) on the mean of the photo's grid
//!    patches' pooled 1280-d Lite0 features, the column as shipped;
//! 2. starts the head from that fit and **fine-tunes** blocks `--from-block..16` and the head
//!    convolution with it ([`crate::train::tail_finetune`]) for `--epochs` epochs, once per
//!    learning rate given;
//!
//! and scores its held-out photos with both (the app's grid, the same patches). The epoch count
//! and rates are fixed before the run; the held-out SRCC after every epoch is printed and saved
//! as a curve, which is an after-the-fact view, not a choice.
//!
//! Each patch's activation entering block `from` is computed once and cached (keyed by path,
//! size, mtime, grid, block and the Lite0 sha256).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};

use super::progress;
use super::train_quality::cached_grid_tensor;
use crate::model::weights::{self, WeightsFile};
use crate::train::cv::{fold_ids, mean_std};
use crate::train::metrics::{plcc, srcc};
use crate::train::ridge;
use crate::train::tail_finetune::{TailConfig, TailNet, fine_tune};

pub struct FinetuneArgs<'a> {
    pub data: &'a Path,
    pub images: Option<&'a Path>,
    pub folds: usize,
    pub seed: u64,
    pub grid_max: u32,
    pub lambdas: &'a [f64],
    pub inner_folds: usize,
    pub lrs: &'a [f64],
    pub tail: TailConfig,
    pub cache: Option<PathBuf>,
    pub out: Option<&'a Path>,
}

/// Activations entering block `from` of every grid patch of `path`, cached.
fn cached_inputs(path: &Path, grid_max: u32, tail: &TailNet, from: usize, sha: &str, cache: &Path) -> anyhow::Result<Tensor> {
    cached_grid_tensor(path, grid_max, &format!("tail-inputs-v1-block{from}"), "acts", sha, cache, |x| Ok(tail.inputs(x)?))
}

/// Held-out figures of one fold.
#[derive(Debug, Clone, serde::Serialize)]
struct FoldResult {
    fold: usize,
    lambda: f64,
    probe_srcc: f64,
    probe_plcc: f64,
    /// Per learning rate: held-out SRCC and PLCC after each epoch, and the training loss.
    tuned: Vec<Curve>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Curve {
    lr: f64,
    srcc: Vec<f64>,
    plcc: Vec<f64>,
    train_loss: Vec<f64>,
    seconds: f64,
}

fn ms(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    format!("{m:.3} ± {s:.3}")
}

pub fn run(a: FinetuneArgs) -> anyhow::Result<std::process::ExitCode> {
    let t_start = std::time::Instant::now();
    let ds = super::cv::load_dataset(a.data, a.images)?;
    let rows: Vec<_> = ds.samples.iter().filter(|s| s.target.score.is_some()).collect();
    if a.folds < 2 || rows.len() < a.folds * 2 {
        bail!("{}: {} rows with a score; {} folds need at least 2 folds of 2", a.data.display(), rows.len(), a.folds);
    }
    if a.lrs.is_empty() || a.tail.epochs == 0 {
        bail!("give at least one --lrs value and --epochs > 0");
    }
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let sha = weights::sha256_hex(&weights::read_verified(WeightsFile::EfficientNetLite0, &lite0)?);
    let tail = TailNet::from_lite0(&lite0, a.tail.from_block, DType::F32, &Device::Cpu)?;
    let cache = a.cache.clone().unwrap_or_else(super::cv::default_cache).join("quality-tail");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    let t0 = std::time::Instant::now();
    let (mut acts, mut scores) = (Vec::new(), Vec::new());
    for (i, s) in rows.iter().enumerate() {
        match cached_inputs(&s.path, a.grid_max, &tail, a.tail.from_block, &sha, &cache) {
            Ok(t) => {
                acts.push(t);
                scores.push(s.target.score.unwrap());
            }
            Err(e) => eprintln!("\nskipped {}: {e:#}", s.path.display()),
        }
        progress(format_args!("  activations entering block {}: {}/{}", a.tail.from_block, i + 1, rows.len()));
    }
    eprintln!("\r  activations entering block {}: {} photos in {:.1} s", a.tail.from_block, acts.len(), t0.elapsed().as_secs_f64());
    if acts.len() < a.folds * 2 {
        bail!("only {} of {} photos could be read (is --images right?)", acts.len(), rows.len());
    }
    let counts: Vec<usize> = acts.iter().map(|t| t.dim(0)).collect::<candle_core::Result<_>>()?;
    // The pretrained tail's photo features: the frozen probe's input, the same for every fold.
    let frozen: Vec<Vec<f64>> =
        acts.iter().zip(&counts).map(|(t, &c)| Ok(tail.photo_features(t, &[c])?.remove(0))).collect::<anyhow::Result<_>>()?;
    let folds = fold_ids(scores.len(), a.folds, a.seed);
    // Every fold and rate starts from the shipped Lite0.
    let pretrained = tail.snapshot()?;
    let d = frozen[0].len() as f64;
    let grid: Vec<f64> = a.lambdas.iter().map(|r| r * d).collect();
    println!(
        "partial fine-tuning of Lite0 (blocks {}..16 + head convolution) against the frozen probe, {}-fold CV on {} ({} photos), seed {}; {} epochs, batch {} photos, AdamW weight decay {}, head lr x{}",
        a.tail.from_block,
        a.folds,
        a.data.display(),
        scores.len(),
        a.seed,
        a.tail.epochs,
        a.tail.batch_photos,
        a.tail.weight_decay,
        a.tail.head_lr_mult
    );

    let mut results = Vec::new();
    for f in 0..a.folds {
        let tr: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] != f).collect();
        let te: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] == f).collect();
        let (mu, sd) = mean_std(&tr.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        let z: Vec<f64> = tr.iter().map(|&i| (scores[i] - mu) / sd).collect();
        let truth: Vec<f64> = te.iter().map(|&i| scores[i]).collect();
        let xtr: Vec<&[f64]> = tr.iter().map(|&i| frozen[i].as_slice()).collect();
        let (lambda, _) = ridge::nested_lambda(&xtr, &z, &grid, None, a.inner_folds, a.seed).map_err(anyhow::Error::msg)?;
        let probe = ridge::fit(&xtr, &z, lambda, None).map_err(anyhow::Error::msg)?;
        let pred: Vec<f64> = te.iter().map(|&i| probe.predict(&frozen[i])).collect();
        let (ps, pp) = (srcc(&pred, &truth).unwrap_or(0.0), plcc(&pred, &truth).unwrap_or(0.0));
        println!("fold {}: frozen probe SRCC {ps:.3} PLCC {pp:.3} (lambda {lambda:.1})", f + 1);
        let mut tuned = Vec::new();
        for &lr in a.lrs {
            let t_fold = std::time::Instant::now();
            tail.restore(&pretrained)?;
            tail.set_head(&probe.w, probe.bias)?;
            let cfg = TailConfig { lr, seed: a.seed.wrapping_add(f as u64), ..a.tail };
            let tr_acts: Vec<&Tensor> = tr.iter().map(|&i| &acts[i]).collect();
            let mut curve = Curve { lr, srcc: Vec::new(), plcc: Vec::new(), train_loss: Vec::new(), seconds: 0.0 };
            fine_tune(&tail, &tr_acts, &z, &cfg, &mut |epoch, loss| {
                let mut pred = Vec::with_capacity(te.len());
                for chunk in te.chunks(16) {
                    let x = Tensor::cat(&chunk.iter().map(|&i| &acts[i]).collect::<Vec<_>>(), 0)?;
                    let c: Vec<usize> = chunk.iter().map(|&i| counts[i]).collect();
                    pred.extend(tail.photo_scores(&x, &c)?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                }
                let (s, p) = (srcc(&pred, &truth).unwrap_or(0.0), plcc(&pred, &truth).unwrap_or(0.0));
                curve.srcc.push(s);
                curve.plcc.push(p);
                curve.train_loss.push(loss);
                eprintln!(
                    "  fold {} lr {lr:e}: epoch {epoch}/{} loss {loss:.4} held-out SRCC {s:.3} ({:.0} s)",
                    f + 1,
                    cfg.epochs,
                    t_fold.elapsed().as_secs_f64()
                );
                Ok(true)
            })?;
            curve.seconds = t_fold.elapsed().as_secs_f64();
            println!(
                "fold {}: fine-tuned lr {lr:e}: SRCC {:.3} PLCC {:.3} after {} epochs ({:.0} s); per epoch {:?}",
                f + 1,
                curve.srcc.last().unwrap(),
                curve.plcc.last().unwrap(),
                cfg.epochs,
                curve.seconds,
                curve.srcc.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>()
            );
            tuned.push(curve);
        }
        results.push(FoldResult { fold: f + 1, lambda, probe_srcc: ps, probe_plcc: pp, tuned });
    }

    println!("\n| model | SRCC | PLCC | per fold SRCC |\n|---|---|---|---|");
    let probe_s: Vec<f64> = results.iter().map(|r| r.probe_srcc).collect();
    let probe_p: Vec<f64> = results.iter().map(|r| r.probe_plcc).collect();
    let per_fold = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ");
    println!("| frozen probe (pooled 1280-d, grid mean, ridge) | {} | {} | {} |", ms(&probe_s), ms(&probe_p), per_fold(&probe_s));
    let mut summary = Vec::new();
    for (k, &lr) in a.lrs.iter().enumerate() {
        let s: Vec<f64> = results.iter().map(|r| *r.tuned[k].srcc.last().unwrap()).collect();
        let p: Vec<f64> = results.iter().map(|r| *r.tuned[k].plcc.last().unwrap()).collect();
        println!("| fine-tuned, lr {lr:e}, {} epochs | {} | {} | {} |", a.tail.epochs, ms(&s), ms(&p), per_fold(&s));
        let by_epoch: Vec<f64> = (0..a.tail.epochs)
            .filter_map(|e| {
                let v: Vec<f64> = results.iter().filter_map(|r| r.tuned[k].srcc.get(e).copied()).collect();
                (v.len() == results.len()).then(|| mean_std(&v).0)
            })
            .collect();
        println!(
            "  lr {lr:e}: mean held-out SRCC after each epoch (after the fact, not a choice): {:?}",
            by_epoch.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>()
        );
        summary.push(serde_json::json!({"lr": lr, "srcc": mean_std(&s), "plcc": mean_std(&p), "srcc_by_epoch": by_epoch}));
    }
    println!("total {:.1} s", t_start.elapsed().as_secs_f64());
    if let Some(out) = a.out {
        let json = serde_json::json!({
            "data": a.data.display().to_string(),
            "photos": scores.len(),
            "folds": a.folds,
            "seed": a.seed,
            "grid_max": a.grid_max,
            "lite0_sha256": sha,
            "config": a.tail,
            "lambda_r": a.lambdas,
            "probe": {"srcc": mean_std(&probe_s), "plcc": mean_std(&probe_p)},
            "tuned": summary,
            "per_fold": results,
            "seconds": t_start.elapsed().as_secs_f64(),
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
