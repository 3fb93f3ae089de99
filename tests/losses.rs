//! The seed systems' losses (`keepers::train::losses`): values against plain f64 loops written
//! beside each test (never by calling the function under test), f64 finite-difference gradient
//! checks of every loss, paper 001's eq. 8 for MP_ada's gradient, MP_min's draw, the EMD's
//! square root at p == q, MPEMD's clamp regimes, and invariance to the order of patches.

// The reference computations are index loops over plain nested Vecs on purpose: they read like
// the papers' sums.
#![allow(clippy::needless_range_loop, clippy::type_complexity)]

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::Rng;
use keepers::rng::SeededRng;
use keepers::train::gradcheck::check_gradients;
use keepers::train::losses::*;

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

// ---- plain-f64 references -----------------------------------------------------------

fn ref_log_softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = x.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
    x.iter().map(|v| v - lse).collect()
}

fn ref_softmax(x: &[f64]) -> Vec<f64> {
    ref_log_softmax(x).iter().map(|v| v.exp()).collect()
}

/// `((1/K) sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)`.
fn ref_emd(p: &[f64], q: &[f64], r: u32) -> f64 {
    let (mut cp, mut cq, mut acc) = (0.0, 0.0, 0.0);
    for k in 0..p.len() {
        cp += p[k];
        cq += q[k];
        acc += (cp - cq).abs().powi(r as i32);
    }
    (acc / p.len() as f64).powf(1.0 / r as f64)
}

/// Logits `(B, P, C)` as nested vectors.
fn vec3(t: &Tensor) -> Result<Vec<Vec<Vec<f64>>>> {
    t.to_dtype(DType::F64)?.to_vec3()
}

/// Correct-class probabilities `p[b][i]` of multi-patch logits.
fn ref_patch_probs(logits: &[Vec<Vec<f64>>], target: &[u32]) -> Vec<Vec<f64>> {
    logits.iter().zip(target).map(|(img, &y)| img.iter().map(|row| ref_softmax(row)[y as usize]).collect()).collect()
}

/// Two-class logits `[0, ln((1-p)/p)]` whose class-0 probability is `p`.
fn pair_with_prob(p: f64) -> [f64; 2] {
    [0.0, ((1.0 - p) / p).ln()]
}

fn targets(v: &[u32]) -> Result<Tensor> {
    Tensor::new(v, &Device::Cpu)
}

/// Random distributions `(rows, k)`: softmax of normal logits with the given spread.
fn random_dists(rng: &mut Rng, rows: usize, k: usize, spread: f64) -> Result<Tensor> {
    let mut v = Vec::with_capacity(rows * k);
    for _ in 0..rows {
        let z: Vec<f64> = (0..k).map(|_| rng.normal() * spread).collect();
        v.extend(ref_softmax(&z));
    }
    Tensor::from_vec(v, (rows, k), &Device::Cpu)
}

// ---- cross-entropy and BCE ------------------------------------------------------------

#[test]
fn cross_entropy_values() -> Result<()> {
    // Hand: [0, 0] with target 0 -> ln 2; [0, ln 3] with target 1 -> p = 3/4 -> -ln(3/4).
    let logits = Tensor::new(&[[0.0f64, 0.0], [0.0, 3f64.ln()]], &Device::Cpu)?;
    let got = scalar(&cross_entropy(&logits, &targets(&[0, 1])?)?)?;
    let want = (2f64.ln() - 0.75f64.ln()) / 2.0;
    assert!(close(got, want, 1e-14), "{got} vs {want}");

    // No overflow with huge logits: [1000, 0], target 1 -> 1000.
    let big = Tensor::new(&[[1000.0f64, 0.0]], &Device::Cpu)?;
    let got = scalar(&cross_entropy(&big, &targets(&[1])?)?)?;
    assert!(close(got, 1000.0, 1e-14), "{got}");

    let mut rng = Rng::new(11);
    let logits = rng.randn((6, 5), 2.0)?;
    let y = [0u32, 4, 2, 2, 1, 3];
    let rows: Vec<Vec<f64>> = logits.to_vec2()?;
    let want = -rows.iter().zip(&y).map(|(r, &c)| ref_log_softmax(r)[c as usize]).sum::<f64>() / 6.0;
    let got = scalar(&cross_entropy(&logits, &targets(&y)?)?)?;
    assert!(close(got, want, 1e-13), "{got} vs {want}");
    Ok(())
}

#[test]
fn binary_cross_entropy_values() -> Result<()> {
    let s = 3f64.ln(); // sigmoid(ln 3) = 3/4
    let logits = Tensor::new(&[[0.0f64, 0.0, s, s]], &Device::Cpu)?;
    let t = Tensor::new(&[[1.0f64, 0.0, 1.0, 0.5]], &Device::Cpu)?;
    let want = (2f64.ln() + 2f64.ln() - 0.75f64.ln() - (0.5 * 0.75f64.ln() + 0.5 * 0.25f64.ln())) / 4.0;
    let got = scalar(&binary_cross_entropy_multilabel(&logits, &t)?)?;
    assert!(close(got, want, 1e-14), "{got} vs {want}");

    // Stable at extreme logits: x = 100, t = 0 and x = -100, t = 1 both cost 100.
    let logits = Tensor::new(&[[100.0f64, -100.0]], &Device::Cpu)?;
    let t = Tensor::new(&[[0.0f64, 1.0]], &Device::Cpu)?;
    let got = scalar(&binary_cross_entropy_multilabel(&logits, &t)?)?;
    assert!(close(got, 100.0, 1e-14), "{got}");

    // Random, against the naive form -(t ln s + (1 - t) ln(1 - s)) (fine at moderate logits).
    let mut rng = Rng::new(12);
    let logits = rng.randn((4, 7), 1.5)?;
    let t = rng.uniform_tensor((4, 7), 0.0, 1.0)?;
    let (xs, ts): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (logits.to_vec2()?, t.to_vec2()?);
    let mut acc = 0.0;
    for (xr, tr) in xs.iter().zip(&ts) {
        for (&x, &tt) in xr.iter().zip(tr) {
            let sg = 1.0 / (1.0 + (-x).exp());
            acc -= tt * sg.ln() + (1.0 - tt) * (1.0 - sg).ln();
        }
    }
    let want = acc / 28.0;
    let got = scalar(&binary_cross_entropy_multilabel(&logits, &t)?)?;
    assert!(close(got, want, 1e-13), "{got} vs {want}");
    Ok(())
}

