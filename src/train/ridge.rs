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
//!
//! [`Copies`] add weighted rows tied to the training rows (degraded copies of the photos with
//! targets below their originals', [`crate::train::degrade`]): a weighted least squares, still
//! in closed form; [`nested_lambda_augmented`] keeps every copy in the fold of its original.

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

/// `a . b` with four independent partial sums (lets the compiler use SIMD lanes; the order of
/// the sum is fixed, so results are deterministic).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// In-place Cholesky of a symmetric positive-definite `n x n` matrix (row-major, lower factor;
/// column by column, the rows below the diagonal of each column in parallel).
fn cholesky(a: &mut [f64], n: usize) -> Result<(), String> {
    use rayon::prelude::*;
    for j in 0..n {
        let (head, tail) = a.split_at_mut((j + 1) * n);
        let row_j = &mut head[j * n..(j + 1) * n];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return Err(format!("matrix not positive definite at row {j}"));
        }
        let d = d.sqrt();
        row_j[j] = d;
        let row_j = &row_j[..j];
        tail.par_chunks_mut(n).with_min_len(64).for_each(|row_i| row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / d);
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

/// Extra training rows tied to the rows of a training set: degraded copies of the photos
/// (issue 7; [`crate::train::degrade::KADID_COPIES`]). `rows[k][i]` is copy `k` of row `i`; its
/// target is `lo + (y_i - lo) * frac[k]`, `lo` the lowest target among the training rows it is
/// fitted with (so a copy never scores above its original, and a copy of the worst photo lands
/// on the worst score); every copy enters the least squares with row weight `weight`.
#[derive(Debug, Clone)]
pub struct Copies<'a> {
    pub rows: Vec<Vec<&'a [f64]>>,
    pub frac: Vec<f64>,
    pub weight: f64,
}

impl<'a> Copies<'a> {
    /// The copies of rows `idx` (in that order).
    pub fn subset(&self, idx: &[usize]) -> Copies<'a> {
        Copies {
            rows: self.rows.iter().map(|r| idx.iter().map(|&i| r[i]).collect()).collect(),
            frac: self.frac.clone(),
            weight: self.weight,
        }
    }

    /// Copy targets for originals with targets `y`: `(copy k, row i) -> lo + (y_i - lo) frac_k`.
    pub fn targets(&self, y: &[f64]) -> Vec<Vec<f64>> {
        let lo = y.iter().cloned().fold(f64::INFINITY, f64::min);
        self.frac.iter().map(|f| y.iter().map(|v| lo + (v - lo) * f).collect()).collect()
    }
}

/// A training set standardised once, its Gram matrix computed once: fits for many `lambda`.
///
/// With [`Copies`], the fit minimises `sum_i r_i (y_i - b - z_i . beta)^2 + lambda |beta|^2`
/// with row weights `r_i` (1 for the originals, `copies.weight` for the copies): the columns are
/// scaled by the originals' standard deviation (so `lambda` means the same with or without
/// copies), centred at the weighted mean of all rows and the targets at their weighted mean
/// (which makes that mean the optimal unpenalised intercept), and every row is multiplied by
/// `sqrt(r_i)` before the dual solve.
pub struct RidgeProblem {
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Standardised rows, each times the square root of its row weight.
    z: Vec<Vec<f64>>,
    gram: Vec<f64>,
    y_mean: f64,
    /// Centred targets, each times the square root of its row weight.
    yc: Vec<f64>,
}

impl RidgeProblem {
    pub fn new(x: &[&[f64]], y: &[f64]) -> Self {
        Self::weighted(x, y, None)
    }

    /// As [`Self::new`], each standardised column then multiplied by `weights[j]` (the
    /// penalty per column becomes `lambda / weights[j]^2`).
    pub fn weighted(x: &[&[f64]], y: &[f64], weights: Option<&[f64]>) -> Self {
        Self::augmented(x, y, weights, None)
    }

