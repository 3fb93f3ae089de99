//! Ridge regression in closed form (f64) with the penalty chosen by nested cross-validation:
//! the quality head on multi-level features ([`crate::model::multilevel`]).
//!
//! Features are standardised with the training rows' mean and standard deviation (a constant
//! column gets scale 1), the target is centred, and the fit is solved in the dual,
//! `alpha = (X X^T + lambda I)^-1 y`, `w = X^T alpha` (n rows << d features), by Cholesky.
//! Optional per-column weights multiply the standardised columns (block balancing,
//! [`crate::model::multilevel::LevelsPlan::balance`]). The standardisation and the weights are
//! then folded into the returned [`LinearHead`], so prediction is one dot product on raw
//! features.
//!
//! [`nested_lambda`] picks `lambda` from a grid by an inner k-fold split of the training rows
//! only (seeded, [`crate::train::cv::fold_ids`]), maximising the inner folds' mean SRCC (ties:
//! the larger `lambda`); the outer held-out rows never influence it.

use crate::model::multilevel::LinearHead;
use crate::train::cv::fold_ids;
use crate::train::metrics::srcc;

/// Column means and standard deviations (population) of `x`; a zero std becomes 1.
pub fn column_stats(x: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
    let d = x.first().map_or(0, |r| r.len());
    let n = x.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in x {
        for (m, v) in mean.iter_mut().zip(r.iter()) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for r in x {
        for ((s, v), m) in var.iter_mut().zip(r.iter()).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    let std = var.iter().map(|s| (s / n).sqrt()).map(|s| if s > 1e-12 { s } else { 1.0 }).collect();
    (mean, std)
}

/// In-place Cholesky of a symmetric positive-definite `n x n` matrix (row-major, lower factor).
fn cholesky(a: &mut [f64], n: usize) -> Result<(), String> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(format!("matrix not positive definite at row {j}"));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    Ok(())
}

fn cholesky_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..n {
        let mut s = y[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    y
}

/// A training set standardised once, its Gram matrix computed once: fits for many `lambda`.
pub struct RidgeProblem {
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Standardised rows.
    z: Vec<Vec<f64>>,
    gram: Vec<f64>,
    y_mean: f64,
    yc: Vec<f64>,
}

impl RidgeProblem {
    pub fn new(x: &[&[f64]], y: &[f64]) -> Self {
        Self::weighted(x, y, None)
    }

    /// As [`Self::new`], each standardised column then multiplied by `weights[j]` (the
    /// penalty per column becomes `lambda / weights[j]^2`).
    pub fn weighted(x: &[&[f64]], y: &[f64], weights: Option<&[f64]>) -> Self {
        let (mean, mut std) = column_stats(x);
        if let Some(w) = weights {
            assert_eq!(w.len(), std.len(), "one weight per column");
            std.iter_mut().zip(w).for_each(|(s, w)| *s /= w);
        }
        let z: Vec<Vec<f64>> = x.iter().map(|r| r.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect()).collect();
        let n = z.len();
        let mut gram = vec![0.0; n * n];
        {
            use rayon::prelude::*;
            let rows: Vec<Vec<f64>> =
                (0..n).into_par_iter().map(|i| (0..=i).map(|j| z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum()).collect()).collect();
            for (i, r) in rows.iter().enumerate() {
                for (j, &v) in r.iter().enumerate() {
                    gram[i * n + j] = v;
                    gram[j * n + i] = v;
                }
            }
        }
        let y_mean = y.iter().sum::<f64>() / n.max(1) as f64;
        let yc = y.iter().map(|v| v - y_mean).collect();
        Self { mean, std, z, gram, y_mean, yc }
    }

    /// The ridge fit with penalty `lambda` (on standardised features), standardisation folded in.
    pub fn fit(&self, lambda: f64) -> Result<LinearHead, String> {
        let n = self.z.len();
        let mut a = self.gram.clone();
        for i in 0..n {
            a[i * n + i] += lambda;
        }
        cholesky(&mut a, n)?;
        let alpha = cholesky_solve(&a, n, &self.yc);
        let d = self.mean.len();
        let mut wz = vec![0.0; d];
        for (row, &al) in self.z.iter().zip(&alpha) {
            for (w, v) in wz.iter_mut().zip(row) {
                *w += al * v;
            }
        }
        let w: Vec<f64> = wz.iter().zip(&self.std).map(|(w, s)| w / s).collect();
        let bias = self.y_mean - w.iter().zip(&self.mean).map(|(w, m)| w * m).sum::<f64>();
        Ok(LinearHead { w, bias })
    }
}

/// Fits ridge with penalty `lambda` on rows `x`, targets `y`, optional column weights.
pub fn fit(x: &[&[f64]], y: &[f64], lambda: f64, weights: Option<&[f64]>) -> Result<LinearHead, String> {
    RidgeProblem::weighted(x, y, weights).fit(lambda)
}

/// Inner cross-validation of every `lambda` in `grid` on (`x`, `y`) only: the inner folds' mean
/// SRCC per `lambda`, and the chosen `lambda` (best mean, ties to the larger).
pub fn nested_lambda(
    x: &[&[f64]],
    y: &[f64],
    grid: &[f64],
    weights: Option<&[f64]>,
    folds: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>), String> {
    let ids = fold_ids(y.len(), folds, seed);
    let mut sums = vec![0.0; grid.len()];
    for f in 0..folds {
        let tr: Vec<usize> = (0..y.len()).filter(|&i| ids[i] != f).collect();
        let te: Vec<usize> = (0..y.len()).filter(|&i| ids[i] == f).collect();
        let p =
            RidgeProblem::weighted(&tr.iter().map(|&i| x[i]).collect::<Vec<_>>(), &tr.iter().map(|&i| y[i]).collect::<Vec<_>>(), weights);
        let truth: Vec<f64> = te.iter().map(|&i| y[i]).collect();
        for (s, &lambda) in sums.iter_mut().zip(grid) {
            let h = p.fit(lambda)?;
            let pred: Vec<f64> = te.iter().map(|&i| h.predict(x[i])).collect();
            *s += srcc(&pred, &truth).unwrap_or(0.0);
        }
    }
    let means: Vec<f64> = sums.iter().map(|s| s / folds as f64).collect();
    let mut best = 0;
    for (i, m) in means.iter().enumerate() {
        if *m >= means[best] {
            best = i;
        }
    }
    Ok((grid[best], means))
}
