//! `keepers cv`: k-fold cross-validation of the small-data procedures (frozen ImageNet
//! backbone, cached features) on a CSV of photos with scores, e.g. the LIVE Challenge
//! `labels.csv`. Prints SRCC and PLCC per system as mean ± standard deviation over the folds,
//! and writes every fold's figures and held-out prediction as JSON with `--out`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device};

use crate::model::efficientnet_lite::FoldedLite;
use crate::model::heads::HeadKind;
use crate::model::imagenet::load_lite0;
use crate::model::systems::{ColumnKind, SystemConfig, SystemId};
use crate::model::views::GlobalView;
use crate::model::weights::{self, WeightsFile};
use crate::train::cv::{cross_validate_scores, fold_ids};
use crate::train::data::Dataset;
use crate::train::data::csv::{CsvOptions, load};
use crate::train::features::{FeaturePlan, PhotoFeatures, extract};
use crate::train::pipeline::SkipReport;
use crate::train::small_data::FitConfig;

/// The systems `keepers cv` knows, by name: `scnn-warp` (global warped view), `scnn-center`,
/// `scnn-local` (one native-resolution patch, test averages all), `dcnn`, `dma-stat`, `dma-fc`,
/// `mp-avg`, `mp-min`, `mp-ada` (quality regression).
pub fn system_by_name(name: &str) -> anyhow::Result<SystemConfig> {
    let lower = name.to_ascii_lowercase();
    let (id, view) = match lower.as_str() {
        "scnn-warp" | "global" => (SystemId::Scnn, GlobalView::Warp),
        "scnn-center" => (SystemId::Scnn, GlobalView::CenterCrop),
        "scnn-local" | "single-patch" => (SystemId::Scnn, GlobalView::LocalRandomCrop),
        other => match SystemId::parse(other) {
            Some(id) => (id, GlobalView::Warp),
            None => {
                bail!("unknown system {name:?} (try scnn-warp, scnn-center, scnn-local, dcnn, dma-stat, dma-fc, mp-avg, mp-min, mp-ada)")
            }
        },
    };
    Ok(SystemConfig { view, ..SystemConfig::new(id, ColumnKind::Lite0, HeadKind::Quality) })
}

/// `<platform cache dir>/features` (as the thumbnail cache sits in `<cache dir>/thumbnails`).
/// The CSV's dataset; when its paths do not resolve and no `images` folder is given, the photos are
/// looked for in `images/` beside the CSV (where the LIVE Challenge keeps them).
pub(crate) fn load_dataset(data: &Path, images: Option<&Path>) -> anyhow::Result<Dataset> {
    let mut opts = CsvOptions { image_root: images.map(Path::to_path_buf), ..Default::default() };
    let mut ds = load(data, &opts).with_context(|| format!("reading {}", data.display()))?;
    let beside = data.parent().unwrap_or(Path::new(".")).join("images");
    if images.is_none() && ds.samples.first().is_some_and(|s| !s.path.exists()) && beside.is_dir() {
        opts.image_root = Some(beside);
        ds = load(data, &opts).with_context(|| format!("reading {}", data.display()))?;
    }
    Ok(ds)
}

/// The frozen backbone's cached features of `paths` (computed where missing, with progress on stderr),
/// with the skip report, the backbone and its weights' sha256; unreadable photos are `None`.
pub(crate) fn cached_features(
    paths: &[PathBuf],
    plan: &FeaturePlan,
    cache: &Path,
    what: &str,
) -> anyhow::Result<(Vec<Option<PhotoFeatures>>, SkipReport, FoldedLite, String)> {
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let sha = weights::sha256_hex(&weights::read_verified(WeightsFile::EfficientNetLite0, &lite0)?);
    let net = load_lite0(&lite0, DType::F32, &Device::Cpu)?.fold(DType::F32)?;
    eprintln!("features: {} photos, plan {plan:?}, cache {}", paths.len(), cache.display());
    let t0 = std::time::Instant::now();
    let (feats, skipped) = extract(paths, plan, &net, &sha, Some(cache), |d, n| super::progress(format_args!("  {what}{d}/{n}")))?;
    eprintln!("\r  {what}{} photos in {:.1} s", paths.len(), t0.elapsed().as_secs_f64());
    if !skipped.is_empty() {
        eprintln!("{skipped}");
    }
    Ok((feats, skipped, net, sha))
}

