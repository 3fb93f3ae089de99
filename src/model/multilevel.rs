//! Multi-level features of the frozen ImageNet Lite0 for technical quality (issue 7).
//!
//! The final pooled 1280-d feature of an ImageNet network is tuned to semantics and is largely
//! blind to low-level distortions (blur, noise, JPEG blocking, exposure); the early stages still
//! see them. Blind IQA with frozen CNNs (hyper-column / multi-level features, e.g. Hosu et al.,
//! "Effective Aesthetics Prediction with Multi-level Spatially Pooled Features", CVPR 2019,
//! and Zhang et al.'s DBCNN features) pools *every* stage and regresses on the concatenation.
//!
//! Here the BN-folded Lite0 ([`FoldedLite::features_tapped`]) runs once and the maps a plan's
//! [`Taps`] name are pooled per channel into their spatial mean and standard deviation.
//! [`Taps::Stages`] (the shipped plan) pools 9 levels:
//!
//! | level | 0 stem | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 head |
//! |---|---|---|---|---|---|---|---|---|---|
//! | channels | 32 | 16 | 24 | 40 | 80 | 112 | 192 | 320 | 1280 |
//!
//! Layout of one vector ([`STATS_DIM`] = 4192 values): for each level in that order, the `C`
//! means, then the `C` standard deviations (population std over the `h x w` positions). The
//! head level's means are exactly the pooled 1280-d feature of [`FoldedLite::features`]
//! (what the taste panel stores), computed by the same pass.
//!
//! [`Taps::Depthwise`] pools instead each of the 16 inverted-residual blocks' *expanded*
//! activation after its depthwise convolution, BN and ReLU6 (before the projection;
//! [`DW_CHANNELS`], [`DW_DIM`] = 17920 values, same layout), the widest and least compressed
//! representation each block has; [`Taps::All`] is the stage vector followed by the depthwise
//! one. On the LIVE Challenge these fit the MOS better (nested CV SRCC 0.81-0.82 against 0.78),
//! but read added noise as detail, so they fail the acceptance check
//! ([`crate::train::degrade`]) and are not shipped; see `weights/quality.md`.
//!
//! A photo is described by one or more *views* ([`View`]), each one such vector:
//! - [`View::Grid`]: the mean over the app's grid patches
//!   ([`super::quality::grid_patches`], native 224 patches) of each patch's own vector;
//! - [`View::Full`]: the whole photo through the network at its own resolution;
//! - [`View::Half`]: the whole photo at half size (triangle filter);
//!
//! plus optionally BRISQUE's 36 features ([`super::brisque::features`]). The quality head on
//! top is a linear model ([`LinearHead`], fitted by ridge regression in
//! [`crate::train::ridge`]) on the concatenation in the order of [`LevelsPlan::views`], then
//! BRISQUE. Being linear, it also scores each grid patch for the heatmap: a patch's score is
//! the photo's score with the grid view's photo vector replaced by the patch's own vector
//! (see [`LinearHead::patch_scores`]), so the photo score is the mean of the patch scores
//! when the grid is the only view.

use candle_core::{D, DType, Device, Result, Tensor};
use image::RgbImage;
use image::imageops::{self, FilterType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::brisque;
use super::efficientnet_lite::{FoldedLite, Tap};
use super::systems::patches_tensor;

/// Channels of Lite0's levels: stem, the seven stages, the head.
pub const LEVEL_CHANNELS: [usize; 9] = [32, 16, 24, 40, 80, 112, 192, 320, 1280];
/// Length of one multi-level vector: mean and std of every channel of every level.
pub const STATS_DIM: usize = 2 * (32 + 16 + 24 + 40 + 80 + 112 + 192 + 320 + 1280);
/// Channels of Lite0's 16 blocks' expanded (depthwise) activations.
pub const DW_CHANNELS: [usize; 16] = [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152];
/// Channels of [`Taps::All`]: the stage levels, then the depthwise activations.
pub const ALL_CHANNELS: [usize; 25] =
    [32, 16, 24, 40, 80, 112, 192, 320, 1280, 32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152];
/// Length of one depthwise-tap vector.
pub const DW_DIM: usize = 2 * 8960;
/// Offset of the head level's means (the pooled 1280-d feature) inside a vector.
pub const HEAD_MEAN_OFFSET: usize = STATS_DIM - 2 * 1280;

/// Per-channel spatial mean and std of an NHWC map: `(N, 2C)` = `[means, stds]` (population
/// std, two passes). Both averages are a batched matmul with a `1 / (h w)` row: candle's
/// reduction over a middle dimension is strided and single-threaded, and was a fifth of the
/// whole scoring time on the 16 depthwise taps.
fn mean_std_pool(map: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = map.dims4()?;
    let flat = map.reshape((n, h * w, c))?;
    let avg = Tensor::full(1.0 / (h * w) as f64, (1, 1, h * w), map.device())?.to_dtype(map.dtype())?.repeat((n, 1, 1))?;
    let mean = avg.matmul(&flat)?;
    let var = avg.matmul(&flat.broadcast_sub(&mean)?.sqr()?)?;
    Tensor::cat(&[mean.squeeze(1)?, var.sqrt()?.squeeze(1)?], D::Minus1)
}

/// Which intermediate maps of the network a plan pools (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Taps {
    /// The 9 levels: the stem, the output of each of the 7 stages, the head ([`STATS_DIM`] values).
    #[default]
    Stages,
    /// The 16 blocks' expanded activations after their depthwise convolution ([`DW_DIM`] values).
    Depthwise,
    /// Both: the stage vector, then the depthwise vector.
    All,
}