#[test]
fn classification_gradients() -> Result<()> {
    let mut rng = Rng::new(13);
    let x = Var::from_tensor(&rng.randn((5, 4), 1.5)?)?;
    let y = targets(&[3, 0, 1, 1, 2])?;
    let rep = check_gradients(&[&x], || cross_entropy(&x, &y), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "cross_entropy {rep:?}");
    println!("cross_entropy max_scaled_err {:.2e}", rep.max_scaled_err);

    // BCE, with some logits exactly 0 (where relu and abs have their kinks; the sum is smooth).
    let mut v: Vec<f64> = rng.randn((4, 6), 2.0)?.flatten_all()?.to_vec1()?;
    v[0] = 0.0;
    v[7] = 0.0;
    v[20] = 0.0;
    let x = Var::from_tensor(&Tensor::from_vec(v.clone(), (4, 6), &Device::Cpu)?)?;
    let t = rng.uniform_tensor((4, 6), 0.0, 1.0)?;
    let tv: Vec<f64> = t.flatten_all()?.to_vec1()?;
    let rep = check_gradients(&[&x], || binary_cross_entropy_multilabel(&x, &t), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "bce {rep:?}");
    println!("bce max_scaled_err {:.2e}", rep.max_scaled_err);
    // And the closed form (sigmoid(x) - t) / (B L), exact at x = 0 too.
    let g = binary_cross_entropy_multilabel(&x, &t)?.backward()?;
    let got: Vec<f64> = g.get(&x).unwrap().flatten_all()?.to_vec1()?;
    for i in 0..24 {
        let want = (1.0 / (1.0 + (-v[i]).exp()) - tv[i]) / 24.0;
        assert!((got[i] - want).abs() < 1e-15, "bce grad {i}: {} vs {want}", got[i]);
    }
    Ok(())
}

// ---- multi-patch objectives (paper 001) ------------------------------------------------

/// One image, two patches with correct-class probabilities 1/2 and 1/4.
fn two_patch_example() -> Result<(Tensor, Tensor)> {
    let (a, b) = (pair_with_prob(0.5), pair_with_prob(0.25));
    Ok((Tensor::new(&[[a, b]], &Device::Cpu)?, targets(&[0])?))
}

#[test]
fn multi_patch_hand_values() -> Result<()> {
    let (logits, y) = two_patch_example()?;
    let (la, lb) = (0.5f64.ln(), 0.25f64.ln());
    // MP_avg = -(ln 1/2 + ln 1/4) / 2.
    let got = scalar(&mp_avg(&logits, &y)?)?;
    assert!(close(got, -(la + lb) / 2.0, 1e-14), "mp_avg {got}");
    // MP_ada, beta = 1/2: w = 1 - sqrt(1/2), 1 - 1/2.
    let want = -((1.0 - 0.5f64.sqrt()) * la + 0.5 * lb) / 2.0;
    let got = scalar(&mp_ada(&logits, &y, MP_ADA_BETA)?)?;
    assert!(close(got, want, 1e-14), "mp_ada {got} vs {want}");
    // MP_min (hard): the 1/4 patch, with eq. 5's 1/|P|.
    let got = scalar(&mp_min_hard(&logits, &y)?)?;
    assert!(close(got, -lb / 2.0, 1e-14), "mp_min_hard {got}");
    assert_eq!(mp_min_hard_choice(&logits, &y)?, vec![1]);
    let got = scalar(&mp_min_at(&logits, &y, &[0])?)?;
    assert!(close(got, -la / 2.0, 1e-14), "mp_min_at {got}");
    Ok(())
}

#[test]
fn multi_patch_random_values() -> Result<()> {
    let mut rng = Rng::new(21);
    let (b, p, c) = (3, 4, 3);
    let logits = rng.randn((b, p, c), 1.5)?;
    let yv = [2u32, 0, 1];
    let y = targets(&yv)?;
    let probs = ref_patch_probs(&vec3(&logits)?, &yv);
    for &beta in &[0.5, 2.0] {
        let (mut avg, mut ada, mut hard) = (0.0, 0.0, 0.0);
        for row in &probs {
            let mut lowest = f64::INFINITY;
            for &q in row {
                avg -= q.ln() / p as f64;
                ada -= (1.0 - q.powf(beta)) * q.ln() / p as f64;
                lowest = lowest.min(q);
            }
            hard -= lowest.ln() / p as f64;
        }
        let n = b as f64;
        assert!(close(scalar(&mp_avg(&logits, &y)?)?, avg / n, 1e-13));
        assert!(close(scalar(&mp_ada(&logits, &y, beta)?)?, ada / n, 1e-13), "beta {beta}");
        assert!(close(scalar(&mp_min_hard(&logits, &y)?)?, hard / n, 1e-13));
    }
    Ok(())
}