pub fn default_cache() -> PathBuf {
    directories::ProjectDirs::from("", "", "keepers")
        .map(|d| d.cache_dir().join("features"))
        .unwrap_or_else(|| std::env::temp_dir().join("keepers-features"))
}

pub struct CvArgs<'a> {
    pub data: &'a Path,
    pub images: Option<&'a Path>,
    pub systems: &'a [String],
    pub folds: usize,
    pub seed: u64,
    pub fit: FitConfig,
    pub plan: FeaturePlan,
    pub cache: Option<PathBuf>,
    pub out: Option<&'a Path>,
}

pub fn run(a: CvArgs) -> anyhow::Result<std::process::ExitCode> {
    let ds = load_dataset(a.data, a.images)?;
    let rows: Vec<_> = ds.samples.iter().filter(|s| s.target.score.is_some()).collect();
    if rows.len() < a.folds * 2 {
        bail!("{}: {} rows with a score; {} folds need at least {}", a.data.display(), rows.len(), a.folds, a.folds * 2);
    }
    let configs = a.systems.iter().map(|s| system_by_name(s).map(|c| (s.clone(), c))).collect::<anyhow::Result<Vec<_>>>()?;

    let paths: Vec<PathBuf> = rows.iter().map(|s| s.path.clone()).collect();
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let (feats, skipped, _, _) = cached_features(&paths, &a.plan, &a.cache.unwrap_or_else(default_cache), "")?;
    let kept: Vec<usize> = (0..paths.len()).filter(|&i| feats[i].is_some()).collect();
    if kept.len() < a.folds * 2 {
        bail!(
            "only {} of {} photos could be read; {} folds need at least {} (is --images right?)",
            kept.len(),
            paths.len(),
            a.folds,
            a.folds * 2
        );
    }
    let feats: Vec<&PhotoFeatures> = kept.iter().map(|&i| feats[i].as_ref().unwrap()).collect();
    let scores: Vec<f64> = kept.iter().map(|&i| rows[i].target.score.unwrap()).collect();
    let folds = fold_ids(scores.len(), a.folds, a.seed);

    println!(
        "{}-fold cross-validation on {} ({} photos), seed {}, {} epochs",
        a.folds,
        a.data.display(),
        scores.len(),
        a.seed,
        a.fit.epochs
    );
    println!("{:<14} {:>16} {:>16} {:>8}", "system", "SRCC mean±std", "PLCC mean±std", "seconds");
    let mut results = Vec::new();
    for (name, cfg) in &configs {
        let r = cross_validate_scores(name, cfg, &feats, &scores, &folds, &a.fit, &lite0)?;
        let ((sm, ss), (pm, ps)) = (r.srcc_mean_std(), r.plcc_mean_std());
        println!("{:<14} {:>9.3} ± {:.3} {:>9.3} ± {:.3} {:>8.1}", name, sm, ss, pm, ps, r.seconds);
        results.push(serde_json::json!({
            "system": name, "srcc": r.srcc, "plcc": r.plcc,
            "srcc_mean": sm, "srcc_std": ss, "plcc_mean": pm, "plcc_std": ps, "seconds": r.seconds,
            "predictions": r.predictions,
        }));
    }
    if let Some(out) = a.out {
        let doc = serde_json::json!({
            "data": a.data.display().to_string(), "photos": scores.len(), "folds": a.folds, "seed": a.seed,
            "epochs": a.fit.epochs, "lr": a.fit.lr, "batch": a.fit.batch, "plan": format!("{:?}", a.plan),
            "skipped": skipped.paths().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "results": results,
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