impl Taps {
    /// Channels of each tapped map, in the order of the vector.
    pub fn channels(self) -> &'static [usize] {
        match self {
            Taps::Stages => &LEVEL_CHANNELS,
            Taps::Depthwise => &DW_CHANNELS,
            Taps::All => &ALL_CHANNELS,
        }
    }

    /// Length of one vector: mean and std of every channel of every tapped map.
    pub fn dim(self) -> usize {
        2 * self.channels().iter().sum::<usize>()
    }

    fn wants(self, tap: Tap) -> bool {
        match self {
            Taps::Stages => matches!(tap, Tap::Stem | Tap::Stage(_)),
            Taps::Depthwise => matches!(tap, Tap::Depthwise(_)),
            Taps::All => true,
        }
    }
}

/// Multi-level vectors `(N, taps.dim())` of normalised images `x` `(N, 3, H, W)` (any size of at
/// least 32 px a side), and the final pooled features `(N, 1280)` of the same pass.
pub fn multilevel_stats(net: &FoldedLite, x: &Tensor, taps: Taps) -> Result<(Tensor, Tensor)> {
    let (mut parts, mut dw) = (Vec::with_capacity(taps.channels().len()), Vec::new());
    let f = net.features_tapped(x, &mut |tap, map| {
        if taps.wants(tap) {
            let pooled = mean_std_pool(map)?;
            if matches!(tap, Tap::Depthwise(_)) { dw.push(pooled) } else { parts.push(pooled) }
        }
        Ok(())
    })?;
    if taps != Taps::Depthwise {
        parts.push(mean_std_pool(&f.map)?);
    }
    parts.append(&mut dw);
    let stats = Tensor::cat(&parts, D::Minus1)?;
    if stats.dim(1)? != taps.dim() {
        candle_core::bail!("multi-level vector of {} values, expected {} (not Lite0?)", stats.dim(1)?, taps.dim());
    }
    Ok((stats, f.pooled))
}

/// A photo-level view the quality head reads (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    Grid,
    Full,
    Half,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::Grid => "grid",
            View::Full => "full",
            View::Half => "half",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "grid" => Some(View::Grid),
            "full" => Some(View::Full),
            "half" => Some(View::Half),
            _ => None,
        }
    }
}

/// Which views (in order), whether BRISQUE's features follow them, and how the blocks are
/// balanced in the ridge fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelsPlan {
    pub views: Vec<View>,
    pub brisque: bool,
    /// Block balance `b` of the ridge fit: after standardisation every block (one statistic,
    /// mean or std, of one level of one view; BRISQUE's 36 features are one block) of `C`
    /// columns is multiplied by `C^(-b/2)`, so its share of the squared norm goes as `C^(1-b)`:
    /// `b = 0` weighs every column alike (the 1280-d head dominates), `b = 1` every block alike.
    #[serde(default)]
    pub balance: f64,
    /// Signed power `sign(v) |v|^p` applied to every multi-level value of the photo vector
    /// (and of each patch's vector for the heatmap); 1 = none. BRISQUE's values are left as
    /// they are.
    #[serde(default = "one")]
    pub power: f64,
    /// The maps pooled into each view's vector (absent in plans saved before it existed:
    /// [`Taps::Stages`]).
    #[serde(default)]
    pub taps: Taps,
    /// Training only: the row weight of the degraded copies of every training photo
    /// ([`crate::train::degrade::KADID_COPIES`], [`crate::train::ridge::Copies`]) in the ridge
    /// fit; 0 = none. Copies exist for the grid view only, so a plan with a weight has no other
    /// view and no BRISQUE. Inference ignores it.
    #[serde(default)]
    pub augment: f64,
}

fn one() -> f64 {
    1.0
}

/// `sign(v) |v|^p`.
fn signed_power(v: f64, p: f64) -> f64 {
    if p == 1.0 { v } else { v.signum() * v.abs().powf(p) }
}