#[test]
fn multi_patch_gradients() -> Result<()> {
    let mut rng = Rng::new(22);
    let x = Var::from_tensor(&rng.randn((3, 4, 5), 1.5)?)?;
    let y = targets(&[4, 0, 2])?;
    let mut worst: f64 = 0.0;
    let checks: Vec<(&str, Box<dyn Fn() -> Result<Tensor>>)> = vec![
        ("mp_avg", Box::new(|| mp_avg(&x, &y))),
        ("mp_ada(0.5)", Box::new(|| mp_ada(&x, &y, 0.5))),
        ("mp_ada(2)", Box::new(|| mp_ada(&x, &y, 2.0))),
        ("mp_min_at", Box::new(|| mp_min_at(&x, &y, &[1, 3, 0]))),
        ("mp_min_hard", Box::new(|| mp_min_hard(&x, &y))),
        // A fixed draw: the same seed on every call (finite steps of 1e-6 do not change it).
        (
            "mp_min(seed 5)",
            Box::new(|| {
                let mut r = SeededRng::new(5);
                mp_min(&x, &y, &mut || r.uniform())
            }),
        ),
    ];
    for (name, f) in &checks {
        let rep = check_gradients(&[&x], f, EPS, 1000)?;
        assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "{name}: {rep:?}");
        worst = worst.max(rep.max_scaled_err);
    }
    println!("multi-patch max_scaled_err {worst:.2e}");

    // MP_min: only the chosen patch of each image has a gradient.
    let g = mp_min_at(&x, &y, &[1, 3, 0])?.backward()?;
    let g = vec3(g.get(&x).unwrap())?;
    for (bi, &chosen) in [1usize, 3, 0].iter().enumerate() {
        for pi in 0..4 {
            let norm: f64 = g[bi][pi].iter().map(|v| v.abs()).sum();
            assert_eq!(norm > 0.0, pi == chosen, "image {bi} patch {pi}: {norm}");
        }
    }
    Ok(())
}

/// eq. 8: d MP_ada / d p = (1/|P|) lambda, lambda = (1 - (1 + beta ln p)(1 - w)) / p. Our loss
/// is -MP_ada averaged over B images, so d loss / d p_bi = -lambda_bi / (B P). A detached w
/// would give -w / (p B P) instead, which this test tells apart.
#[test]
fn mp_ada_gradient_is_eq8() -> Result<()> {
    let mut rng = Rng::new(23);
    let (b, p) = (3, 5);
    let pv = Var::from_tensor(&rng.uniform_tensor((b, p), 0.02, 0.98)?)?;
    let probs: Vec<f64> = pv.flatten_all()?.to_vec1()?;
    for &beta in &[0.5, 2.0] {
        let g = mp_ada_from_log_probs(&pv.log()?, beta)?.backward()?;
        let got: Vec<f64> = g.get(&pv).unwrap().flatten_all()?.to_vec1()?;
        let mut max_detached_gap: f64 = 0.0;
        for (i, &q) in probs.iter().enumerate() {
            let w = 1.0 - q.powf(beta);
            let lambda = (1.0 - (1.0 + beta * q.ln()) * (1.0 - w)) / q;
            let want = -lambda / (b * p) as f64;
            assert!((got[i] - want).abs() < 1e-12 * want.abs().max(1.0), "beta {beta} p {q}: {} vs {want}", got[i]);
            max_detached_gap = max_detached_gap.max((lambda - w / q).abs() / (b * p) as f64);
        }
        assert!(max_detached_gap > 1e-2, "the check cannot tell a detached w apart: {max_detached_gap}");
    }

    // The same through the logits, by the chain rule dp/dz_c = p (1[c = y] - s_c).
    let x = Var::from_tensor(&rng.randn((b, p, 4), 1.5)?)?;
    let yv = [1u32, 3, 0];
    let beta = MP_ADA_BETA;
    let g = mp_ada(&x, &targets(&yv)?, beta)?.backward()?;
    let got = vec3(g.get(&x).unwrap())?;
    let xs = vec3(&x)?;
    for bi in 0..b {
        for pi in 0..p {
            let s = ref_softmax(&xs[bi][pi]);
            let q = s[yv[bi] as usize];
            let lambda = (1.0 - (1.0 + beta * q.ln()) * q.powf(beta)) / q;
            for c in 0..4 {
                let dp_dz = q * (if c == yv[bi] as usize { 1.0 } else { 0.0 } - s[c]);
                let want = -lambda * dp_dz / (b * p) as f64;
                assert!((got[bi][pi][c] - want).abs() < 1e-12, "({bi},{pi},{c}): {} vs {want}", got[bi][pi][c]);
            }
        }
    }
    Ok(())
}

