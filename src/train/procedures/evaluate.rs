//! Evaluation of a trained procedure's checkpoint: rebuild the system from the checkpoint's
//! description, predict with the paper's test-time averaging (views / bags / patches,
//! `Mode::Test`), and compute the metrics of `crate::train::metrics` for the task:
//! SRCC, PLCC, MSE, MAE (scores); accuracy, balanced accuracy, ROC AUC, AP (binary);
//! EMD r=1 and r=2, KL, JS, chi-square, cosine and Euclidean distance, SRCC/PLCC of the mean and
//! of the std (distributions, papers 003 and 004); mAP (styles).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::stage::{RunExtra, extra_of};
use super::{ProcedureError, Result, SystemSpec, TargetRules, Task, cfg_err, checkpoint_location};
use crate::model::efficientnet_lite::FoldedLite;
use crate::model::heads::Prediction;
use crate::model::imagenet::load_lite0;
use crate::model::systems::{Mode, System};
use crate::model::weights::{self, WeightsFile};
use crate::train::checkpoint::{self, CheckpointMeta};
use crate::train::data::{Dataset, Sample, Target};
use crate::train::features::{FeaturePlan, PhotoFeatures, extract};
use crate::train::metrics;
use crate::train::optim::named_vars;
use crate::train::pipeline::{Pipeline, PipelineConfig, SkipReport};
use crate::train::small_data::{self, FitConfig, Standardizer, ranking_score};

/// The frozen Lite0's cached features of `paths` (`None` where a photo cannot be read).
pub(crate) fn cached_features(
    paths: &[PathBuf],
    plan: &FeaturePlan,
    lite0: &Path,
    cache: Option<&Path>,
) -> Result<(Vec<Option<PhotoFeatures>>, SkipReport)> {
    let bytes = weights::read_verified(WeightsFile::EfficientNetLite0, lite0).map_err(|e| ProcedureError::Other(e.to_string()))?;
    let sha = weights::sha256_hex(&bytes);
    let net = load_lite0(lite0, DType::F32, &Device::Cpu).map_err(|e| ProcedureError::Other(e.to_string()))?.fold(DType::F32)?;
    Ok(extract(paths, plan, &net, &sha, cache, |_, _| {})?)
}

/// Test-time predictions of `sys` from pixels, one per sample (`None` where the photo could
/// not be read), in dataset order.
pub fn predict_pixels(
    sys: &System,
    samples: &[Sample],
    threads: usize,
    batch: usize,
    seed: u64,
) -> Result<(Vec<Option<Prediction>>, SkipReport)> {
    let mut out = vec![None; samples.len()];
    if samples.is_empty() {
        return Ok((out, SkipReport::default()));
    }
    let cfg = PipelineConfig {
        batch_size: batch.max(1),
        seed: seed ^ 0x7e57,
        epoch: 0,
        shuffle: false,
        threads: threads.max(1),
        prefetch: 1,
        start_batch: 0,
    };
    let sys2 = sys.clone();
    let mut p = Pipeline::start(Arc::new(samples.to_vec()), &cfg, move |s, img, rng| {
        let mut p = sys2.prepare(&img, Mode::Test, rng);
        p.theme = s.target.theme;
        Ok(p)
    })?;
    for b in p.by_ref() {
        let idx: Vec<usize> = b.items.iter().map(|i| i.index).collect();
        let preps: Vec<_> = b.items.into_iter().map(|i| i.data).collect();
        let o = sys.forward_t(&sys.collate(&preps, &Device::Cpu)?, false)?;
        for (i, pred) in idx.into_iter().zip(sys.predict(&o)?) {
            out[i] = Some(pred);
        }
    }
    Ok((out, p.skip_report().clone()))
}

/// A model rebuilt from a procedure's checkpoint.
pub struct LoadedModel {
    pub sys: System,
    pub varmap: VarMap,
    pub spec: SystemSpec,
    pub std: Option<Standardizer>,
    pub rules: TargetRules,
    /// Predicts from cached features (small-data variant).
    pub cached: bool,
    pub plan: FeaturePlan,
    pub theme_names: Vec<String>,
    pub meta: CheckpointMeta,
    /// The folded Lite0 (with its file and sha256) that [`predict_photos`] extracts cached-path
    /// features with, loaded on first use and kept: a worker re-scoring an album in chunks
    /// reads and hashes the 13 MB file once, not per chunk.
    backbone: std::sync::OnceLock<(PathBuf, FoldedLite, String)>,
}

