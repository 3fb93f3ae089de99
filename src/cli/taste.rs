//! `keepers bench taste`: the few-shot taste benchmark of issue 8 on a CSV of photos with mean
//! opinion scores (the LIVE Challenge `labels.csv`).
//!
//! A simulated user keeps the top third of the photos by MOS and rejects the bottom third (the
//! middle third is dropped). For each label count (10, 25, 50, 100) and each of `draws` seeded
//! draws, a balanced set of labels (half keeps, half rejects; odd counts alternate the extra
//! one) trains a taste profile ([`crate::train::taste`]) per system, and its ROC AUC is measured
//! on every other labelled photo. The same draws serve every system. Reported: AUC mean ± sample
//! std (and min) per count, training seconds per profile, and the untuned model's AUC (the
//! shipped quality model, [`crate::model::quality`], from pixels) on the same held-out sets:
//! that model was trained on these very photos, so its AUC is optimistic.
//!
//! With `--active`, the benchmark instead simulates labelling rounds ([`run_active`]): each draw
//! holds out half of the labelled photos as its test set, starts from 10 balanced random labels,
//! and adds 10 labels per round chosen either at random or by "label these next"
//! ([`crate::train::active::suggest`]: the current profile's uncertainty times the distance of
//! the photo's centre-view embedding, the app's, to every labelled photo); ROC AUC on the test
//! set after each round, per strategy. The simulated user can only label the top and bottom
//! thirds (the middle third has no answer), which makes "uncertain" photos rarer than in a real
//! album: the gain measured here is a lower bound on what uncertainty sampling can do.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::Device;

use crate::model::quality::{self, QualityModel};
use crate::rng::SeededRng;
use crate::train::cv::mean_std;
use crate::train::features::{FeaturePlan, PhotoFeatures};
use crate::train::metrics::roc_auc;
use crate::train::pipeline::{load_checked, permutation};
use crate::train::taste::{self, Example, TasteConfig, TasteSystem};

pub struct TasteBenchArgs<'a> {
    pub data: &'a Path,
    pub images: Option<&'a Path>,
    pub systems: &'a [String],
    pub labels: &'a [usize],
    pub draws: usize,
    pub seed: u64,
    pub steps: usize,
    pub lr: f64,
    pub l2: &'a [f64],
    pub per_dim_scale: bool,
    pub untuned: bool,
    pub plan: FeaturePlan,
    pub cache: Option<PathBuf>,
    pub out: Option<&'a Path>,
    /// Simulate labelling rounds, random vs "label these next", up to this many labels.
    pub active: Option<usize>,
}

/// The training indices of one draw: `n / 2` keeps and `n - n / 2` rejects (swapped on odd
/// draws), drawn without replacement.
fn draw(keeps: &[usize], rejects: &[usize], n: usize, d: usize, rng: &mut SeededRng) -> Vec<usize> {
    let (mut nk, mut nr) = (n / 2, n - n / 2);
    if d % 2 == 1 {
        std::mem::swap(&mut nk, &mut nr);
    }
    let pk = permutation(keeps.len(), rng);
    let pr = permutation(rejects.len(), rng);
    pk.iter().take(nk).map(|&i| keeps[i]).chain(pr.iter().take(nr).map(|&i| rejects[i])).collect()
}

fn fmt_ms(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    format!("{m:.3} ± {s:.3}")
}