#[test]
fn mp_min_draw_is_proportional_to_one_minus_p_and_seeded() -> Result<()> {
    // 20000 copies of one image with patch probabilities 0.1, 0.5, 0.9 and exactly 1.
    let n = 20_000;
    let image = [pair_with_prob(0.1), pair_with_prob(0.5), pair_with_prob(0.9), [0.0, -1000.0]];
    let logits = Tensor::new(&[image], &Device::Cpu)?.broadcast_as((n, 4, 2))?.contiguous()?;
    let y = Tensor::zeros(n, DType::U32, &Device::Cpu)?;
    let mut rng = SeededRng::new(31);
    let mut calls = 0;
    let chosen = mp_min_sample(&logits, &y, &mut || {
        calls += 1;
        rng.uniform()
    })?;
    assert_eq!(calls, n, "one uniform per image");
    let mut freq = [0.0; 4];
    for &c in &chosen {
        freq[c] += 1.0 / n as f64;
    }
    let w = [0.9, 0.5, 0.1, 0.0];
    let total: f64 = w.iter().sum();
    for i in 0..4 {
        // Binomial standard deviation is below 0.0035 here.
        assert!((freq[i] - w[i] / total).abs() < 0.015, "patch {i}: {} vs {}", freq[i], w[i] / total);
    }
    assert_eq!(freq[3], 0.0, "a patch with p = 1 is never drawn");

    // Deterministic from the seed, and mp_min is mp_min_at of its draw.
    let small = logits.narrow(0, 0, 16)?;
    let ys = y.narrow(0, 0, 16)?;
    let draw = |seed| {
        let mut r = SeededRng::new(seed);
        mp_min_sample(&small, &ys, &mut || r.uniform())
    };
    assert_eq!(draw(7)?, draw(7)?);
    assert_ne!(draw(7)?, draw(8)?);
    let mut r = SeededRng::new(7);
    let loss = scalar(&mp_min(&small, &ys, &mut || r.uniform())?)?;
    let want: f64 = draw(7)?.iter().map(|&c| -[0.1f64, 0.5, 0.9, 1.0][c].ln() / 4.0).sum::<f64>() / 16.0;
    assert!(close(loss, want, 1e-12), "{loss} vs {want}");

    // Every patch certain: uniform fallback, never an error.
    let certain = Tensor::new(&[[[0.0f64, -1000.0], [0.0, -1000.0], [0.0, -1000.0]]], &Device::Cpu)?;
    let picks: Vec<usize> =
        (0..3).map(|k| mp_min_sample(&certain, &targets(&[0]).unwrap(), &mut || (k as f64 + 0.5) / 3.0).unwrap()[0]).collect();
    assert_eq!(picks, vec![0, 1, 2]);
    // A uniform source out of [0, 1) is an error.
    assert!(mp_min_sample(&certain, &targets(&[0])?, &mut || 1.0).is_err());
    Ok(())
}

// ---- EMD (paper 003 eq. 7) ------------------------------------------------------------

#[test]
fn emd_hand_values() -> Result<()> {
    let p = Tensor::new(&[[1.0f64, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], &Device::Cpu)?;
    let q = Tensor::new(&[[0.0f64, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]], &Device::Cpu)?;
    // CDF differences: [1, 1, 0], [1, 0, 0], [1/2, 1/2, 0].
    let r1 = [2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
    let r2 = [(2.0f64 / 3.0).sqrt(), (1.0f64 / 3.0).sqrt(), (1.0f64 / 6.0).sqrt()];
    let e1: Vec<f64> = emd_each(&p, &q, 1)?.to_vec1()?;
    let e2: Vec<f64> = emd_each(&p, &q, 2)?.to_vec1()?;
    for i in 0..3 {
        assert!(close(e1[i], r1[i], 1e-15) && close(e2[i], r2[i], 1e-15), "row {i}: {} {}", e1[i], e2[i]);
    }
    assert!(close(scalar(&emd(&p, &q, 1)?)?, r1.iter().sum::<f64>() / 3.0, 1e-15));
    assert!(close(scalar(&emd(&p, &q, 2)?)?, r2.iter().sum::<f64>() / 3.0, 1e-15));
    // Symmetric, and an ordered distance: [0,0,1] is nearer [0,1,0] than [1,0,0].
    assert!(close(scalar(&emd(&q, &p, 2)?)?, scalar(&emd(&p, &q, 2)?)?, 1e-15));
    assert!(r2[1] < r2[0]);

    // Random 10-bin distributions, and from logits.
    let mut rng = Rng::new(41);
    let p = random_dists(&mut rng, 5, 10, 1.0)?;
    let q = random_dists(&mut rng, 5, 10, 1.0)?;
    let logits = rng.randn((5, 10), 1.0)?;
    let (pv, qv, lv): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>) = (p.to_vec2()?, q.to_vec2()?, logits.to_vec2()?);
    for r in [1, 2] {
        let want = (0..5).map(|i| ref_emd(&pv[i], &qv[i], r)).sum::<f64>() / 5.0;
        assert!(close(scalar(&emd(&p, &q, r)?)?, want, 1e-14), "r {r}");
        let want = (0..5).map(|i| ref_emd(&ref_softmax(&lv[i]), &qv[i], r)).sum::<f64>() / 5.0;
        assert!(close(scalar(&emd_loss_from_logits(&logits, &q, r)?)?, want, 1e-14), "logits r {r}");
    }
    assert!(emd(&p, &q, 3).is_err());
    assert!(emd(&p, &q.narrow(1, 0, 9)?, 2).is_err());
    Ok(())
}

#[test]
fn emd_gradients() -> Result<()> {
    let mut rng = Rng::new(42);
    let mut worst: f64 = 0.0;
    for r in [1, 2] {
        // As a function of any two vectors (away from zero CDF differences, where r = 1 has kinks).
        let p = Var::from_tensor(&rng.uniform_tensor((4, 6), 0.0, 1.0)?)?;
        let q = Var::from_tensor(&rng.uniform_tensor((4, 6), 0.0, 1.0)?)?;
        let rep = check_gradients(&[&p, &q], || emd(&p, &q, r), EPS, 1000)?;
        assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "emd r {r}: {rep:?}");
        worst = worst.max(rep.max_scaled_err);
        // From logits against a fixed target distribution.
        let x = Var::from_tensor(&rng.randn((4, 10), 1.0)?)?;
        let t = random_dists(&mut rng, 4, 10, 1.0)?;
        let rep = check_gradients(&[&x], || emd_loss_from_logits(&x, &t, r), EPS, 1000)?;
        assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.001, "emd_loss_from_logits r {r}: {rep:?}");
        worst = worst.max(rep.max_scaled_err);
    }
    println!("emd max_scaled_err {worst:.2e}");
    Ok(())
}