impl LevelsPlan {
    /// Length of the concatenated photo vector.
    pub fn dim(&self) -> usize {
        self.views.len() * self.taps.dim() + if self.brisque { brisque::FEATURES } else { 0 }
    }

    /// Short name, e.g. `grid+full+brisque` (`:b0.5` appended for a balance other than 0).
    pub fn name(&self) -> String {
        let mut v: Vec<&str> = self.views.iter().map(|v| v.name()).collect();
        if self.brisque {
            v.push("brisque");
        }
        let mut name = v.join("+");
        if self.balance != 0.0 {
            name.push_str(&format!(":b{}", self.balance));
        }
        if self.power != 1.0 {
            name.push_str(&format!(":p{}", self.power));
        }
        match self.taps {
            Taps::Stages => {}
            Taps::Depthwise => name.push_str(":dw"),
            Taps::All => name.push_str(":all"),
        }
        if self.augment != 0.0 {
            name.push_str(&format!(":a{}", self.augment));
        }
        name
    }

    /// Per-column weights of the ridge fit (see [`Self::balance`]).
    pub fn column_weights(&self) -> Vec<f64> {
        let mut w = Vec::with_capacity(self.dim());
        let mut block = |c: usize| w.extend(std::iter::repeat_n((c as f64).powf(-self.balance / 2.0), c));
        for _ in &self.views {
            for &c in self.taps.channels() {
                block(c);
                block(c);
            }
        }
        if self.brisque {
            block(brisque::FEATURES);
        }
        w
    }

    /// `views` joined by `+` (`grid`, `full`, `half`, `brisque`), optionally followed by
    /// `:b<balance>`, `:p<power>`, `:dw` / `:all` (the depthwise taps, or every tap) and / or
    /// `:a<weight>` (degraded copies of the training photos with that row weight; grid-only
    /// plans).
    pub fn parse(s: &str) -> Option<Self> {
        let mut opts = s.split(':');
        let views = opts.next()?;
        let mut plan = LevelsPlan { views: Vec::new(), brisque: false, balance: 0.0, power: 1.0, taps: Taps::Stages, augment: 0.0 };
        for o in opts {
            let num = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite());
            if o == "dw" || o == "all" {
                plan.taps = if o == "dw" { Taps::Depthwise } else { Taps::All };
                continue;
            }
            match o.split_at_checked(1)? {
                ("b", v) => plan.balance = num(v)?,
                ("p", v) => plan.power = num(v).filter(|p| *p > 0.0)?,
                ("a", v) => plan.augment = num(v).filter(|a| *a >= 0.0)?,
                _ => return None,
            }
        }
        for part in views.split('+') {
            if part == "brisque" {
                plan.brisque = true;
            } else {
                let v = View::parse(part)?;
                if plan.views.contains(&v) {
                    return None;
                }
                plan.views.push(v);
            }
        }
        let grid_only = plan.views == [View::Grid] && !plan.brisque;
        ((!plan.views.is_empty() || plan.brisque) && (plan.augment == 0.0 || grid_only)).then_some(plan)
    }
}

/// One photo's multi-level features: what the quality head and the heatmap need.
#[derive(Debug, Clone)]
pub struct PhotoLevels {
    /// Each grid patch's multi-level vector `(patches, taps.dim())` (row-major grid order).
    pub grid: Tensor,
    /// Each grid patch's final pooled Lite0 feature `(patches, 1280)`.
    pub grid_pooled: Tensor,
    /// Whole photo at its own resolution `(taps.dim())`, when the plan asks for it.
    pub full: Option<Vec<f32>>,
    /// Whole photo at half size, when asked for.
    pub half: Option<Vec<f32>>,
    /// BRISQUE's 36 features of the whole photo, when asked for.
    pub brisque: Option<Vec<f64>>,
}

