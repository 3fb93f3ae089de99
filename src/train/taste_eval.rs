//! Honest evaluation of a taste profile on the person's own labels (issue 8): a stratified,
//! seeded held-out split; ROC AUC with its standard error, SRCC and top-K hit rate of the profile
//! next to the untuned model (the shipped technical-quality score) on the same held-out photos; and
//! a plain warning when there are too few labels for the figures to mean much.
//!
//! - AUC standard error: Hanley & McNeil (1982), `SE^2 = (A(1-A) + (n1-1)(Q1-A^2) +
//!   (n0-1)(Q2-A^2)) / (n1 n0)` with `Q1 = A/(2-A)`, `Q2 = 2A^2/(1+A)` (`n1` keeps, `n0` rejects).
//! - SRCC: Spearman correlation of the score with the label's grade (1/0 for keep/reject, or the
//!   star rating when stars are the labels).
//! - Top-K hit rate: of the `K` held-out photos the model ranks highest, the fraction the person
//!   kept, with `K` = the number of held-out keeps (so a perfect ranking scores 1 and a random one
//!   the keep fraction on average).

use serde::{Deserialize, Serialize};

use super::metrics::{roc_auc, srcc};
use crate::rng::SeededRng;

/// One labelled photo: a library photo id, keep or reject, and the grade SRCC is taken against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labelled {
    pub id: i64,
    pub keep: bool,
    pub grade: f64,
}

/// Fewest held-out photos per class before the figures are reported without a warning.
pub const TRUST_HELDOUT_PER_CLASS: usize = 10;
/// Fewest training labels per class before the profile is called trustworthy (the few-shot
/// benchmark reached AUC 0.85 at 50 labels, 25 per class).
pub const TRUST_TRAIN_PER_CLASS: usize = 25;

/// Splits `labels` into (train, held-out) indices: per class, `round(n * fraction)` photos held out,
/// but never fewer than 1 nor so many that fewer than 2 stay for training (a class with fewer than
/// 3 photos is not held out at all, and then nothing is: AUC needs both classes). Seeded.
pub fn split_holdout(labels: &[Labelled], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SeededRng::new(seed);
    let mut classes: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, l) in labels.iter().enumerate() {
        classes[l.keep as usize].push(i);
    }
    let take: Vec<usize> =
        classes.iter().map(|c| ((c.len() as f64 * fraction).round() as usize).max(1).min(c.len().saturating_sub(2))).collect();
    if fraction <= 0.0 || take.contains(&0) {
        return ((0..labels.len()).collect(), Vec::new());
    }
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (c, &k) in classes.iter_mut().zip(&take) {
        // Fisher-Yates with the seeded generator.
        for i in (1..c.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            c.swap(i, j);
        }
        held.extend_from_slice(&c[..k]);
        train.extend_from_slice(&c[k..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    (train, held)
}

/// Hanley & McNeil's standard error of a ROC AUC `a` from `n1` positives and `n0` negatives.
pub fn auc_standard_error(a: f64, n1: usize, n0: usize) -> f64 {
    if n1 == 0 || n0 == 0 {
        return f64::NAN;
    }
    let (n1f, n0f) = (n1 as f64, n0 as f64);
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    ((a * (1.0 - a) + (n1f - 1.0) * (q1 - a * a) + (n0f - 1.0) * (q2 - a * a)) / (n1f * n0f)).max(0.0).sqrt()
}

/// Fraction of keeps among the `k` highest scores (ties broken by order); `None` for `k = 0`.
pub fn top_k_hit_rate(scores: &[f64], keep: &[bool], k: usize) -> Option<f64> {
    assert_eq!(scores.len(), keep.len(), "top_k_hit_rate: lengths differ");
    if k == 0 || scores.is_empty() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let k = k.min(scores.len());
    Some(order[..k].iter().filter(|&&i| keep[i]).count() as f64 / k as f64)
}

/// One model's figures on the held-out labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub auc: Option<f64>,
    /// Hanley-McNeil standard error of `auc`.
    pub auc_se: Option<f64>,
    pub srcc: Option<f64>,
    pub top_k: Option<f64>,
}

impl Figures {
    pub fn of(scores: &[f64], held: &[Labelled]) -> Figures {
        let keep: Vec<bool> = held.iter().map(|l| l.keep).collect();
        let grade: Vec<f64> = held.iter().map(|l| l.grade).collect();
        let n1 = keep.iter().filter(|&&k| k).count();
        let auc = roc_auc(scores, &keep);
        Figures {
            auc,
            auc_se: auc.map(|a| auc_standard_error(a, n1, keep.len() - n1)),
            srcc: srcc(scores, &grade).filter(|v| v.is_finite()),
            top_k: top_k_hit_rate(scores, &keep, n1),
        }
    }
}

/// The held-out comparison the taste panel shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutReport {
    /// Labels the profile was evaluated with (train + held out).
    pub n_labels: usize,
    pub n_train: usize,
    pub n_heldout_keep: usize,
    pub n_heldout_reject: usize,
    /// K of the top-K hit rate (the held-out keeps).
    pub k: usize,
    pub profile: Figures,
    /// The untuned model (technical quality) on the same photos; `None` when it has not scored them all.
    pub baseline: Option<Figures>,
    /// Set when the figures rest on too few labels to trust.
    pub warning: Option<String>,
}

impl HeldOutReport {
    /// Figures of `profile_scores` (and `baseline_scores`, same order) on `held`, after training on
    /// `n_train` labels with `train_keep` keeps.
    pub fn new(
        held: &[Labelled],
        n_train: usize,
        train_keep: usize,
        profile_scores: &[f64],
        baseline_scores: Option<&[f64]>,
    ) -> HeldOutReport {
        let n_heldout_keep = held.iter().filter(|l| l.keep).count();
        let n_heldout_reject = held.len() - n_heldout_keep;
        let train_reject = n_train - train_keep;
        let mut reasons = Vec::new();
        if held.is_empty() {
            reasons.push("no labels could be held out to check the profile (it needs at least 3 keeps and 3 rejects)".to_string());
        } else if n_heldout_keep.min(n_heldout_reject) < TRUST_HELDOUT_PER_CLASS {
            reasons.push(format!(
                "the check rests on {n_heldout_keep} kept and {n_heldout_reject} rejected photos held out; the figures can move a lot with a few more"
            ));
        }
        if train_keep.min(train_reject) < TRUST_TRAIN_PER_CLASS {
            reasons.push(format!(
                "trained on {train_keep} keeps and {train_reject} rejects: label at least {TRUST_TRAIN_PER_CLASS} of each for a profile to rely on"
            ));
        }
        let warning = (!reasons.is_empty()).then(|| format!("Too few labels to trust: {}.", reasons.join("; ")));
        HeldOutReport {
            n_labels: n_train + held.len(),
            n_train,
            n_heldout_keep,
            n_heldout_reject,
            k: n_heldout_keep,
            profile: Figures::of(profile_scores, held),
            baseline: baseline_scores.map(|b| Figures::of(b, held)),
            warning,
        }
    }
}