#[test]
fn emd_r2_at_equal_distributions_has_zero_gradient_not_nan() -> Result<()> {
    for dtype in [DType::F64, DType::F32] {
        let mut rng = Rng::new(43);
        let dist = random_dists(&mut rng, 3, 10, 1.0)?;
        let onehot = Tensor::new(&[[0.0f64, 1.0, 0.0, 0.0]], &Device::Cpu)?;
        for t in [dist, onehot] {
            let t = t.to_dtype(dtype)?;
            let p = Var::from_tensor(&t)?;
            let loss = emd(&p, &t, 2)?;
            assert_eq!(scalar(&loss)?, 0.0);
            let g = loss.backward()?;
            let g: Vec<f64> = g.get(&p).unwrap().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            assert!(g.iter().all(|v| *v == 0.0), "{dtype:?}: {g:?}");
        }
        // From logits, target the identical softmax.
        let x = Var::from_tensor(&rng.randn((3, 10), 1.0)?.to_dtype(dtype)?)?;
        let t = softmax_last(&x)?.detach();
        let loss = emd_loss_from_logits(&x, &t, 2)?;
        let g = loss.backward()?;
        let g: Vec<f64> = g.get(&x).unwrap().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        assert!(scalar(&loss)? == 0.0 && g.iter().all(|v| v.is_finite()), "{dtype:?}: {g:?}");
    }
    // A difference in one bin only still has the exact (finite) gradient.
    let q = Tensor::new(&[[0.25f64, 0.25, 0.25, 0.25]], &Device::Cpu)?;
    let p = Var::from_tensor(&Tensor::new(&[[0.25f64 + 1e-9, 0.25 - 1e-9, 0.25, 0.25]], &Device::Cpu)?)?;
    let g = emd(&p, &q, 2)?.backward()?;
    let g: Vec<f64> = g.get(&p).unwrap().flatten_all()?.to_vec1()?;
    // d/dp_j sqrt(mean_k d_k^2) = sum_{k >= j} d_k / (K e); here d = [1e-9, 0, 0, 0], e = 1e-9 / 2.
    // (d_2..d_4 are rounding residues of 0.25 +- 1e-9 - 0.25, so those entries are ~1e-8.)
    assert!(close(g[0], 0.5, 1e-6) && g[1..].iter().all(|v| v.abs() < 1e-6), "{g:?}");
    Ok(())
}

// ---- MPEMD (paper 004) ----------------------------------------------------------------

fn ref_mpemd(logits: &[Vec<Vec<f64>>], target: &[Vec<f64>], k: f64, eps: f64, gamma: Option<f64>) -> f64 {
    let (b, p) = (logits.len(), logits[0].len());
    let mut total = 0.0;
    for bi in 0..b {
        for pi in 0..p {
            let e = ref_emd(&ref_softmax(&logits[bi][pi]), &target[bi], 2);
            let c = (1.0 - k * e).max(eps).min(1.0);
            let w = gamma.map_or(1.0, |g| 1.0 - c.powf(g));
            total -= w * c.ln() / p as f64;
        }
    }
    total / b as f64
}

#[test]
fn mpemd_values() -> Result<()> {
    // Hand: prediction exactly [1, 0, 0], target [0, 0, 1]: EMD = sqrt(2/3) = 0.8165.
    let logits = Tensor::new(&[[[0.0f64, -1000.0, -1000.0]]], &Device::Cpu)?;
    let t = Tensor::new(&[[0.0f64, 0.0, 1.0]], &Device::Cpu)?;
    let c = 1.0 - (2.0f64 / 3.0).sqrt();
    assert!(close(scalar(&mpemd_avg(&logits, &t, 1.0, 1e-6)?)?, -c.ln(), 1e-14));
    assert!(close(scalar(&mpemd_ada(&logits, &t, 1.0, 1e-6, 0.5)?)?, -(1.0 - c.sqrt()) * c.ln(), 1e-14));
    // With k = 3 the certainty is clamped at eps.
    assert!(close(scalar(&mpemd_avg(&logits, &t, 3.0, 1e-6)?)?, -(1e-6f64).ln(), 1e-14));
    // A perfect prediction: EMDc = 1, loss 0.
    let perfect = Tensor::new(&[[0.0f64, 0.0, 1.0]], &Device::Cpu)?;
    let perfect_logits = Tensor::new(&[[[-1000.0f64, -1000.0, 0.0]]], &Device::Cpu)?;
    assert_eq!(scalar(&mpemd_avg(&perfect_logits, &perfect, MPEMD_K, MPEMD_EPS)?)?, 0.0);
    assert_eq!(scalar(&mpemd_ada(&perfect_logits, &perfect, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA)?)?, 0.0);

    // Random batches, against the loop.
    let mut rng = Rng::new(51);
    let logits = rng.randn((3, 4, 10), 1.0)?;
    let t = random_dists(&mut rng, 3, 10, 1.0)?;
    let (lv, tv) = (vec3(&logits)?, t.to_vec2::<f64>()?);
    for &(k, eps, gamma) in &[(MPEMD_K, MPEMD_EPS, MPEMD_GAMMA), (2.0, 1e-3, 2.0), (8.0, 1e-2, 0.25)] {
        let want = ref_mpemd(&lv, &tv, k, eps, None);
        assert!(close(scalar(&mpemd_avg(&logits, &t, k, eps)?)?, want, 1e-13), "avg k {k}");
        let want = ref_mpemd(&lv, &tv, k, eps, Some(gamma));
        assert!(close(scalar(&mpemd_ada(&logits, &t, k, eps, gamma)?)?, want, 1e-13), "ada k {k}");
    }
    Ok(())
}