impl LoadedModel {
    /// The folded Lite0 of `lite0` and its sha256: loaded once and kept; a different file is
    /// loaded into `fresh` and not kept.
    fn backbone<'a>(
        &'a self,
        lite0: &Path,
        fresh: &'a mut Option<(PathBuf, FoldedLite, String)>,
    ) -> Result<&'a (PathBuf, FoldedLite, String)> {
        let load = || -> Result<(PathBuf, FoldedLite, String)> {
            let bytes = weights::read_verified(WeightsFile::EfficientNetLite0, lite0).map_err(|e| ProcedureError::Other(e.to_string()))?;
            let sha = weights::sha256_hex(&bytes);
            let net = load_lite0(lite0, DType::F32, &Device::Cpu).map_err(|e| ProcedureError::Other(e.to_string()))?.fold(DType::F32)?;
            Ok((lite0.to_path_buf(), net, sha))
        };
        match self.backbone.get() {
            Some(b) if b.0 == lite0 => Ok(b),
            Some(_) => Ok(fresh.insert(load()?)),
            None => {
                let b = load()?;
                Ok(self.backbone.get_or_init(|| b))
            }
        }
    }
}

/// Loads `checkpoint` (`RUN/best.json`, `RUN/best`, `RUN`); `test_views` overrides the stored
/// number of test-time views / bags / patches.
pub fn load_model(checkpoint: &Path, lite0: &Path, test_views: Option<usize>) -> Result<LoadedModel> {
    let (dir, name) = checkpoint_location(checkpoint);
    let meta = checkpoint::load_meta(&dir, &name)?.ok_or_else(|| cfg_err(format!("{}: no checkpoint {name:?} there", dir.display())))?;
    let extra: RunExtra = extra_of(&meta)?;
    rebuild(meta, extra, lite0, test_views, |vars| checkpoint::load(&dir, &name, vars, None).map(|_| ()).map_err(Into::into))
}

/// The system `meta` describes (with `extra`, its run's settings; `test_views` overriding the
/// stored test-time views), its variables set by `set`.
fn rebuild(
    meta: CheckpointMeta,
    extra: RunExtra,
    lite0: &Path,
    test_views: Option<usize>,
    set: impl FnOnce(&[(String, Var)]) -> Result<()>,
) -> Result<LoadedModel> {
    let mut spec = extra.spec.clone();
    if let Some(n) = test_views {
        spec.test_groups = n.max(1);
        spec.test_patches = n.max(1);
    }
    let varmap = VarMap::new();
    let sys = System::build(&spec.config()?, &varmap, DType::F32, &Device::Cpu, lite0, meta.seed)
        .map_err(|e| ProcedureError::Other(format!("{e:#}")))?;
    set(&named_vars(&varmap))?;
    Ok(LoadedModel {
        sys,
        varmap,
        spec,
        std: extra.std,
        rules: extra.rules.clone(),
        cached: extra.cached,
        plan: extra.feature_plan(),
        theme_names: extra.theme_names.clone(),
        meta,
        backbone: std::sync::OnceLock::new(),
    })
}

/// Rebuilds a model from a checkpoint's metadata and weights held elsewhere than a run folder
/// (a taste profile's file, named by `origin` in errors). Every variable must be present and no
/// other tensor.
pub fn load_model_from(meta: &CheckpointMeta, tensors: &HashMap<String, Tensor>, lite0: &Path, origin: &Path) -> Result<LoadedModel> {
    let extra: RunExtra = extra_of(meta)?;
    rebuild(meta.clone(), extra, lite0, None, |vars| {
        let unused = checkpoint::set_vars(origin, tensors, vars)?;
        if !unused.is_empty() {
            return Err(cfg_err(format!("{}: has tensors the model lacks: {}", origin.display(), unused.join(", "))));
        }
        Ok(())
    })
}

