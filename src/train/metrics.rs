//! Evaluation metrics of the seed papers, on plain `f64` slices.
//!
//! | metric | used by | definition |
//! |---|---|---|
//! | [`accuracy`], [`binary_accuracy`] | 000, 001, 002 (AVA high/low) | fraction correct |
//! | [`balanced_accuracy`] | AVA's imbalanced high/low split | mean per-class recall over classes present |
//! | [`roc_auc`] | binary / per-style | Mann-Whitney U with average ranks (ties count 1/2) |
//! | [`average_precision`], [`mean_average_precision`] | 002 (style mAP) | `sum_n (R_n - R_{n-1}) P_n` over distinct thresholds (scikit-learn's definition; tied scores form one threshold) |
//! | [`srcc`], [`plcc`] | 003, 004 (SRCC, LCC) | Spearman on average ranks; Pearson |
//! | [`mse`], [`mae`] | 004 | mean squared / absolute error |
//! | [`emd`] | 003 eq. 7, 004 eq. 1 | `((1/K) sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)`, r = 1 or 2 |
//! | [`kl_divergence`], [`js_divergence`] | distribution prediction (003) | natural log; `0 log 0 = 0` |
//! | [`chi_square`] | distribution prediction | `sum_k (p_k - q_k)^2 / (p_k + q_k)` over bins with `p_k + q_k > 0` (the LDL "squared chi^2") |
//! | [`cosine_similarity`], [`euclidean_distance`] | distribution prediction | of the K-bin vectors |
//! | [`std_correlations`] | 003/004 (spread of opinion) | SRCC and PLCC between predicted and true std of the distributions |
//! | [`mae_by_aspect_bin`] | 004 (Sec. 5, MAE per aspect-ratio range) | MAE of scores per bin of height/width |
//!
//! Degenerate inputs (empty slices, one class only, constant vectors for a correlation) give
//! `None` instead of a made-up number. Lengths must match (a mismatch is a caller bug and panics).

/// Fraction of `pred[i] == truth[i]`.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len(), "accuracy: lengths differ");
    if pred.is_empty() {
        return None;
    }
    Some(pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / pred.len() as f64)
}

/// Accuracy of `score >= threshold` as the positive prediction (e.g. probability of "high" >= 0.5).
pub fn binary_accuracy(scores: &[f64], labels: &[bool], threshold: f64) -> Option<f64> {
    let pred: Vec<usize> = scores.iter().map(|&s| (s >= threshold) as usize).collect();
    let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    accuracy(&pred, &truth)
}

/// Mean recall over the classes that occur in `truth`.
pub fn balanced_accuracy(pred: &[usize], truth: &[usize]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len(), "balanced_accuracy: lengths differ");
    let mut per: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
    for (&p, &t) in pred.iter().zip(truth) {
        let e = per.entry(t).or_default();
        e.1 += 1;
        if p == t {
            e.0 += 1;
        }
    }
    if per.is_empty() {
        return None;
    }
    Some(per.values().map(|&(c, n)| c as f64 / n as f64).sum::<f64>() / per.len() as f64)
}

/// 1-based ranks with ties given their average rank.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Area under the ROC curve: `(sum of positives' ranks - P(P+1)/2) / (P N)`; ties count 1/2.
/// `None` unless both classes occur.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "roc_auc: lengths differ");
    let ranks = average_ranks(scores);
    let p = labels.iter().filter(|&&l| l).count() as f64;
    let n = labels.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let sum: f64 = ranks.iter().zip(labels).filter(|(_, l)| **l).map(|(r, _)| r).sum();
    Some((sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision-recall step curve): thresholds are the distinct
/// scores from high to low; `AP = sum (R_n - R_{n-1}) P_n`. `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "average_precision: lengths differ");
    let total_pos = labels.iter().filter(|&&l| l).count();
    if total_pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            seen += 1;
            tp += labels[idx[i]] as usize;
            i += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / seen as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Mean over labels (columns) of [`average_precision`]; `scores[i][l]`, `labels[i][l]`. Labels
/// without any positive are left out of the mean (they have no AP); `None` if none has one.
pub fn mean_average_precision(scores: &[Vec<f64>], labels: &[Vec<bool>]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "mean_average_precision: lengths differ");
    let l = scores.first()?.len();
    let aps: Vec<f64> = (0..l)
        .filter_map(|j| {
            let s: Vec<f64> = scores.iter().map(|r| r[j]).collect();
            let t: Vec<bool> = labels.iter().map(|r| r[j]).collect();
            average_precision(&s, &t)
        })
        .collect();
    if aps.is_empty() { None } else { Some(aps.iter().sum::<f64>() / aps.len() as f64) }
}

/// Pearson's linear correlation (PLCC / LCC). `None` for fewer than 2 points or a constant input.
pub fn plcc(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "plcc: lengths differ");
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 { None } else { Some(sxy / (sxx * syy).sqrt()) }
}

/// Spearman's rank correlation: Pearson on average ranks (correct with ties).
pub fn srcc(x: &[f64], y: &[f64]) -> Option<f64> {
    plcc(&average_ranks(x), &average_ranks(y))
}

pub fn mse(pred: &[f64], truth: &[f64]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len(), "mse: lengths differ");
    if pred.is_empty() { None } else { Some(pred.iter().zip(truth).map(|(p, t)| (p - t) * (p - t)).sum::<f64>() / pred.len() as f64) }
}

pub fn mae(pred: &[f64], truth: &[f64]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len(), "mae: lengths differ");
    if pred.is_empty() { None } else { Some(pred.iter().zip(truth).map(|(p, t)| (p - t).abs()).sum::<f64>() / pred.len() as f64) }
}

