//! The seed networks' own layers: values against direct loops written here, f64
//! finite-difference gradients, and the invariances the papers rely on (DMA aggregation is
//! independent of patch order; ROI pooling ignores the padding).

mod common;

use candle_core::{Device, Tensor, Var};
use common::Rng;
use keepers::model::aggregation::{Statistic, sort_patches, sorting_layer, statistics_layer};
use keepers::model::pooling::{ImageRegion, LrnConfig, local_response_norm, max_pool2d, roi_align, roi_pool};
use keepers::train::gradcheck::check_gradients;

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn weighted_sum(y: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
    (y * r)?.sum_all()
}

fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn statistics_layer_values_and_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(10);
    let (b, m, k) = (2, 5, 3);
    let x = Var::from_tensor(&rng.randn((b, m, k), 1.0)?)?;
    let y = statistics_layer(&x, &Statistic::DMA)?;
    assert_eq!(y.dims(), &[b, 4 * k]);
    // Direct computation: for each image and dimension, sort the M values.
    let xs = vec(&x);
    let ys = vec(&y);
    for bi in 0..b {
        for ki in 0..k {
            let mut t: Vec<f64> = (0..m).map(|mi| xs[(bi * m + mi) * k + ki]).collect();
            let mean = t.iter().sum::<f64>() / m as f64;
            t.sort_by(f64::total_cmp);
            let want = [t[0], t[m - 1], t[m / 2], mean];
            for (u, w) in want.iter().enumerate() {
                assert!((ys[bi * 4 * k + u * k + ki] - w).abs() < 1e-12);
            }
        }
    }
    let r = rng.randn((b, 4 * k), 1.0)?;
    let rep = check_gradients(&[&x], || weighted_sum(&statistics_layer(&x, &Statistic::DMA)?, &r), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    // even M: median is the mean of the two middle values
    let x4 = Var::from_tensor(&rng.randn((1, 4, 2), 1.0)?)?;
    let r4 = rng.randn((1, 2), 1.0)?;
    let rep = check_gradients(&[&x4], || weighted_sum(&statistics_layer(&x4, &[Statistic::Median])?, &r4), EPS, 100)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    Ok(())
}

#[test]
fn sorting_layer_values_and_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(11);
    let (b, m, k) = (2, 5, 4);
    let x = Var::from_tensor(&rng.randn((b, m, k), 1.0)?)?;
    let y = sorting_layer(&x)?;
    assert_eq!(y.dims(), &[b, k * m]);
    let (xs, ys) = (vec(&x), vec(&y));
    for bi in 0..b {
        for ki in 0..k {
            let mut t: Vec<f64> = (0..m).map(|mi| xs[(bi * m + mi) * k + ki]).collect();
            t.sort_by(f64::total_cmp);
            for (j, v) in t.iter().enumerate() {
                assert_eq!(ys[bi * k * m + ki * m + j], *v);
            }
        }
    }
    let r = rng.randn((b, k * m), 1.0)?;
    let rep = check_gradients(&[&x], || weighted_sum(&sorting_layer(&x)?, &r), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    Ok(())
}

