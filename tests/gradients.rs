//! f64 finite-difference checks of every trainable piece of the backbone: the direct
//! depthwise convolution, the TF SAME padding rule, BatchNorm in training mode (composed, and the
//! CPU's fused op with and without ReLU6, also against the composed one), and a
//! 2-block EfficientNet-Lite with random weights (every parameter).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::Rng;
use keepers::model::batchnorm::BatchNorm;
use keepers::model::depthwise::{DwGeometry, depthwise_conv};
use keepers::model::efficientnet_lite::EfficientNetLite;
use keepers::model::padding::{SamePadding, conv2d_same};
use keepers::train::gradcheck::check_gradients;

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// `sum(y * r)` for a fixed random `r`, so every output element has its own weight.
fn weighted_sum(y: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
    (y * r)?.sum_all()
}

#[test]
fn depthwise_conv_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(1);
    // (kernel, stride, H, W): odd and even sizes, so SAME padding is symmetric and asymmetric.
    for &(k, s, h, w) in &[(3, 1, 6, 5), (3, 2, 8, 8), (5, 2, 9, 6), (5, 1, 5, 7), (3, 2, 7, 7)] {
        let geom = DwGeometry { kernel: k, stride: s, pad: SamePadding::new(h, w, k, s) };
        let (oh, ow) = geom.out_hw(h, w);
        let x = Var::from_tensor(&rng.randn((2, h, w, 3), 1.0)?)?;
        let wt = Var::from_tensor(&rng.randn((k, k, 3), 1.0)?)?;
        let r = rng.randn((2, oh, ow, 3), 1.0)?;
        let rep = check_gradients(&[&x, &wt], || weighted_sum(&depthwise_conv(&x, &wt, geom)?, &r), EPS, 10_000)?;
        assert!(rep.max_scaled_err < TOL, "k{k} s{s} {h}x{w}: {rep:?}");
        assert!(rep.max_numeric > 0.1);
    }
    Ok(())
}

#[test]
fn same_padding_conv_gradients_and_values() -> candle_core::Result<()> {
    let mut rng = Rng::new(2);
    for &(h, w, k, s) in &[(8, 8, 3, 2), (7, 6, 3, 2), (9, 9, 5, 2), (6, 6, 3, 1)] {
        let x = Var::from_tensor(&rng.randn((2, 3, h, w), 1.0)?)?;
        let wt = Var::from_tensor(&rng.randn((4, 3, k, k), 1.0)?)?;
        let y = conv2d_same(&x, &wt, s)?;
        assert_eq!(y.dims(), &[2, 4, h.div_ceil(s), w.div_ceil(s)]);
        // Value check against a direct loop with the TF rule's padding.
        let p = SamePadding::new(h, w, k, s);
        let xs: Vec<f64> = x.flatten_all()?.to_vec1()?;
        let ws: Vec<f64> = wt.flatten_all()?.to_vec1()?;
        let ys: Vec<f64> = y.flatten_all()?.to_vec1()?;
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        for n in 0..2 {
            for o in 0..4 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for c in 0..3 {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - p.top as isize;
                                    let ix = (ox * s + kx) as isize - p.left as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    acc += xs[((n * 3 + c) * h + iy as usize) * w + ix as usize] * ws[((o * 3 + c) * k + ky) * k + kx];
                                }
                            }
                        }
                        let got = ys[((n * 4 + o) * oh + oy) * ow + ox];
                        assert!((got - acc).abs() < 1e-10, "{h}x{w} k{k} s{s} at {n},{o},{oy},{ox}: {got} vs {acc}");
                    }
                }
            }
        }
        let r = rng.randn(y.shape(), 1.0)?;
        let rep = check_gradients(&[&x, &wt], || weighted_sum(&conv2d_same(&x, &wt, s)?, &r), EPS, 10_000)?;
        assert!(rep.max_scaled_err < TOL, "{h}x{w} k{k} s{s}: {rep:?}");
    }
    Ok(())
}

#[test]
fn batchnorm_training_gradients_and_running_stats() -> candle_core::Result<()> {
    let mut rng = Rng::new(3);
    let c = 4;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let bn = BatchNorm::new(c, 1e-3, 0.1, vb)?;
    // Random affine parameters so the check is not at gamma = 1, beta = 0.
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name == "weight" || name == "bias" {
            var.set(&rng.randn(c, 1.0)?)?;
        }
    }
    let x = Var::from_tensor(&(rng.randn((2, 3, 5, c), 2.0)? + 0.5)?)?;
    let r = rng.randn((2, 3, 5, c), 1.0)?;
    let params: Vec<Var> = {
        let d = varmap.data().lock().unwrap();
        vec![d["weight"].clone(), d["bias"].clone()]
    };
    let rep = check_gradients(&[&x, &params[0], &params[1]], || weighted_sum(&bn.forward_t(&x, true)?, &r), EPS, 10_000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");

    // Running statistics after exactly one training step from (0, 1), computed by hand.
    let bn = BatchNorm::new(c, 1e-3, 0.1, VarBuilder::from_varmap(&VarMap::new(), DType::F64, &Device::Cpu))?;
    bn.forward_t(&x, true)?;
    let xs: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let m = xs.len() / c;
    let rm: Vec<f64> = bn.running_mean().to_vec1()?;
    let rv: Vec<f64> = bn.running_var().to_vec1()?;
    for ch in 0..c {
        let vals: Vec<f64> = xs.iter().skip(ch).step_by(c).copied().collect();
        let mean = vals.iter().sum::<f64>() / m as f64;
        let unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
        assert!((rm[ch] - 0.1 * mean).abs() < 1e-12, "running mean {ch}");
        assert!((rv[ch] - (0.9 + 0.1 * unbiased)).abs() < 1e-12, "running var {ch}");
    }
    // Evaluation mode uses the running statistics.
    let y = bn.forward_t(&x, false)?;
    let ys: Vec<f64> = y.flatten_all()?.to_vec1()?;
    for (i, (&xv, &yv)) in xs.iter().zip(&ys).enumerate() {
        let ch = i % c;
        let want = (xv - rm[ch]) / (rv[ch] + 1e-3).sqrt();
        assert!((yv - want).abs() < 1e-12);
    }
    Ok(())
}