impl PhotoLevels {
    /// Mean of the grid patches' vectors.
    pub fn grid_mean(&self) -> Result<Vec<f32>> {
        self.grid.mean(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()
    }

    /// The concatenated photo vector of `plan`, in f64.
    pub fn photo_vector(&self, plan: &LevelsPlan) -> Result<Vec<f64>> {
        let mut v = Vec::with_capacity(plan.dim());
        for view in &plan.views {
            let part = match view {
                View::Grid => self.grid_mean()?,
                View::Full => self.full.clone().ok_or_else(|| candle_core::Error::Msg("no full-photo features".into()))?,
                View::Half => self.half.clone().ok_or_else(|| candle_core::Error::Msg("no half-size features".into()))?,
            };
            v.extend(part.iter().map(|&x| signed_power(x as f64, plan.power)));
        }
        if plan.brisque {
            let b = self.brisque.as_ref().ok_or_else(|| candle_core::Error::Msg("no BRISQUE features".into()))?;
            v.extend(b.iter().map(|&x| if x.is_finite() { x } else { 0.0 }));
        }
        Ok(v)
    }
}

/// The whole-photo views: the photo itself at its own resolution (enlarged so its shorter side
/// is at least 64) and at half size.
fn whole_view(img: &RgbImage, view: View) -> RgbImage {
    let (w, h) = img.dimensions();
    let (tw, th) = match view {
        View::Half => ((w / 2).max(1), (h / 2).max(1)),
        _ => (w, h),
    };
    let s = (64.0 / tw.min(th) as f64).max(1.0);
    let (tw, th) = ((tw as f64 * s).round() as u32, (th as f64 * s).round() as u32);
    if (tw, th) == (w, h) { img.clone() } else { imageops::resize(img, tw, th, FilterType::Triangle) }
}

/// Multi-level features of `images` under `plan`: every photo's grid patches
/// (`grids[i]`, the patches the app scores) through `net` in batches of `batch`, the whole-photo
/// views one photo at a time, BRISQUE in parallel. The same function serves the app's
/// inference ([`super::quality::QualityModel`]) and training / cross-validation.
pub fn photo_levels(
    net: &FoldedLite,
    images: &[&RgbImage],
    grids: &[Vec<&RgbImage>],
    plan: &LevelsPlan,
    batch: usize,
    device: &Device,
) -> Result<Vec<PhotoLevels>> {
    let all: Vec<&RgbImage> = grids.iter().flatten().copied().collect();
    let (mut stats, mut pooled) = (Vec::new(), Vec::new());
    for chunk in all.chunks(batch.max(1)) {
        let (s, p) = multilevel_stats(net, &patches_tensor(chunk, DType::F32, device)?, plan.taps)?;
        stats.push(s);
        pooled.push(p);
    }
    let (stats, pooled) = if all.is_empty() {
        (Tensor::zeros((0, plan.taps.dim()), DType::F32, device)?, Tensor::zeros((0, 1280), DType::F32, device)?)
    } else {
        (Tensor::cat(&stats, 0)?, Tensor::cat(&pooled, 0)?)
    };
    let brisques: Vec<Option<Vec<f64>>> =
        if plan.brisque { images.par_iter().map(|img| Some(brisque::features(img).to_vec())).collect() } else { vec![None; images.len()] };
    let whole = |img: &RgbImage, view: View| -> Result<Option<Vec<f32>>> {
        if !plan.views.contains(&view) {
            return Ok(None);
        }
        let v = whole_view(img, view);
        let (s, _) = multilevel_stats(net, &patches_tensor(&[&v], DType::F32, device)?, plan.taps)?;
        Ok(Some(s.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?))
    };
    let mut out = Vec::with_capacity(images.len());
    let mut offset = 0;
    for ((img, grid), b) in images.iter().zip(grids).zip(brisques) {
        let n = grid.len();
        out.push(PhotoLevels {
            grid: stats.narrow(0, offset, n)?,
            grid_pooled: pooled.narrow(0, offset, n)?,
            full: whole(img, View::Full)?,
            half: whole(img, View::Half)?,
            brisque: b,
        });
        offset += n;
    }
    Ok(out)
}

/// A linear quality head on a [`LevelsPlan`]'s photo vector: `score = bias + w . x`, on the MOS
/// scale (the training standardisation is folded into `w` and `bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    pub w: Vec<f64>,
    pub bias: f64,
}

impl LinearHead {
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.bias + self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
    }

    /// Photo score and each grid patch's score: the patch's own vector stands in for the grid
    /// view's photo vector (mean of the patches); with no grid view in the plan, for the
    /// full-photo view; with neither, every patch gets the photo score.
    pub fn patch_scores(&self, plan: &LevelsPlan, levels: &PhotoLevels) -> Result<(f64, Vec<f64>)> {
        let x = levels.photo_vector(plan)?;
        let photo = self.predict(&x);
        let n = levels.grid.dim(0)?;
        let slot = plan.views.iter().position(|v| *v == View::Grid).or_else(|| plan.views.iter().position(|v| *v == View::Full));
        let Some(slot) = slot else { return Ok((photo, vec![photo; n])) };
        let d = plan.taps.dim();
        let ws = &self.w[slot * d..(slot + 1) * d];
        let xs = &x[slot * d..(slot + 1) * d];
        let base = photo - ws.iter().zip(xs).map(|(w, x)| w * x).sum::<f64>();
        let rows = levels.grid.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let patches =
            rows.iter().map(|r| base + ws.iter().zip(r).map(|(w, &x)| w * signed_power(x as f64, plan.power)).sum::<f64>()).collect();
        Ok((photo, patches))
    }
}
