//! Shared test helpers: a seeded generator (candle's CPU rng cannot be seeded).
#![allow(dead_code)]

use candle_core::{Device, Result, Shape, Tensor, Var};
use candle_nn::VarMap;

/// xorshift64* -> uniform and Box-Muller normal values, deterministic from `seed`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub fn randn<S: Into<Shape>>(&mut self, shape: S, std: f64) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.elem_count()).map(|_| self.normal() * std).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    pub fn uniform_tensor<S: Into<Shape>>(&mut self, shape: S, lo: f64, hi: f64) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.elem_count()).map(|_| lo + (hi - lo) * self.uniform()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }
}

/// The LIVE In the Wild Challenge data (`labels.csv`, `images/`): `$KEEPERS_LIVEC`, else
/// `../shared/data/livec` beside the checkout, else `/work/shared/data/livec`. Panics with
/// the places it looked: these tests need the real photos and must not pass without them.
pub fn livec_dir() -> std::path::PathBuf {
    let candidates: Vec<std::path::PathBuf> = std::env::var_os("KEEPERS_LIVEC")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/livec"), "/work/shared/data/livec".into()])
        .collect();
    candidates
        .iter()
        .find(|p| p.join("labels.csv").is_file())
        .cloned()
        .unwrap_or_else(|| panic!("LIVE Challenge data not found; looked in {candidates:?} (set KEEPERS_LIVEC)"))
}

/// Every variable of an EfficientNet-Lite `varmap` set to seeded random values (BatchNorm
/// scales near 1, running variances in 0.5-1.5), returned as `(name, variable)` sorted by name.
pub fn randomise_lite(varmap: &VarMap, rng: &mut Rng) -> Result<Vec<(String, Var)>> {
    let mut vars: Vec<(String, Var)> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in &vars {
        let t = if name.ends_with("running_var") {
            rng.uniform_tensor(var.shape(), 0.5, 1.5)?
        } else if name.ends_with("bn0.weight") || name.ends_with("bn1.weight") || name.ends_with("bn2.weight") {
            (rng.randn(var.shape(), 0.3)? + 1.0)?
        } else {
            rng.randn(var.shape(), 0.5)?
        };
        var.set(&t)?;
    }
    Ok(vars)
}

/// A tiny EfficientNet-Lite for gradient checks: an identity-residual block without expansion
/// (like Lite0's first), then `expanded` stride-2 5x5 blocks with expansion 3; 15 px input.
pub fn tiny_lite(expanded: usize, num_classes: Option<usize>) -> keepers::model::efficientnet_lite::LiteConfig {
    use keepers::model::efficientnet_lite::{LiteConfig, StageConfig};
    LiteConfig {
        stem_channels: 6,
        stages: vec![
            StageConfig { kernel: 3, stride: 1, expand: 1, out_channels: 6, repeats: 1 },
            StageConfig { kernel: 5, stride: 2, expand: 3, out_channels: 5, repeats: expanded },
        ],
        head_channels: 7,
        num_classes,
        bn_eps: 1e-3,
        bn_momentum: 0.01,
        image_size: 15,
    }
}