/// A BatchNorm on `c` channels with seeded random gamma and beta, and its trainable variables.
fn random_bn(c: usize, dtype: DType, rng: &mut Rng) -> candle_core::Result<(BatchNorm, Vec<Var>)> {
    let varmap = VarMap::new();
    let bn = BatchNorm::new(c, 1e-3, 0.1, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu))?;
    let d = varmap.data().lock().unwrap();
    for name in ["weight", "bias", "running_mean"] {
        d[name].set(&rng.randn(c, 1.0)?.to_dtype(dtype)?)?;
    }
    d["running_var"].set(&rng.uniform_tensor(c, 0.5, 2.0)?.to_dtype(dtype)?)?;
    Ok((bn, vec![d["weight"].clone(), d["bias"].clone()]))
}

#[test]
fn fused_batchnorm_relu6_gradients() -> candle_core::Result<()> {
    // Batch norm + ReLU6 as one op: inputs spread so that some outputs clip at 0 and at 6.
    let mut rng = Rng::new(5);
    let c = 3;
    let (bn, p) = random_bn(c, DType::F64, &mut rng)?;
    p[0].set(&(p[0].as_tensor() * 4.0)?)?;
    let x = Var::from_tensor(&(rng.randn((2, 4, 3, c), 2.0)? + 0.5)?)?;
    let y: Vec<f64> = bn.forward_relu6_t(&x, true)?.flatten_all()?.to_vec1()?;
    assert!(y.contains(&0.0) && y.contains(&6.0) && y.iter().any(|&v| v > 0.0 && v < 6.0), "{y:?}");
    let r = rng.randn((2, 4, 3, c), 1.0)?;
    // Training mode (batch statistics) and evaluation mode (running statistics, `x a + b`).
    for train in [true, false] {
        let rep = check_gradients(&[&x, &p[0], &p[1]], || weighted_sum(&bn.forward_relu6_t(&x, train)?, &r), EPS, 10_000)?;
        assert!(rep.max_scaled_err < TOL, "train {train}: {rep:?}");
        assert!(rep.max_numeric > 0.1);
    }
    Ok(())
}

#[test]
fn fused_batchnorm_matches_the_composed_ops() -> candle_core::Result<()> {
    // The CPU's fused ops against the same layer written with candle ops (what other devices
    // run), in training and in evaluation mode: outputs, every gradient, the running statistics. 2 x 30 x 25 = 1,500 rows, more
    // than one of the op's row chunks.
    let cases = [(DType::F64, 1e-11), (DType::F32, 2e-5)];
    for ((dtype, tol), train, relu6) in cases.iter().flat_map(|&c| [(c, true, true), (c, true, false), (c, false, true), (c, false, false)])
    {
        let mut rng = Rng::new(6);
        let c = 12;
        let x = Var::from_tensor(&(rng.randn((2, 30, 25, c), 1.5)? + 0.7)?.to_dtype(dtype)?)?;
        let r = rng.randn((2, 30, 25, c), 1.0)?.to_dtype(dtype)?;
        let mut results = Vec::new();
        for fused in [true, false] {
            let (bn, p) = random_bn(c, dtype, &mut Rng::new(7))?;
            let y = match (fused, relu6) {
                (true, true) => bn.forward_relu6_t(&x, train)?,
                (true, false) => bn.forward_t(&x, train)?,
                (false, true) => bn.forward_t_composed(&x, train)?.clamp(0f32, 6f32)?,
                (false, false) => bn.forward_t_composed(&x, train)?,
            };
            let grads = weighted_sum(&y, &r)?.backward()?;
            let flat = |t: &Tensor| -> candle_core::Result<Vec<f64>> { t.to_dtype(DType::F64)?.flatten_all()?.to_vec1() };
            let mut vals = vec![flat(&y)?];
            for v in [x.as_tensor(), p[0].as_tensor(), p[1].as_tensor()] {
                vals.push(flat(grads.get(v).expect("a gradient for every input"))?);
            }
            vals.push(flat(bn.running_mean())?);
            vals.push(flat(bn.running_var())?);
            results.push(vals);
        }
        for (k, what) in ["output", "dx", "dgamma", "dbeta", "running mean", "running var"].iter().enumerate() {
            let (a, b) = (&results[0][k], &results[1][k]);
            let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0.0f64, |m, (u, v)| m.max((u - v).abs())) / scale;
            assert!(err < tol, "{dtype:?} train {train} relu6 {relu6} {what}: fused and composed differ by {err:e} (relative to {scale})");
        }
    }
    Ok(())
}