pub fn run(a: TasteBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let ds = super::cv::load_dataset(a.data, a.images)?;
    let rows: Vec<_> = ds.samples.iter().filter(|s| s.target.score.is_some()).collect();
    let systems: Vec<TasteSystem> = a
        .systems
        .iter()
        .map(|s| {
            TasteSystem::parse(s).with_context(|| format!("unknown taste system {s:?} (logistic-warp, mp-ada-native, mp-ada-arp, ...)"))
        })
        .collect::<anyhow::Result<_>>()?;
    if a.l2.is_empty() || a.labels.is_empty() || a.draws == 0 {
        bail!("give at least one --l2, one --labels and --draws >= 1");
    }

    let paths: Vec<PathBuf> = rows.iter().map(|s| s.path.clone()).collect();
    let cache = a.cache.clone().unwrap_or_else(super::cv::default_cache);
    let (feats, skipped, _, sha) = super::cv::cached_features(&paths, &a.plan, &cache, "")?;
    let kept: Vec<usize> = (0..paths.len()).filter(|&i| feats[i].is_some()).collect();
    let feats: Vec<&PhotoFeatures> = kept.iter().map(|&i| feats[i].as_ref().unwrap()).collect();
    let mos: Vec<f64> = kept.iter().map(|&i| rows[i].target.score.unwrap()).collect();
    let paths: Vec<&PathBuf> = kept.iter().map(|&i| &paths[i]).collect();

    // The simulated user: top third kept, bottom third rejected, middle third dropped.
    let mut order: Vec<usize> = (0..mos.len()).collect();
    order.sort_by(|&i, &j| mos[i].total_cmp(&mos[j]));
    let third = mos.len() / 3;
    let rejects: Vec<usize> = order[..third].to_vec();
    let keeps: Vec<usize> = order[mos.len() - third..].to_vec();
    let max_n = *a.labels.iter().max().unwrap();
    if max_n + 4 > keeps.len() + rejects.len() || max_n / 2 + 1 > keeps.len().min(rejects.len()) {
        bail!("{} keeps and {} rejects are too few for {max_n} labels and a held-out set", keeps.len(), rejects.len());
    }
    let keep_of = |i: usize| keeps.contains(&i);
    if let Some(max_labels) = a.active {
        let cfg =
            TasteConfig { system: systems[0], steps: a.steps, lr: a.lr, l2: a.l2[0], per_dim_scale: a.per_dim_scale, ..Default::default() };
        return run_active(&a, &cfg, &feats, &keeps, &rejects, max_labels, &sha);
    }
    println!(
        "Few-shot taste benchmark on {} ({} photos): keep = top third (MOS >= {:.1}, {}), reject = bottom third (MOS <= {:.1}, {})",
        a.data.display(),
        mos.len(),
        mos[keeps[0]],
        keeps.len(),
        mos[*rejects.last().unwrap()],
        rejects.len()
    );

    // The untuned model: the shipped quality model's score, from pixels.
    let untuned: Option<Vec<f64>> = if a.untuned {
        let (json, lite0) = quality::default_paths();
        let model = QualityModel::load(&json, &lite0, &Device::Cpu).with_context(|| format!("loading {}", json.display()))?;
        let t0 = std::time::Instant::now();
        let mut scores = vec![f64::NAN; mos.len()];
        let labelled: Vec<usize> = keeps.iter().chain(&rejects).copied().collect();
        for (n, chunk) in labelled.chunks(8).enumerate() {
            let imgs = chunk
                .iter()
                .map(|&i| load_checked(paths[i]).map_err(|e| anyhow::anyhow!("{}: {e}", paths[i].display())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let s = model.score(&imgs.iter().collect::<Vec<_>>())?;
            for (&i, q) in chunk.iter().zip(s) {
                scores[i] = q.score as f64;
            }
            super::progress(format_args!("  untuned model {}/{}", (n * 8 + chunk.len()).min(labelled.len()), labelled.len()));
        }
        eprintln!("\r  untuned model: {} photos in {:.1} s", labelled.len(), t0.elapsed().as_secs_f64());
        Some(scores)
    } else {
        None
    };

    let mut variants: Vec<TasteConfig> = Vec::new();
    for s in &systems {
        for &l2 in a.l2 {
            variants.push(TasteConfig { system: *s, steps: a.steps, lr: a.lr, l2, per_dim_scale: a.per_dim_scale, ..Default::default() });
        }
    }
    let variant_name = |c: &TasteConfig| if a.l2.len() > 1 { format!("{} l2={}", c.system, c.l2) } else { c.system.to_string() };

    println!(
        "{} draws per count (seed {}), balanced labels; {} steps, lr {}, {} scale; AUC on every other labelled photo",
        a.draws,
        a.seed,
        a.steps,
        a.lr,
        if a.per_dim_scale { "per-dimension" } else { "common" }
    );
    println!(
        "{:<28} {:>6} {:>16} {:>7} {:>16} {:>10} {:>10}",
        "system", "labels", "AUC mean ± std", "min", "untuned (same)", "train s", "max s"
    );
    let mut results = Vec::new();
    for &n in a.labels {
        let draws: Vec<Vec<usize>> =
            (0..a.draws).map(|d| draw(&keeps, &rejects, n, d, &mut SeededRng::new(a.seed).fork((n * 1000 + d) as u64))).collect();
        let tests: Vec<Vec<usize>> =
            draws.iter().map(|tr| keeps.iter().chain(&rejects).copied().filter(|i| !tr.contains(i)).collect()).collect();
        let untuned_auc: Vec<f64> = match &untuned {
            Some(u) => tests
                .iter()
                .map(|te| {
                    roc_auc(&te.iter().map(|&i| u[i]).collect::<Vec<_>>(), &te.iter().map(|&i| keep_of(i)).collect::<Vec<_>>()).unwrap()
                })
                .collect(),
            None => vec![],
        };
        for cfg in &variants {
            let mut aucs = Vec::new();
            let mut secs = Vec::new();
            for (tr, te) in draws.iter().zip(&tests) {
                let ex = |i: &usize| Example { features: cfg.system.input_of(feats[*i]), keep: keep_of(*i), theme: None };
                let train: Vec<Example> = tr.iter().map(ex).collect();
                let t = std::time::Instant::now();
                let profile = taste::train("bench", &train, &[], cfg, &[], &sha, |_| true)?;
                secs.push(t.elapsed().as_secs_f64());
                let scores = te.iter().map(|&i| profile.score_photo(feats[i]).map(f64::from)).collect::<Result<Vec<_>, _>>()?;
                aucs.push(roc_auc(&scores, &te.iter().map(|&i| keep_of(i)).collect::<Vec<_>>()).unwrap());
            }
            let min = aucs.iter().copied().fold(f64::INFINITY, f64::min);
            let max_s = secs.iter().copied().fold(0.0, f64::max);
            let un = if untuned_auc.is_empty() { "-".to_string() } else { fmt_ms(&untuned_auc) };
            println!(
                "{:<28} {:>6} {:>16} {:>7.3} {:>16} {:>10.3} {:>10.3}",
                variant_name(cfg),
                n,
                fmt_ms(&aucs),
                min,
                un,
                mean_std(&secs).0,
                max_s
            );
            results.push(serde_json::json!({
                "system": cfg.system.name(), "config": cfg, "labels": n, "auc": aucs,
                "auc_mean": mean_std(&aucs).0, "auc_std": mean_std(&aucs).1, "auc_min": min,
                "untuned_auc": untuned_auc, "train_seconds": secs,
            }));
        }
    }
    if let Some(u) = &untuned {
        let all: Vec<usize> = keeps.iter().chain(&rejects).copied().collect();
        let auc = roc_auc(&all.iter().map(|&i| u[i]).collect::<Vec<_>>(), &all.iter().map(|&i| keep_of(i)).collect::<Vec<_>>()).unwrap();
        println!(
            "untuned model (shipped quality model, trained on these photos: optimistic) on all {} labelled photos: AUC {auc:.3}",
            all.len()
        );
    }
    if let Some(out) = a.out {
        let doc = serde_json::json!({
            "data": a.data.display().to_string(), "photos": mos.len(), "keeps": keeps.len(), "rejects": rejects.len(),
            "draws": a.draws, "seed": a.seed, "plan": format!("{:?}", a.plan), "backbone_sha256": sha,
            "skipped": skipped.paths().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "results": results,
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Labelling rounds, random vs active (see the module docs). Prints AUC mean ± std per label
/// count and strategy, and the share of keeps each strategy asked for.
#[allow(clippy::too_many_arguments)]
fn run_active(
    a: &TasteBenchArgs,
    cfg: &TasteConfig,
    feats: &[&PhotoFeatures],
    keeps: &[usize],
    rejects: &[usize],
    max_labels: usize,
    sha: &str,
) -> anyhow::Result<std::process::ExitCode> {
    const START: usize = 10;
    const ROUND: usize = 10;
    let keep_set: std::collections::HashSet<usize> = keeps.iter().copied().collect();
    let embeddings: Vec<Vec<f32>> =
        feats.iter().map(|f| f.center.flatten_all().and_then(|t| t.to_vec1::<f32>())).collect::<candle_core::Result<_>>()?;
    let counts: Vec<usize> = (START..=max_labels).step_by(ROUND).collect();
    println!(
        "Active labelling: {} draws (seed {}), {}; half the labelled photos held out per draw; start {START} random balanced labels, +{ROUND} per round",
        a.draws, a.seed, cfg.system
    );
    // auc[strategy][count index] over draws; keep share of the labels asked for.
    let mut auc = vec![vec![Vec::new(); counts.len()]; 2];
    let mut keep_share = vec![Vec::new(); 2];
    for d in 0..a.draws {
        let mut rng = SeededRng::new(a.seed).fork(1_000_000 + d as u64);
        // Test: a random half of each class; pool: the rest.
        let split = |c: &[usize], rng: &mut SeededRng| {
            let p = permutation(c.len(), rng);
            let h = c.len() / 2;
            (p[..h].iter().map(|&i| c[i]).collect::<Vec<_>>(), p[h..].iter().map(|&i| c[i]).collect::<Vec<_>>())
        };
        let (tk, pk) = split(keeps, &mut rng);
        let (tr, pr) = split(rejects, &mut rng);
        let test: Vec<usize> = tk.iter().chain(&tr).copied().collect();
        let test_keep: Vec<bool> = test.iter().map(|i| keep_set.contains(i)).collect();
        let start = draw(&pk, &pr, START, d, &mut rng);
        for (si, strategy) in ["random", "active"].iter().enumerate() {
            let mut labelled = start.clone();
            let mut pool: Vec<usize> = pk.iter().chain(&pr).copied().filter(|i| !labelled.contains(i)).collect();
            let mut srng = rng.fork(si as u64);
            for (ci, &n) in counts.iter().enumerate() {
                let train: Vec<Example> = labelled
                    .iter()
                    .map(|&i| Example { features: cfg.system.input_of(feats[i]), keep: keep_set.contains(&i), theme: None })
                    .collect();
                let profile = taste::train("bench", &train, &[], cfg, &[], sha, |_| true)?;
                let scores = test.iter().map(|&i| profile.score_photo(feats[i]).map(f64::from)).collect::<Result<Vec<_>, _>>()?;
                auc[si][ci].push(roc_auc(&scores, &test_keep).unwrap());
                if ci + 1 == counts.len() {
                    break;
                }
                let want = counts[ci + 1] - n;
                let chosen: Vec<usize> = if *strategy == "random" {
                    permutation(pool.len(), &mut srng).into_iter().take(want).map(|k| pool[k]).collect()
                } else {
                    let probs = pool.iter().map(|&i| profile.score_photo(feats[i])).collect::<Result<Vec<_>, _>>()?;
                    let cands: Vec<crate::train::active::Candidate> = pool
                        .iter()
                        .zip(&probs)
                        .map(|(&i, &p)| crate::train::active::Candidate { embedding: &embeddings[i], p_keep: Some(p) })
                        .collect();
                    let known: Vec<&[f32]> = labelled.iter().map(|&i| embeddings[i].as_slice()).collect();
                    crate::train::active::suggest(&cands, &known, want).into_iter().map(|k| pool[k]).collect()
                };
                keep_share[si].push(chosen.iter().filter(|i| keep_set.contains(i)).count() as f64 / chosen.len().max(1) as f64);
                labelled.extend(&chosen);
                pool.retain(|i| !chosen.contains(i));
            }
        }
        super::progress(format_args!("  draw {}/{}", d + 1, a.draws));
    }
    eprintln!();
    println!("{:>6} {:>16} {:>16} {:>10}", "labels", "random AUC", "active AUC", "gain");
    for (ci, n) in counts.iter().enumerate() {
        let gains: Vec<f64> = auc[1][ci].iter().zip(&auc[0][ci]).map(|(x, y)| x - y).collect();
        println!("{n:>6} {:>16} {:>16} {:>+10.3}", fmt_ms(&auc[0][ci]), fmt_ms(&auc[1][ci]), mean_std(&gains).0);
    }
    println!("keep share of the photos asked for: random {:.2}, active {:.2}", mean_std(&keep_share[0]).0, mean_std(&keep_share[1]).0);
    if let Some(out) = a.out {
        let doc = serde_json::json!({
            "data": a.data.display().to_string(), "draws": a.draws, "seed": a.seed, "system": cfg.system.name(), "config": cfg,
            "labels": counts, "random_auc": auc[0], "active_auc": auc[1],
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
