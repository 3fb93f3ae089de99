//! `keepers eval`: rebuilds a model from a procedure's checkpoint (`RUN/best`) and prints the
//! metrics table of its task on a dataset (`crate::train::procedures::evaluate`): SRCC, PLCC,
//! MSE, MAE for scores; accuracy, balanced accuracy, ROC AUC, AP for binary labels; EMD
//! (r = 1, 2), KL, JS, chi-square, cosine, Euclidean and SRCC/PLCC of mean and std for
//! distributions; mAP for styles.

use std::path::PathBuf;

use anyhow::Context;

use crate::model::weights::WeightsFile;
use crate::train::procedures::{self, EvalConfig};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint: RUN/best (or RUN/last, RUN/best.json, RUN).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub source: super::train::DataSource,
    /// Test-time views / bags / patches (default: as trained).
    #[arg(long)]
    pub test_views: Option<usize>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Write the metrics and every prediction as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> anyhow::Result<std::process::ExitCode> {
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let model = procedures::load_model(&a.checkpoint, &lite0, a.test_views)
        .with_context(|| format!("loading the model in {}", a.checkpoint.display()))?;
    let ds = super::train::load_data(&a.source, None, a.limit)?;
    let cfg = EvalConfig {
        threads: a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        batch: 4,
        seed: a.seed,
        lite0,
        feature_cache: Some(a.cache.clone().unwrap_or_else(super::cv::default_cache)),
    };
    let (ds, preds, skipped) = procedures::evaluate(&model, &ds, &cfg).with_context(|| format!("evaluating on {}", ds.source))?;
    if !skipped.is_empty() {
        eprintln!("{skipped}");
    }
    let targets: Vec<_> = ds.samples.iter().map(|s| s.target.clone()).collect();
    let m = procedures::metrics_for(&model.spec.task, &preds, &targets, model.std.as_ref());
    println!(
        "{} ({}, {}{}) trained by {} for {} steps; {} on {}",
        model.spec.system,
        model.spec.column,
        model.spec.task.name(),
        if model.cached { ", cached features" } else { "" },
        model.meta.procedure,
        model.meta.global_step,
        a.checkpoint.display(),
        ds.source
    );
    print!("{}", procedures::metrics_table(&m));
    if let Some(out) = &a.json {
        let rows: Vec<_> = ds
            .samples
            .iter()
            .zip(&preds)
            .map(|(s, p)| serde_json::json!({ "path": s.path.display().to_string(), "prediction": p.as_ref().map(|p| format!("{p:?}")) }))
            .collect();
        let doc = serde_json::json!({ "checkpoint": a.checkpoint.display().to_string(), "metrics": m, "predictions": rows,
            "skipped": skipped.paths().iter().map(|p| p.display().to_string()).collect::<Vec<_>>() });
        std::fs::write(out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