/// Test-time predictions of `model` for photos without targets (e.g. an album to re-score), in
/// order; `None` where a photo could not be read (named in the report). `theme`: THEME-EMD's
/// theme input (an index into the model's themes; `None`: unknown, the all-zero one-hot).
/// `progress(done, total)` is called as photos finish (feature extraction on the small-data
/// path; at the end on pixels).
pub fn predict_photos(
    model: &LoadedModel,
    paths: &[PathBuf],
    theme: Option<usize>,
    cfg: &EvalConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Option<Prediction>>, SkipReport)> {
    if model.cached {
        let mut fresh = None;
        let (_, net, sha) = model.backbone(&cfg.lite0, &mut fresh)?;
        let (feats, skipped) = extract(paths, &model.plan, net, sha, cfg.feature_cache.as_deref(), &mut progress)?;
        let fit = FitConfig { seed: cfg.seed, test_groups: model.spec.test_groups, ..Default::default() };
        let have: Vec<&PhotoFeatures> = feats.iter().flatten().collect();
        let mut it = small_data::predict(&model.sys, &have, &fit)?.into_iter();
        Ok((feats.iter().map(|f| f.as_ref().and_then(|_| it.next())).collect(), skipped))
    } else {
        let samples: Vec<Sample> = paths
            .iter()
            .map(|p| Sample { path: p.clone(), key: p.to_string_lossy().into_owned(), target: Target { theme, ..Target::default() } })
            .collect();
        let out = predict_pixels(&model.sys, &samples, cfg.threads, cfg.batch, cfg.seed)?;
        progress(paths.len(), paths.len());
        Ok(out)
    }
}

/// How [`evaluate`] runs.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub threads: usize,
    pub batch: usize,
    pub seed: u64,
    pub lite0: PathBuf,
    pub feature_cache: Option<PathBuf>,
}

/// Predictions of `model` on `ds` (targets derived by the model's rules; samples without the
/// task's target are dropped). Returns the evaluated dataset, its predictions (`None` where the
/// photo could not be read) and the skip report.
pub fn evaluate(model: &LoadedModel, ds: &Dataset, cfg: &EvalConfig) -> Result<(Dataset, Vec<Option<Prediction>>, SkipReport)> {
    let (ds, _) = model.rules.prepare(ds, &model.spec.task);
    if model.cached {
        let paths: Vec<PathBuf> = ds.samples.iter().map(|s| s.path.clone()).collect();
        let (feats, skipped) = cached_features(&paths, &model.plan, &cfg.lite0, cfg.feature_cache.as_deref())?;
        let fit = FitConfig { seed: cfg.seed, test_groups: model.spec.test_groups, ..Default::default() };
        let have: Vec<&PhotoFeatures> = feats.iter().flatten().collect();
        let mut it = small_data::predict(&model.sys, &have, &fit)?.into_iter();
        let preds = feats.iter().map(|f| f.as_ref().and_then(|_| it.next())).collect();
        Ok((ds, preds, skipped))
    } else {
        let (preds, skipped) = predict_pixels(&model.sys, &ds.samples, cfg.threads, cfg.batch, cfg.seed)?;
        Ok((ds, preds, skipped))
    }
}

fn put(m: &mut BTreeMap<String, f64>, k: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        m.insert(k.to_string(), v);
    }
}