/// With ties, each tied value gets the mean gradient of the positions its group occupies, and
/// moving the whole tie group together matches finite differences.
#[test]
fn median_and_sort_with_ties() -> candle_core::Result<()> {
    // One image, one dimension, M = 5: values 1, 2, 2, 3, 4 in shuffled order -> median 2 (tied).
    let x = Var::from_tensor(&Tensor::new(&[[[3.0f64], [2.0], [4.0], [2.0], [1.0]]], &Device::Cpu)?)?;
    let f = || statistics_layer(&x, &[Statistic::Median])?.sum_all();
    assert_eq!(f()?.to_scalar::<f64>()?, 2.0);
    let g = vec(f()?.backward()?.get(&x).unwrap());
    assert_eq!(g, vec![0.0, 0.5, 0.0, 0.5, 0.0]);
    // Directional derivative along the tie (both 2s move together) = sum of their gradients.
    let dir = Tensor::new(&[[[0.0f64], [1.0], [0.0], [1.0], [0.0]]], &Device::Cpu)?;
    let at = |e: f64| -> f64 {
        let xe = (x.as_tensor() + (&dir * e).unwrap()).unwrap();
        statistics_layer(&xe, &[Statistic::Median]).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
    assert!((numeric - (g[1] + g[3])).abs() < 1e-8, "numeric {numeric}");
    // Max with a tie: gradient split, total 1 (candle's reduction would give 2).
    let xm = Var::from_tensor(&Tensor::new(&[[[4.0f64], [1.0], [4.0]]], &Device::Cpu)?)?;
    let gm = vec(statistics_layer(&xm, &[Statistic::Max])?.sum_all()?.backward()?.get(&xm).unwrap());
    assert_eq!(gm, vec![0.5, 0.0, 0.5]);
    // Sorting layer: a tie group averages the gradients of its sorted positions.
    let xs = Var::from_tensor(&Tensor::new(&[[[5.0f64], [5.0], [0.0]]], &Device::Cpu)?)?;
    let w = Tensor::new(&[[1.0f64, 10.0, 100.0]], &Device::Cpu)?; // weights of sorted positions
    let gs = vec(weighted_sum(&sort_patches(&xs)?.squeeze(2)?, &w)?.backward()?.get(&xs).unwrap());
    assert_eq!(gs, vec![55.0, 55.0, 1.0]);
    Ok(())
}

#[test]
fn aggregation_is_invariant_to_patch_order() -> candle_core::Result<()> {
    let mut rng = Rng::new(12);
    let x = rng.randn((3, 5, 6), 1.0)?;
    let perm = Tensor::new(&[3u32, 0, 4, 1, 2], &Device::Cpu)?;
    let xp = x.index_select(&perm, 1)?;
    // Sorting, min, max and median are exactly invariant; the mean up to summation order.
    assert_eq!(vec(&sorting_layer(&x)?), vec(&sorting_layer(&xp)?));
    let (a, b) = (statistics_layer(&x, &Statistic::DMA)?, statistics_layer(&xp, &Statistic::DMA)?);
    let k = 6;
    for (i, (u, v)) in vec(&a).iter().zip(vec(&b)).enumerate() {
        if (i % (4 * k)) / k == 3 {
            assert!((u - v).abs() < 1e-12);
        } else {
            assert_eq!(*u, v);
        }
    }
    Ok(())
}

#[test]
fn max_pool_values_and_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(13);
    for &(h, w, k, s) in &[(9usize, 8usize, 3usize, 2usize), (7, 7, 3, 2), (8, 6, 2, 2), (6, 7, 3, 1)] {
        let x = Var::from_tensor(&rng.randn((2, 3, h, w), 1.0)?)?;
        let y = max_pool2d(&x, k, s)?;
        let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
        assert_eq!(y.dims(), &[2, 3, oh, ow]);
        let (xs, ys) = (vec(&x), vec(&y));
        for p in 0..6 {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = f64::NEG_INFINITY;
                    for dy in 0..k {
                        for dx in 0..k {
                            best = best.max(xs[p * h * w + (i * s + dy) * w + j * s + dx]);
                        }
                    }
                    assert_eq!(ys[(p * oh + i) * ow + j], best);
                }
            }
        }
        let r = rng.randn((2, 3, oh, ow), 1.0)?;
        let rep = check_gradients(&[&x], || weighted_sum(&max_pool2d(&x, k, s)?, &r), EPS, 1000)?;
        assert!(rep.max_scaled_err < TOL, "{h}x{w} k{k} s{s}: {rep:?}");
    }
    Ok(())
}

#[test]
fn lrn_values_and_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(14);
    // Large alpha so the normalisation matters numerically.
    let cfg = LrnConfig { size: 5, k: 2.0, alpha: 0.5, beta: 0.75 };
    let (n, c, h, w) = (2, 7, 3, 4);
    let x = Var::from_tensor(&rng.randn((n, c, h, w), 1.5)?)?;
    let y = local_response_norm(&x, cfg)?;
    let (xs, ys) = (vec(&x), vec(&y));
    for b in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                let at = |cc: usize| xs[(b * c + cc) * h * w + p];
                let lo = ch.saturating_sub(2);
                let hi = (ch + 2).min(c - 1);
                let sum: f64 = (lo..=hi).map(|cc| at(cc).powi(2)).sum();
                let want = at(ch) / (cfg.k + cfg.alpha / 5.0 * sum).powf(cfg.beta);
                assert!((ys[(b * c + ch) * h * w + p] - want).abs() < 1e-12);
            }
        }
    }
    let r = rng.randn((n, c, h, w), 1.0)?;
    let rep = check_gradients(&[&x], || weighted_sum(&local_response_norm(&x, cfg)?, &r), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    Ok(())
}

fn regions() -> Vec<ImageRegion> {
    // Two images on a 40x48 canvas, tau = 4 -> feature maps 10x12: the first fills 9x7 cells,
    // the second 5x12.
    vec![ImageRegion { width: 28.0, height: 36.0 }, ImageRegion { width: 48.0, height: 19.0 }]
}