#[test]
fn mpemd_gradients_and_clamp_regimes() -> Result<()> {
    let mut rng = Rng::new(52);
    let (b, p, kb) = (2, 3, 10);
    // Interior: every certainty strictly inside (eps, 1).
    let x = Var::from_tensor(&rng.randn((b, p, kb), 0.7)?)?;
    let t = random_dists(&mut rng, b, kb, 0.5)?;
    let c: Vec<f64> = mpemd_certainty(&x, &t, MPEMD_K, MPEMD_EPS)?.flatten_all()?.to_vec1()?;
    assert!(c.iter().all(|&v| v > 0.05 && v < 0.99), "not interior: {c:?}");
    let mut worst: f64 = 0.0;
    for (name, rep) in [
        ("avg", check_gradients(&[&x], || mpemd_avg(&x, &t, MPEMD_K, MPEMD_EPS), EPS, 1000)?),
        ("ada", check_gradients(&[&x], || mpemd_ada(&x, &t, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA), EPS, 1000)?),
        ("ada gamma 2", check_gradients(&[&x], || mpemd_ada(&x, &t, MPEMD_K, MPEMD_EPS, 2.0), EPS, 1000)?),
    ] {
        assert!(rep.max_scaled_err < TOL && rep.max_numeric > 1e-3, "{name}: {rep:?}");
        worst = worst.max(rep.max_scaled_err);
    }
    println!("mpemd interior max_scaled_err {worst:.2e}");

    // Lower clamp: patch 0 of image 0 puts all its mass on bin 1 while the votes are spread
    // (EMD ~ 0.5 > 1/3, so 1 - 3 EMD < eps): EMDc = eps, that patch has no gradient; the
    // other patches still do.
    let mut v = vec3(&x)?;
    v[0][0] = (0..kb).map(|i| if i == 0 { 10.0 } else { -10.0 }).collect();
    let tv: Vec<Vec<f64>> = t.to_vec2()?;
    let flat: Vec<f64> = v.iter().flatten().flatten().cloned().collect();
    let x2 = Var::from_tensor(&Tensor::from_vec(flat, (b, p, kb), &Device::Cpu)?)?;
    let t2 = Tensor::new(tv.clone(), &Device::Cpu)?;
    let c: Vec<Vec<f64>> = mpemd_certainty(&x2, &t2, MPEMD_K, MPEMD_EPS)?.to_vec2()?;
    assert_eq!(c[0][0], MPEMD_EPS);
    assert!(c.iter().flatten().skip(1).all(|&v| v > 0.05), "{c:?}");
    for (name, loss) in [("avg", mpemd_avg(&x2, &t2, MPEMD_K, MPEMD_EPS)?), ("ada", mpemd_ada(&x2, &t2, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA)?)]
    {
        let g = vec3(loss.backward()?.get(&x2).unwrap())?;
        assert!(g[0][0].iter().all(|v| *v == 0.0), "{name}: clamped patch has gradient {:?}", g[0][0]);
        assert!(g[0][1].iter().any(|v| v.abs() > 1e-6), "{name}: unclamped patch has none");
    }
    let want = ref_mpemd(&v, &tv, MPEMD_K, MPEMD_EPS, None);
    assert!(close(scalar(&mpemd_avg(&x2, &t2, MPEMD_K, MPEMD_EPS)?)?, want, 1e-13));
    // The finite differences agree (the clamped patch is far from the boundary).
    let rep = check_gradients(&[&x2], || mpemd_ada(&x2, &t2, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "clamped batch: {rep:?}");

    // Upper end: a patch predicting its target exactly (EMD = 0, EMDc = 1): loss 0 for it and
    // a zero, finite gradient.
    let mut v3 = v.clone();
    let mut tv3 = tv.clone();
    tv3[1] = (0..kb).map(|i| if i == 4 { 1.0 } else { 0.0 }).collect();
    for pi in 0..p {
        v3[1][pi] = (0..kb).map(|i| if i == 4 { 0.0 } else { -1000.0 }).collect();
    }
    let flat: Vec<f64> = v3.iter().flatten().flatten().cloned().collect();
    let x3 = Var::from_tensor(&Tensor::from_vec(flat, (b, p, kb), &Device::Cpu)?)?;
    let t3 = Tensor::new(tv3.clone(), &Device::Cpu)?;
    let c: Vec<Vec<f64>> = mpemd_certainty(&x3, &t3, MPEMD_K, MPEMD_EPS)?.to_vec2()?;
    assert!(c[1].iter().all(|v| *v == 1.0), "{c:?}");
    for loss in [mpemd_avg(&x3, &t3, MPEMD_K, MPEMD_EPS)?, mpemd_ada(&x3, &t3, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA)?] {
        let g = vec3(loss.backward()?.get(&x3).unwrap())?;
        assert!(g.iter().flatten().flatten().all(|v| v.is_finite()));
        assert!(g[1].iter().flatten().all(|v| *v == 0.0), "{:?}", g[1]);
    }
    let want = ref_mpemd(&v3, &tv3, MPEMD_K, MPEMD_EPS, Some(MPEMD_GAMMA));
    assert!(close(scalar(&mpemd_ada(&x3, &t3, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA)?)?, want, 1e-13));
    Ok(())
}

// ---- invariances, dtypes, helpers ------------------------------------------------------

/// Reorders the patches of each image by its own permutation.
fn permute_patches(x: &Tensor, perms: &[Vec<usize>]) -> Result<Tensor> {
    let v = vec3(x)?;
    let (b, p, c) = x.dims3()?;
    let mut out: Vec<f64> = Vec::with_capacity(b * p * c);
    for (img, perm) in v.iter().zip(perms) {
        for &i in perm {
            out.extend(&img[i]);
        }
    }
    Tensor::from_vec(out, (b, p, c), &Device::Cpu)
}

#[test]
fn multi_patch_losses_ignore_patch_order() -> Result<()> {
    let mut rng = Rng::new(61);
    let x = rng.randn((3, 5, 10), 1.0)?;
    let perms = vec![vec![4, 2, 0, 1, 3], vec![1, 0, 2, 3, 4], vec![3, 4, 1, 2, 0]];
    let xp = permute_patches(&x, &perms)?;
    assert!(scalar(&(&x - &xp)?.abs()?.sum_all()?)? > 1.0, "the permutation must change the input");
    let y = targets(&[9, 0, 4])?;
    let t = random_dists(&mut rng, 3, 10, 1.0)?;
    let pairs: Vec<(&str, Box<dyn Fn(&Tensor) -> Result<Tensor>>)> = vec![
        ("mp_avg", Box::new(|z| mp_avg(z, &y))),
        ("mp_ada", Box::new(|z| mp_ada(z, &y, MP_ADA_BETA))),
        ("mp_min_hard", Box::new(|z| mp_min_hard(z, &y))),
        ("mpemd_avg", Box::new(|z| mpemd_avg(z, &t, MPEMD_K, MPEMD_EPS))),
        ("mpemd_ada", Box::new(|z| mpemd_ada(z, &t, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA))),
    ];
    for (name, f) in &pairs {
        let (a, b) = (scalar(&f(&x)?)?, scalar(&f(&xp)?)?);
        assert!(close(a, b, 1e-14), "{name}: {a} vs {b}");
    }
    Ok(())
}

#[test]
fn f32_matches_f64() -> Result<()> {
    let mut rng = Rng::new(71);
    let x2 = rng.randn((4, 6), 1.0)?;
    let x3 = rng.randn((4, 3, 10), 1.0)?;
    let y = targets(&[5, 0, 3, 1])?;
    let bt = rng.uniform_tensor((4, 6), 0.0, 1.0)?;
    let d = random_dists(&mut rng, 4, 10, 1.0)?;
    let p = random_dists(&mut rng, 4, 10, 1.0)?;
    let all = |a: &Tensor, b: &Tensor, c: &Tensor, dd: &Tensor, pp: &Tensor| -> Result<Vec<f64>> {
        let mut r = SeededRng::new(3);
        Ok(vec![
            scalar(&cross_entropy(a, &y)?)?,
            scalar(&binary_cross_entropy_multilabel(a, c)?)?,
            scalar(&mp_avg(b, &y)?)?,
            scalar(&mp_ada(b, &y, MP_ADA_BETA)?)?,
            scalar(&mp_min(b, &y, &mut || r.uniform())?)?,
            scalar(&mp_min_hard(b, &y)?)?,
            scalar(&emd(pp, dd, 1)?)?,
            scalar(&emd(pp, dd, 2)?)?,
            scalar(&emd_loss_from_logits(&b.narrow(1, 0, 1)?.squeeze(1)?, dd, 2)?)?,
            scalar(&mpemd_avg(b, dd, MPEMD_K, MPEMD_EPS)?)?,
            scalar(&mpemd_ada(b, dd, MPEMD_K, MPEMD_EPS, MPEMD_GAMMA)?)?,
            scalar(&distribution_mean(pp)?.mean_all()?)?,
            scalar(&distribution_std(pp)?.mean_all()?)?,
        ])
    };
    let want = all(&x2, &x3, &bt, &d, &p)?;
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    let got = all(&f(&x2)?, &f(&x3)?, &f(&bt)?, &f(&d)?, &f(&p)?)?;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(close(*g, *w, 1e-5), "loss {i}: f32 {g} vs f64 {w}");
    }
    Ok(())
}

