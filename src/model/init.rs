//! Reproducible randomness inside the networks: weight initialisation and dropout masks from
//! [`SeededRng`], since candle's CPU generator cannot be seeded (two runs with the same seed
//! must train the same weights, and a resumed run must continue the same way).
//!
//! - [`seeded_init`]: re-draws every new variable of a [`VarMap`] (names not under a
//!   pre-trained prefix) from a generator keyed by the seed and the variable's name, so the
//!   values do not depend on creation order. Matrices and convolution kernels (rank >= 2,
//!   named `*weight`) get He-normal values, `N(0, 2 / fan_in)` (He et al. 2015, the ReLU
//!   networks' initialisation); biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with the fan-in of
//!   their layer's weight (PyTorch's `Linear`/`Conv2d` bias rule). BatchNorm's rank-1 weights
//!   and running statistics keep their constant initial values.
//! - [`Dropout`]: inverted dropout (`x * mask / (1 - p)`) whose masks come from a per-layer
//!   generator advanced on every call: a run repeats exactly given the same seed and the same
//!   sequence of calls.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::rng::SeededRng;

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn normal(rng: &mut SeededRng) -> f64 {
    let (u, v) = (rng.uniform().max(f64::MIN_POSITIVE), rng.uniform());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Re-initialises every variable of `varmap` whose name does not start with one of `keep`
/// (e.g. the pre-trained columns' prefixes), deterministically from `seed`.
pub fn seeded_init(varmap: &VarMap, keep: &[String], seed: u64) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?;
    let fan_in_of = |weight: &str| data.get(weight).filter(|w| w.rank() >= 2).map(|w| w.dims()[1..].iter().product::<usize>());
    for (name, var) in data.iter() {
        if keep.iter().any(|k| name.starts_with(&format!("{k}."))) {
            continue;
        }
        let n = var.elem_count();
        let mut rng = SeededRng::new(seed).fork(name_hash(name));
        let values: Option<Vec<f64>> = if name.ends_with("weight") && var.rank() >= 2 {
            let fan_in: usize = var.dims()[1..].iter().product();
            let std = (2.0 / fan_in.max(1) as f64).sqrt();
            Some((0..n).map(|_| normal(&mut rng) * std).collect())
        } else if let Some(fan_in) = name.strip_suffix("bias").and_then(|stem| fan_in_of(&format!("{stem}weight"))) {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            Some((0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * bound).collect())
        } else {
            None
        };
        if let Some(v) = values {
            var.set(&Tensor::from_vec(v, var.shape(), var.device())?.to_dtype(var.dtype())?)?;
        }
    }
    Ok(())
}

/// Inverted dropout with seeded masks (see the module notes).
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    state: AtomicU64,
}

impl Clone for Dropout {
    fn clone(&self) -> Self {
        Self { p: self.p, state: AtomicU64::new(self.state.load(Ordering::Relaxed)) }
    }
}

impl Dropout {
    /// `p`: probability of dropping; `seed`: the layer's stream.
    pub fn new(p: f32, seed: u64) -> Self {
        Self { p, state: AtomicU64::new(seed) }
    }

    /// A layer's stream from its variable path (so each layer draws its own masks).
    pub fn for_path(p: f32, path: &str) -> Self {
        Self::new(p, name_hash(path))
    }

    /// Restarts the stream (a training run calls this with its seed).
    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p <= 0.0 {
            return Ok(x.clone());
        }
        if self.p >= 1.0 {
            return x.zeros_like();
        }
        let call = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mut rng = SeededRng::new(call);
        let keep = 1.0 - self.p as f64;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.uniform() < keep { scale } else { 0.0 }).collect();
        x * Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?
    }
}