#[test]
fn roi_pool_values_and_gradients() -> candle_core::Result<()> {
    let mut rng = Rng::new(15);
    let x = Var::from_tensor(&rng.randn((2, 3, 10, 12), 1.0)?)?;
    let out = (4, 3);
    let y = roi_pool(&x, &regions(), 4.0, out)?;
    assert_eq!(y.dims(), &[2, 3, 4, 3]);
    // Direct computation of eq. 1-3.
    let (xs, ys) = (vec(&x), vec(&y));
    for (b, r) in regions().iter().enumerate() {
        let (fh, fw) = ((r.height / 4.0).round() as usize, (r.width / 4.0).round() as usize);
        for ch in 0..3 {
            for m in 0..4 {
                for q in 0..3 {
                    let (rh, rw) = (fh as f64 / 4.0, fw as f64 / 3.0);
                    let (y0, y1) = ((m as f64 * rh).floor() as usize, ((m + 1) as f64 * rh).ceil() as usize);
                    let (x0, x1) = ((q as f64 * rw).floor() as usize, ((q + 1) as f64 * rw).ceil() as usize);
                    let mut best = f64::NEG_INFINITY;
                    for yy in y0..y1.min(fh) {
                        for xx in x0..x1.min(fw) {
                            best = best.max(xs[((b * 3 + ch) * 10 + yy) * 12 + xx]);
                        }
                    }
                    assert_eq!(ys[((b * 3 + ch) * 4 + m) * 3 + q], best);
                }
            }
        }
    }
    let r = rng.randn((2, 3, 4, 3), 1.0)?;
    let rep = check_gradients(&[&x], || weighted_sum(&roi_pool(&x, &regions(), 4.0, out)?, &r), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    Ok(())
}

#[test]
fn roi_align_reproduces_linear_maps_and_has_gradients() -> candle_core::Result<()> {
    // On a map that is linear in (row, col), bilinear sampling is exact away from clamping:
    // a 6x8 region pooled to 3x4 with 2x2 samples averages to the value at each bin centre.
    let (h, w) = (6, 8);
    let vals: Vec<f64> = (0..h * w).map(|i| 2.0 * (i / w) as f64 + 0.5 * (i % w) as f64 + 1.0).collect();
    let x = Tensor::from_vec(vals, (1, 1, h, w), &Device::Cpu)?;
    let y = vec(&roi_align(&x, &[ImageRegion { width: 16.0, height: 12.0 }], 2.0, (3, 4), 2)?);
    for m in 0..3 {
        for q in 0..4 {
            // bin centre in feature units is (m + 0.5) * 2, (q + 0.5) * 2; cell centres at j + 0.5
            let (cy, cx) = ((m as f64 + 0.5) * 2.0 - 0.5, (q as f64 + 0.5) * 2.0 - 0.5);
            let want = 2.0 * cy + 0.5 * cx + 1.0;
            assert!((y[m * 4 + q] - want).abs() < 1e-12, "bin {m},{q}: {} vs {want}", y[m * 4 + q]);
        }
    }
    let mut rng = Rng::new(16);
    let xv = Var::from_tensor(&rng.randn((2, 3, 10, 12), 1.0)?)?;
    let r = rng.randn((2, 3, 3, 5), 1.0)?;
    let rep = check_gradients(&[&xv], || weighted_sum(&roi_align(&xv, &regions(), 4.0, (3, 5), 2)?, &r), EPS, 1000)?;
    assert!(rep.max_scaled_err < TOL, "{rep:?}");
    Ok(())
}

/// Changing every feature outside the image regions (the padding) changes nothing.
#[test]
fn roi_outputs_ignore_the_padding() -> candle_core::Result<()> {
    let mut rng = Rng::new(17);
    let x = rng.randn((2, 3, 10, 12), 1.0)?;
    let mut mask = vec![0f64; 2 * 3 * 10 * 12];
    for (b, r) in regions().iter().enumerate() {
        let (fh, fw) = ((r.height / 4.0).round() as usize, (r.width / 4.0).round() as usize);
        for ch in 0..3 {
            for yy in 0..fh {
                for xx in 0..fw {
                    mask[((b * 3 + ch) * 10 + yy) * 12 + xx] = 1.0;
                }
            }
        }
    }
    let mask = Tensor::from_vec(mask, (2, 3, 10, 12), &Device::Cpu)?;
    let noise = (rng.randn((2, 3, 10, 12), 100.0)? + 50.0)?;
    let x2 = ((&x * &mask)? + (noise * (1.0 - &mask)?)?)?;
    assert_eq!(vec(&roi_pool(&x, &regions(), 4.0, (4, 3))?), vec(&roi_pool(&x2, &regions(), 4.0, (4, 3))?));
    assert_eq!(vec(&roi_align(&x, &regions(), 4.0, (5, 5), 2)?), vec(&roi_align(&x2, &regions(), 4.0, (5, 5), 2)?));
    Ok(())
}