#[test]
fn distribution_mean_and_std() -> Result<()> {
    let p = Tensor::new(&[[0.0f64, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25]], &Device::Cpu)?;
    let m: Vec<f64> = distribution_mean(&p)?.to_vec1()?;
    let s: Vec<f64> = distribution_std(&p)?.to_vec1()?;
    // Scores 1..4: [3, 0], [2.5, 1.5], [2.5, sqrt(1.25)].
    let (wm, ws) = ([3.0, 2.5, 2.5], [0.0, 1.5, 1.25f64.sqrt()]);
    for i in 0..3 {
        assert!(close(m[i], wm[i], 1e-15) && close(s[i], ws[i], 1e-15), "row {i}: {} {}", m[i], s[i]);
    }
    // Random 10-bin distributions against the loop; gradients; no NaN at zero spread.
    let mut rng = Rng::new(81);
    let d = random_dists(&mut rng, 4, 10, 1.0)?;
    let dv: Vec<Vec<f64>> = d.to_vec2()?;
    let m: Vec<f64> = distribution_mean(&d)?.to_vec1()?;
    let s: Vec<f64> = distribution_std(&d)?.to_vec1()?;
    for i in 0..4 {
        let mean: f64 = dv[i].iter().enumerate().map(|(k, q)| (k + 1) as f64 * q).sum();
        let var: f64 = dv[i].iter().enumerate().map(|(k, q)| ((k + 1) as f64 - mean).powi(2) * q).sum();
        assert!(close(m[i], mean, 1e-14) && close(s[i], var.sqrt(), 1e-14), "row {i}");
    }
    let pv = Var::from_tensor(&rng.uniform_tensor((3, 5), 0.1, 1.0)?)?;
    let rep = check_gradients(&[&pv], || distribution_std(&pv)?.sum_all(), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "std {rep:?}");
    let rep = check_gradients(&[&pv], || distribution_mean(&pv)?.sum_all(), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "mean {rep:?}");
    let onehot = Var::from_tensor(&Tensor::new(&[[0.0f64, 1.0, 0.0]], &Device::Cpu)?)?;
    let g = distribution_std(&onehot)?.sum_all()?.backward()?;
    let g: Vec<f64> = g.get(&onehot).unwrap().flatten_all()?.to_vec1()?;
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    Ok(())
}

