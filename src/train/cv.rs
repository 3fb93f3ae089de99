//! K-fold cross-validation of the small-data procedures on cached features: how the shipped
//! models are chosen ("choose by cross-validation, report spreads, not the best fold").
//!
//! Folds are a seeded permutation of the photos dealt round-robin, the same for every system
//! compared, so differences between systems are not differences between splits. Each fold
//! trains a fresh system (same seed) on the other folds and predicts the held-out photos;
//! SRCC and PLCC are computed per fold and reported as mean and standard deviation (sample,
//! n - 1) over the folds.

use candle_core::{DType, Device};
use candle_nn::VarMap;

use super::data::Target;
use super::features::PhotoFeatures;
use super::metrics::{plcc, srcc};
use super::pipeline::permutation;
use super::small_data::{self, FitConfig, Standardizer};
use crate::model::systems::{System, SystemConfig};
use crate::rng::SeededRng;

/// Fold index of each of `n` items, `k` folds, seeded.
pub fn fold_ids(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let order = permutation(n, &mut SeededRng::new(seed));
    let mut ids = vec![0; n];
    for (pos, &i) in order.iter().enumerate() {
        ids[i] = pos % k.max(1);
    }
    ids
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[derive(Debug, Clone)]
pub struct CvResult {
    pub name: String,
    pub srcc: Vec<f64>,
    pub plcc: Vec<f64>,
    /// Held-out prediction for every photo (each predicted by the fold that did not train on it).
    pub predictions: Vec<f64>,
    pub seconds: f64,
}

impl CvResult {
    pub fn srcc_mean_std(&self) -> (f64, f64) {
        mean_std(&self.srcc)
    }
    pub fn plcc_mean_std(&self) -> (f64, f64) {
        mean_std(&self.plcc)
    }
}

/// Cross-validates one system (small-data variant) on score targets.
pub fn cross_validate_scores(
    name: &str,
    cfg: &SystemConfig,
    feats: &[&PhotoFeatures],
    scores: &[f64],
    folds: &[usize],
    fit: &FitConfig,
    lite0: &std::path::Path,
) -> anyhow::Result<CvResult> {
    let k = folds.iter().max().map_or(0, |m| m + 1);
    let start = std::time::Instant::now();
    let mut res = CvResult { name: name.to_string(), srcc: vec![], plcc: vec![], predictions: vec![f64::NAN; scores.len()], seconds: 0.0 };
    let targets: Vec<Target> = scores.iter().map(|&s| Target { score: Some(s), ..Default::default() }).collect();
    for fold in 0..k {
        let train: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] != fold).collect();
        let test: Vec<usize> = (0..scores.len()).filter(|&i| folds[i] == fold).collect();
        let std = Standardizer::fit(&train.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        let varmap = VarMap::new();
        let sys = System::build(cfg, &varmap, DType::F32, &Device::Cpu, lite0, fit.seed)?;
        let data: Vec<_> = train.iter().map(|&i| (feats[i], &targets[i])).collect();
        small_data::fit(&sys, &varmap, &data, Some(&std), fit, |_, _| true)?;
        let test_feats: Vec<&PhotoFeatures> = test.iter().map(|&i| feats[i]).collect();
        let preds = small_data::predict(&sys, &test_feats, fit)?;
        let pred: Vec<f64> = preds.iter().map(|p| small_data::ranking_score(p, Some(&std))).collect();
        let truth: Vec<f64> = test.iter().map(|&i| scores[i]).collect();
        for (&i, &p) in test.iter().zip(&pred) {
            res.predictions[i] = p;
        }
        res.srcc.push(srcc(&pred, &truth).unwrap_or(f64::NAN));
        res.plcc.push(plcc(&pred, &truth).unwrap_or(f64::NAN));
    }
    res.seconds = start.elapsed().as_secs_f64();
    Ok(res)
}