#[test]
fn fused_batchnorm_is_the_same_on_any_number_of_threads_and_keeps_nan() -> candle_core::Result<()> {
    // Training must repeat bit for bit: the op's sums run over fixed row chunks in a fixed order.
    let mut rng = Rng::new(8);
    let c = 16;
    let x = Var::from_tensor(&rng.randn((3, 40, 30, c), 1.0)?.to_dtype(DType::F32)?)?;
    let r = rng.randn((3, 40, 30, c), 1.0)?.to_dtype(DType::F32)?;
    let run = |threads: usize| -> candle_core::Result<Vec<Vec<f32>>> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (bn, p) = random_bn(c, DType::F32, &mut Rng::new(9))?;
            let y = bn.forward_relu6_t(&x, true)?;
            let g = weighted_sum(&y, &r)?.backward()?;
            let mut out = vec![y.flatten_all()?.to_vec1()?, bn.running_var().to_vec1()?];
            for v in [x.as_tensor(), p[0].as_tensor(), p[1].as_tensor()] {
                out.push(g.get(v).unwrap().flatten_all()?.to_vec1()?);
            }
            Ok(out)
        })
    };
    let one = run(1)?;
    for threads in [2, 3] {
        assert!(run(threads)? == one, "{threads} threads differ from one");
    }

    // A NaN input makes its channel NaN (a diverging run must show a NaN loss), not 0 or 6.
    let (bn, _) = random_bn(2, DType::F64, &mut Rng::new(10))?;
    let x = Tensor::new(&[[1.0f64, 2.0], [f64::NAN, 0.5], [3.0, -1.0]], &Device::Cpu)?;
    for train in [true, false] {
        let y: Vec<Vec<f64>> = bn.forward_relu6_t(&x, train)?.to_vec2()?;
        assert!(y[1][0].is_nan(), "train {train}: {y:?}");
        if train {
            assert!(y.iter().all(|row| row[0].is_nan()), "the batch mean of channel 0 is NaN: {y:?}");
        }
        assert!(y.iter().all(|row| row[1].is_finite()), "channel 1 has no NaN: {y:?}");
    }
    Ok(())
}

#[test]
fn two_block_lite_every_parameter_gradient() -> candle_core::Result<()> {
    let mut rng = Rng::new(4);
    let cfg = common::tiny_lite(1, Some(4));
    let varmap = VarMap::new();
    let net = EfficientNetLite::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu))?;
    // Seeded random values for every parameter (and positive running variances).
    let vars = common::randomise_lite(&varmap, &mut rng)?;
    let trainable: Vec<&Var> = vars.iter().filter(|(n, _)| !n.contains("running_")).map(|(_, v)| v).collect();
    // stem + bn (3); block without expand: dw, bn1, project, bn2 (6); block with expand: +conv, bn0 (9);
    // head + bn (3); fc weight and bias (2).
    assert_eq!(trainable.len(), 3 + 6 + 9 + 3 + 2);
    let x = rng.randn((3, 3, 15, 15), 1.0)?;
    let r = rng.randn((3, 4), 1.0)?;
    let rep = check_gradients(&trainable, || weighted_sum(&net.forward_t(&x, true)?, &r), 1e-6, 24)?;
    assert!(rep.max_scaled_err < 1e-5, "{rep:?}");
    assert!(rep.checked > 200);
    // Evaluation mode is differentiable too (fine-tuning with frozen statistics).
    let rep = check_gradients(&trainable, || weighted_sum(&net.forward_t(&x, false)?, &r), 1e-6, 8)?;
    assert!(rep.max_scaled_err < 1e-5, "{rep:?}");
    Ok(())
}

/// The checker itself fails a wrong gradient: candle's `softmax_last_dim` passes none.
#[test]
fn checker_catches_a_missing_gradient() -> candle_core::Result<()> {
    let mut rng = Rng::new(5);
    let x = Var::from_tensor(&rng.randn((2, 5), 1.0)?)?;
    let r = rng.randn((2, 5), 1.0)?;
    let broken = check_gradients(&[&x], || weighted_sum(&candle_nn::ops::softmax_last_dim(&x)?, &r), EPS, 100);
    // Either candle refuses the backward pass or the gradient it returns is wrong.
    if let Ok(rep) = broken {
        assert!(rep.max_abs_err > 1e-2, "a missing gradient went unnoticed: {rep:?}");
    }
    let good = check_gradients(&[&x], || weighted_sum(&candle_nn::ops::softmax(&x, 1)?, &r), EPS, 100)?;
    assert!(good.max_scaled_err < TOL, "{good:?}");
    Ok(())
}