    /// As [`Self::weighted`], with the degraded copies of `x`'s rows added (see [`Copies`]).
    pub fn augmented(x: &[&[f64]], y: &[f64], weights: Option<&[f64]>, copies: Option<&Copies>) -> Self {
        let (mut mean, mut std) = column_stats(x);
        if let Some(w) = weights {
            assert_eq!(w.len(), std.len(), "one weight per column");
            std.iter_mut().zip(w).for_each(|(s, w)| *s /= w);
        }
        let mut rows: Vec<&[f64]> = x.to_vec();
        let mut ys = y.to_vec();
        let mut r = vec![1.0; x.len()];
        if let Some(c) = copies.filter(|c| c.weight > 0.0) {
            for (cx, cy) in c.rows.iter().zip(c.targets(y)) {
                assert_eq!(cx.len(), x.len(), "one copy per row");
                rows.extend(cx.iter().copied());
                ys.extend(cy);
                r.extend(std::iter::repeat_n(c.weight, cx.len()));
            }
            let total: f64 = r.iter().sum();
            mean.iter_mut().for_each(|m| *m = 0.0);
            for (row, ri) in rows.iter().zip(&r) {
                mean.iter_mut().zip(row.iter()).for_each(|(m, v)| *m += ri * v);
            }
            mean.iter_mut().for_each(|m| *m /= total);
        }
        let z: Vec<Vec<f64>> = rows
            .iter()
            .zip(&r)
            .map(|(row, ri)| {
                let s = ri.sqrt();
                row.iter().zip(&mean).zip(&std).map(|((v, m), sd)| s * (v - m) / sd).collect()
            })
            .collect();
        let gram = gram_matrix(&z);
        let total: f64 = r.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let y_mean = ys.iter().zip(&r).map(|(v, ri)| v * ri).sum::<f64>() / total;
        let yc = ys.iter().zip(&r).map(|(v, ri)| ri.sqrt() * (v - y_mean)).collect();
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

/// `Z Z^T` (row-major `n x n`) of the rows `z`, by candle's f64 matrix product (the rows of the
/// augmented fits are thousands long and 17,920 wide); an empty or zero-width `z` gives zeros.
fn gram_matrix(z: &[Vec<f64>]) -> Vec<f64> {
    let n = z.len();
    let d = z.first().map_or(0, |r| r.len());
    if n == 0 || d == 0 {
        return vec![0.0; n * n];
    }
    let flat: Vec<f64> = z.iter().flatten().copied().collect();
    let t = candle_core::Tensor::from_vec(flat, (n, d), &candle_core::Device::Cpu).expect("rows of equal length");
    let g = t.matmul(&t.t().expect("2-d")).and_then(|g| g.flatten_all()).and_then(|g| g.to_vec1::<f64>());
    let mut g = g.expect("an f64 matrix product on the CPU");
    // Exactly symmetric, whatever the product's summation order.
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (g[i * n + j] + g[j * n + i]);
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
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
    nested_lambda_augmented(x, y, grid, weights, None, folds, seed)
}

/// [`nested_lambda`] with degraded copies: each inner training set is fitted with the copies
/// of its own rows only; the inner held-out rows are scored as originals (their copies, whose
/// targets come from their scores, are left out).
pub fn nested_lambda_augmented(
    x: &[&[f64]],
    y: &[f64],
    grid: &[f64],
    weights: Option<&[f64]>,
    copies: Option<&Copies>,
    folds: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>), String> {
    let ids = fold_ids(y.len(), folds, seed);
    let mut sums = vec![0.0; grid.len()];
    for f in 0..folds {
        let tr: Vec<usize> = (0..y.len()).filter(|&i| ids[i] != f).collect();
        let te: Vec<usize> = (0..y.len()).filter(|&i| ids[i] == f).collect();
        let sub = copies.map(|c| c.subset(&tr));
        let p = RidgeProblem::augmented(
            &tr.iter().map(|&i| x[i]).collect::<Vec<_>>(),
            &tr.iter().map(|&i| y[i]).collect::<Vec<_>>(),
            weights,
            sub.as_ref(),
        );
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