#[test]
fn bad_shapes_are_errors() -> Result<()> {
    let x = Tensor::zeros((2, 3, 4), DType::F64, &Device::Cpu)?;
    assert!(cross_entropy(&x.get(0)?, &targets(&[0])?).is_err());
    assert!(mp_avg(&x, &targets(&[0, 1, 2])?).is_err());
    assert!(mp_min_at(&x, &targets(&[0, 1])?, &[0, 3]).is_err());
    assert!(mpemd_avg(&x, &Tensor::zeros((2, 5), DType::F64, &Device::Cpu)?, 3.0, 1e-6).is_err());
    assert!(mpemd_avg(&x, &Tensor::zeros((2, 4), DType::F64, &Device::Cpu)?, 3.0, 0.0).is_err());
    assert!(binary_cross_entropy_multilabel(&x.get(0)?, &Tensor::zeros((3, 5), DType::F64, &Device::Cpu)?).is_err());
    Ok(())
}

/// Multi-patch regression: `log p = -(pred - y)^2 / 2` (paper 001's objectives with a Gaussian
/// likelihood). Hand values on a 1 x 2 example and f64 finite-difference gradients.
#[test]
fn multi_patch_regression_values_and_gradients() -> Result<()> {
    // One image, target 1.0, patches predict 1.0 and 3.0: errors 0 and 2, log p = 0 and -2.
    let pred = Tensor::new(&[[1.0f64, 3.0]], &Device::Cpu)?;
    let y = Tensor::new(&[1.0f64], &Device::Cpu)?;
    let log_p = regression_log_probs(&pred, &y)?;
    assert_eq!(log_p.to_vec2::<f64>()?, vec![vec![0.0, -2.0]]);
    // MP_avg = -(0 + -2)/2 = 1 (half the mean squared error).
    assert!(close(scalar(&mp_avg_from_log_probs(&log_p)?)?, 1.0, 1e-12));
    // MP_ada(0.5): weights 1 - p^0.5 = 0 and 1 - e^-1; loss = -(0 + (1 - e^-1)(-2))/2.
    let want = (1.0 - (-1.0f64).exp()) * 2.0 / 2.0;
    assert!(close(scalar(&mp_ada_from_log_probs(&log_p, 0.5)?)?, want, 1e-12));
    // MP_min: the perfect patch (p = 1) has weight 1 - p = 0 and is never drawn.
    let mut r = SeededRng::new(1);
    for _ in 0..20 {
        assert_eq!(mp_min_sample_from_log_probs(&log_p, &mut || r.uniform())?, vec![1]);
    }
    assert!(close(scalar(&mp_min_at_log_probs(&log_p, &[1])?)?, 1.0, 1e-12));
    // (B, P, 1) predictions are accepted too; a wrong target shape is an error.
    assert_eq!(regression_log_probs(&pred.unsqueeze(2)?, &y)?.to_vec2::<f64>()?, log_p.to_vec2::<f64>()?);
    assert!(regression_log_probs(&pred, &Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?).is_err());

    let mut rng = Rng::new(31);
    let x = Var::from_tensor(&rng.randn((3, 4), 1.0)?)?;
    let t = rng.randn(3, 1.0)?;
    let checks: Vec<(&str, Box<dyn Fn() -> Result<Tensor>>)> = vec![
        ("reg mp_avg", Box::new(|| mp_avg_from_log_probs(&regression_log_probs(&x, &t)?))),
        ("reg mp_ada", Box::new(|| mp_ada_from_log_probs(&regression_log_probs(&x, &t)?, MP_ADA_BETA))),
        ("reg mp_min_at", Box::new(|| mp_min_at_log_probs(&regression_log_probs(&x, &t)?, &[2, 0, 3]))),
    ];
    for (name, f) in &checks {
        let rep = check_gradients(&[&x], f, EPS, 1000)?;
        assert!(rep.max_scaled_err < TOL && rep.max_numeric > 0.01, "{name}: {rep:?}");
    }
    Ok(())
}