/// The task's metrics of `preds` against `targets` (pairs without a prediction are left out;
/// `n` counts the pairs used).
pub fn metrics_for(task: &Task, preds: &[Option<Prediction>], targets: &[Target], std: Option<&Standardizer>) -> BTreeMap<String, f64> {
    let pairs: Vec<(&Prediction, &Target)> = preds.iter().zip(targets).filter_map(|(p, t)| p.as_ref().map(|p| (p, t))).collect();
    let mut m = BTreeMap::new();
    m.insert("n".to_string(), pairs.len() as f64);
    match task {
        Task::Quality => {
            let (p, t): (Vec<f64>, Vec<f64>) = pairs.iter().filter_map(|(p, t)| t.score.map(|s| (ranking_score(p, std), s))).unzip();
            put(&mut m, "srcc", metrics::srcc(&p, &t));
            put(&mut m, "plcc", metrics::plcc(&p, &t));
            put(&mut m, "mse", metrics::mse(&p, &t));
            put(&mut m, "mae", metrics::mae(&p, &t));
        }
        Task::Binary => {
            let (p, l): (Vec<f64>, Vec<bool>) = pairs.iter().filter_map(|(p, t)| t.label.map(|l| (ranking_score(p, None), l == 1))).unzip();
            let pred: Vec<usize> = p.iter().map(|&x| (x >= 0.5) as usize).collect();
            let truth: Vec<usize> = l.iter().map(|&b| b as usize).collect();
            put(&mut m, "accuracy", metrics::binary_accuracy(&p, &l, 0.5));
            put(&mut m, "balanced_accuracy", metrics::balanced_accuracy(&pred, &truth));
            put(&mut m, "auc", metrics::roc_auc(&p, &l));
            put(&mut m, "ap", metrics::average_precision(&p, &l));
            let (ps, ts): (Vec<f64>, Vec<f64>) = pairs.iter().filter_map(|(p, t)| t.score.map(|s| (ranking_score(p, None), s))).unzip();
            if ps.len() >= 3 {
                put(&mut m, "srcc_score", metrics::srcc(&ps, &ts));
            }
        }
        Task::Distribution { .. } => {
            let (p, t): (Vec<Vec<f64>>, Vec<Vec<f64>>) = pairs
                .iter()
                .filter_map(|(p, t)| match (p, &t.histogram) {
                    (Prediction::Distribution { probs, .. }, Some(h)) => Some((probs.iter().map(|&x| x as f64).collect(), h.clone())),
                    _ => None,
                })
                .unzip();
            put(&mut m, "emd_r1", metrics::mean_over(&p, &t, |a, b| metrics::emd(a, b, 1)));
            put(&mut m, "emd_r2", metrics::mean_over(&p, &t, |a, b| metrics::emd(a, b, 2)));
            put(&mut m, "kl", metrics::mean_over(&p, &t, |a, b| metrics::kl_divergence(b, a)));
            put(&mut m, "js", metrics::mean_over(&p, &t, metrics::js_divergence));
            put(&mut m, "chi_square", metrics::mean_over(&p, &t, metrics::chi_square));
            put(&mut m, "cosine", metrics::mean_over(&p, &t, |a, b| metrics::cosine_similarity(a, b).unwrap_or(f64::NAN)));
            put(&mut m, "euclidean", metrics::mean_over(&p, &t, metrics::euclidean_distance));
            let pm: Vec<f64> = p.iter().map(|x| metrics::distribution_mean(x)).collect();
            let tm: Vec<f64> = t.iter().map(|x| metrics::distribution_mean(x)).collect();
            put(&mut m, "srcc", metrics::srcc(&pm, &tm));
            put(&mut m, "plcc", metrics::plcc(&pm, &tm));
            put(&mut m, "mse", metrics::mse(&pm, &tm));
            put(&mut m, "mae", metrics::mae(&pm, &tm));
            let (ss, sp) = metrics::std_correlations(&p, &t);
            put(&mut m, "std_srcc", ss);
            put(&mut m, "std_plcc", sp);
        }
        Task::Styles { .. } => {
            let (p, l): (Vec<Vec<f64>>, Vec<Vec<bool>>) = pairs
                .iter()
                .filter_map(|(p, t)| match (p, &t.styles) {
                    (Prediction::Styles { probs }, Some(s)) => Some((probs.iter().map(|&x| x as f64).collect(), s.clone())),
                    _ => None,
                })
                .unzip();
            put(&mut m, "map", metrics::mean_average_precision(&p, &l));
        }
    }
    m
}

/// The metrics as an aligned two-column table.
pub fn metrics_table(m: &BTreeMap<String, f64>) -> String {
    let mut s = format!("{:<20} {:>12}\n", "metric", "value");
    for (k, v) in m {
        if k == "n" {
            s.push_str(&format!("{:<20} {:>12}\n", "photos", *v as usize));
        } else {
            s.push_str(&format!("{k:<20} {v:>12.4}\n"));
        }
    }
    s
}