/// EMD between two K-bin distributions (paper 003 eq. 7), `r` = 1 or 2.
pub fn emd(p: &[f64], q: &[f64], r: u32) -> f64 {
    assert_eq!(p.len(), q.len(), "emd: lengths differ");
    assert!(r == 1 || r == 2, "emd: r must be 1 or 2");
    let (mut cp, mut cq, mut s) = (0.0, 0.0, 0.0);
    for (a, b) in p.iter().zip(q) {
        cp += a;
        cq += b;
        let d = (cp - cq).abs();
        s += if r == 1 { d } else { d * d };
    }
    let m = s / p.len() as f64;
    if r == 1 { m } else { m.sqrt() }
}

/// Kullback-Leibler divergence `KL(p || q) = sum p_k ln(p_k / q_k)`; terms with `p_k = 0` are 0;
/// `+inf` when some `q_k = 0 < p_k`.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "kl_divergence: lengths differ");
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            if a == 0.0 {
                0.0
            } else if b == 0.0 {
                f64::INFINITY
            } else {
                a * (a / b).ln()
            }
        })
        .sum()
}

/// Jensen-Shannon divergence `(KL(p||m) + KL(q||m)) / 2`, `m = (p + q) / 2` (natural log, <= ln 2).
pub fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    (kl_divergence(p, &m) + kl_divergence(q, &m)) / 2.0
}

/// `sum (p_k - q_k)^2 / (p_k + q_k)` over bins with `p_k + q_k > 0`.
pub fn chi_square(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "chi_square: lengths differ");
    p.iter().zip(q).filter(|(a, b)| *a + *b > 0.0).map(|(a, b)| (a - b) * (a - b) / (a + b)).sum()
}

/// `p . q / (|p| |q|)`; `None` if either is all zeros.
pub fn cosine_similarity(p: &[f64], q: &[f64]) -> Option<f64> {
    assert_eq!(p.len(), q.len(), "cosine_similarity: lengths differ");
    let dot: f64 = p.iter().zip(q).map(|(a, b)| a * b).sum();
    let (np, nq) = (p.iter().map(|a| a * a).sum::<f64>().sqrt(), q.iter().map(|a| a * a).sum::<f64>().sqrt());
    if np == 0.0 || nq == 0.0 { None } else { Some(dot / (np * nq)) }
}

pub fn euclidean_distance(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "euclidean_distance: lengths differ");
    p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
}

/// Mean of a per-pair distribution measure over a set (e.g. `mean_over(&pred, &truth, |p, q| emd(p, q, 2))`).
pub fn mean_over(pred: &[Vec<f64>], truth: &[Vec<f64>], f: impl Fn(&[f64], &[f64]) -> f64) -> Option<f64> {
    assert_eq!(pred.len(), truth.len(), "mean_over: lengths differ");
    if pred.is_empty() { None } else { Some(pred.iter().zip(truth).map(|(p, q)| f(p, q)).sum::<f64>() / pred.len() as f64) }
}

/// Mean score of a K-bin distribution over scores `1..=K` (normalised by its sum).
pub fn distribution_mean(p: &[f64]) -> f64 {
    let s: f64 = p.iter().sum();
    p.iter().enumerate().map(|(k, v)| (k + 1) as f64 * v).sum::<f64>() / s
}

/// Standard deviation of the score of a K-bin distribution (scores `1..=K`, population form).
pub fn distribution_std(p: &[f64]) -> f64 {
    let s: f64 = p.iter().sum();
    let m = distribution_mean(p);
    (p.iter().enumerate().map(|(k, v)| ((k + 1) as f64 - m).powi(2) * v).sum::<f64>() / s).sqrt()
}

/// `(SRCC, PLCC)` between the predicted and the true standard deviations of the distributions.
pub fn std_correlations(pred: &[Vec<f64>], truth: &[Vec<f64>]) -> (Option<f64>, Option<f64>) {
    let a: Vec<f64> = pred.iter().map(|p| distribution_std(p)).collect();
    let b: Vec<f64> = truth.iter().map(|p| distribution_std(p)).collect();
    (srcc(&a, &b), plcc(&a, &b))
}

/// One aspect-ratio bin of [`mae_by_aspect_bin`]: images with `lo <= height/width < hi`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AspectBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// `None` for an empty bin.
    pub mae: Option<f64>,
}

/// Bin edges for [`mae_by_aspect_bin`] around paper 004's Fig. 4 (most AVA photos between 0.6
/// and 0.8, peaks at 2:3 and 3:4); the outer bins are open-ended.
pub const DEFAULT_ASPECT_EDGES: &[f64] = &[0.5, 0.6, 0.7, 0.8, 1.0, 1.5];

/// MAE of scores per bin of aspect ratio (height / width). `edges` must increase; the bins are
/// `[-inf, e0), [e0, e1), ..., [e_last, +inf)`.
pub fn mae_by_aspect_bin(pred: &[f64], truth: &[f64], aspect: &[f64], edges: &[f64]) -> Vec<AspectBin> {
    assert!(pred.len() == truth.len() && pred.len() == aspect.len(), "mae_by_aspect_bin: lengths differ");
    assert!(edges.windows(2).all(|w| w[0] < w[1]), "mae_by_aspect_bin: edges must increase");
    let mut bounds = vec![f64::NEG_INFINITY];
    bounds.extend_from_slice(edges);
    bounds.push(f64::INFINITY);
    bounds
        .windows(2)
        .map(|w| {
            let (mut sum, mut count) = (0.0, 0usize);
            for i in 0..pred.len() {
                if aspect[i] >= w[0] && aspect[i] < w[1] {
                    sum += (pred[i] - truth[i]).abs();
                    count += 1;
                }
            }
            AspectBin { lo: w[0], hi: w[1], count, mae: (count > 0).then(|| sum / count as f64) }
        })
        .collect()
}
