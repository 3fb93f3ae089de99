//! Cached column features: the backbone runs once per photo, the small-data procedures train
//! only what comes after it (issue 4's "small-data variant": frozen backbone, cached features).
//!
//! For every photo a [`FeaturePlan`] fixes, from a seed, which views and patches are taken:
//! - `warp`: the whole photo resized to 224 x 224 (paper 002's `I_g^w`, the global view);
//! - `center`: shorter side to 224, centre crop (`I_g^c`);
//! - `native`: random 224 x 224 patches at the photo's own resolution (paper 000's DMA bags
//!   draw from these; a single-patch network trains on one of them);
//! - `arp`: aspect-ratio-preserving crops, shorter side 256, 224 crops with flips (papers 001
//!   and 004).
//!
//! Each is the frozen ImageNet Lite0's pooled 1280-d feature (BatchNorm folded: the
//! inference path, identical to the trainable column in evaluation mode up to float
//! rounding). Patches are drawn per photo from `seed` and the photo's file name, so a
//! photo's features depend neither on the other photos in the run nor on its folder.
//!
//! The cache is one safetensors file per photo and plan, named by the sha256 of (path, size,
//! mtime, plan, weights sha256): a changed photo, plan or backbone never reads stale
//! features. Nothing evicts it (it is a training cache the user points at; about
//! 5 KiB per patch). Photos that cannot be decoded are skipped and named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::pipeline::{SkipReport, Skipped, load_checked};
use crate::model::efficientnet_lite::FoldedLite;
use crate::model::systems::patches_tensor;
use crate::model::views::{self, GlobalView, Patch, Rect};
use crate::model::weights::sha256_hex;
use crate::rng::SeededRng;

/// Which views and patches are cached per photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeaturePlan {
    pub native: usize,
    pub arp: usize,
    pub seed: u64,
}

impl Default for FeaturePlan {
    fn default() -> Self {
        Self { native: 32, arp: 16, seed: 0 }
    }
}

impl FeaturePlan {
    fn key(&self) -> String {
        format!("v3-native{}-arp{}-seed{}", self.native, self.arp, self.seed)
    }
}

/// One photo's cached features, each `(n, 1280)`, with the rectangles they came from.
#[derive(Debug, Clone)]
pub struct PhotoFeatures {
    pub warp: Tensor,
    pub center: Tensor,
    pub native: Tensor,
    pub native_rects: Vec<Rect>,
    pub arp: Tensor,
    pub arp_rects: Vec<Rect>,
    pub size: (u32, u32),
}

fn cache_name(path: &Path, plan: &FeaturePlan, weights_sha: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let id = format!("{}\n{}\n{}\n{}\n{}", path.display(), meta.len(), mtime, plan.key(), weights_sha);
    Some(format!("{}.safetensors", &sha256_hex(id.as_bytes())[..32]))
}

fn rects_tensor(r: &[Rect]) -> candle_core::Result<Tensor> {
    let v: Vec<f64> = r.iter().flat_map(|r| [r.x, r.y, r.w, r.h]).collect();
    Tensor::from_vec(v, (r.len(), 4), &Device::Cpu)
}

fn rects_from(t: &Tensor) -> candle_core::Result<Vec<Rect>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?.into_iter().map(|r| Rect { x: r[0], y: r[1], w: r[2], h: r[3] }).collect())
}

impl PhotoFeatures {
    fn save(&self, path: &Path) -> candle_core::Result<()> {
        let size = Tensor::new(&[self.size.0, self.size.1], &Device::Cpu)?;
        let map: HashMap<String, Tensor> = [
            ("warp", self.warp.clone()),
            ("center", self.center.clone()),
            ("native", self.native.clone()),
            ("native_rects", rects_tensor(&self.native_rects)?),
            ("arp", self.arp.clone()),
            ("arp_rects", rects_tensor(&self.arp_rects)?),
            ("size", size),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Write beside, then rename: a killed run never leaves a truncated cache entry.
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn load(path: &Path) -> candle_core::Result<Self> {
        let m = candle_core::safetensors::load(path, &Device::Cpu)?;
        let get = |k: &str| m.get(k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("{}: no {k}", path.display())));
        let size = get("size")?.to_vec1::<u32>()?;
        Ok(Self {
            warp: get("warp")?,
            center: get("center")?,
            native: get("native")?,
            native_rects: rects_from(&get("native_rects")?)?,
            arp: get("arp")?,
            arp_rects: rects_from(&get("arp_rects")?)?,
            size: (size[0], size[1]),
        })
    }
}

/// The patches of one photo under `plan`, in the order warp, center, native..., arp...
fn photo_patches(path: &Path, plan: &FeaturePlan) -> Result<(Vec<Patch>, (u32, u32)), String> {
    let img = load_checked(path)?;
    // Keyed by the file name (not the folder), so the same photo gets the same patches
    // wherever the dataset lives.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path_hash = u64::from_str_radix(&sha256_hex(name.as_bytes())[..16], 16).unwrap_or(0);
    let mut rng = SeededRng::new(plan.seed ^ path_hash);
    let mut v = vec![
        views::normalized_input(&img, GlobalView::Warp, 224, &mut rng),
        views::normalized_input(&img, GlobalView::CenterCrop, 224, &mut rng),
    ];
    v.extend(views::random_patches(&img, 224, plan.native, &mut rng));
    v.extend(views::arp_crops(&img, 256, 224, plan.arp, true, &mut rng));
    Ok((v, img.dimensions()))
}

/// Features of every photo (`None` where it was skipped), computed with `net` in batches of
/// photos decoded in parallel, read from and written to `cache` when given. `progress` is
/// called with (done, total) after each chunk.
pub fn extract(
    paths: &[PathBuf],
    plan: &FeaturePlan,
    net: &FoldedLite,
    weights_sha: &str,
    cache: Option<&Path>,
    mut progress: impl FnMut(usize, usize),
) -> candle_core::Result<(Vec<Option<PhotoFeatures>>, SkipReport)> {
    if let Some(dir) = cache {
        std::fs::create_dir_all(dir)?;
    }
    let mut out: Vec<Option<PhotoFeatures>> = vec![None; paths.len()];
    let mut skipped = SkipReport { attempted: paths.len(), skipped: Vec::new() };
    let mut todo = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let cached = cache.zip(cache_name(p, plan, weights_sha)).map(|(d, n)| d.join(n));
        match cached.as_ref().filter(|c| c.exists()).map(|c| PhotoFeatures::load(c)) {
            Some(Ok(f)) => out[i] = Some(f),
            _ => todo.push((i, cached)),
        }
    }
    let done0 = paths.len() - todo.len();
    progress(done0, paths.len());
    let chunk = 4;
    for (ci, part) in todo.chunks(chunk).enumerate() {
        let decoded: Vec<_> = part.par_iter().map(|(i, _)| photo_patches(&paths[*i], plan)).collect();
        for ((i, cached), d) in part.iter().zip(decoded) {
            let (patches, size) = match d {
                Ok(x) => x,
                Err(reason) => {
                    skipped.add(Skipped { index: *i, path: paths[*i].clone(), reason });
                    continue;
                }
            };
            let imgs: Vec<&image::RgbImage> = patches.iter().map(|p| &p.image).collect();
            let mut feats = Vec::new();
            for b in imgs.chunks(16) {
                feats.push(net.features(&patches_tensor(b, DType::F32, &Device::Cpu)?)?.pooled);
            }
            let f = Tensor::cat(&feats, 0)?;
            let n0 = 2 + plan.native;
            let pf = PhotoFeatures {
                warp: f.narrow(0, 0, 1)?,
                center: f.narrow(0, 1, 1)?,
                native: f.narrow(0, 2, plan.native)?,
                native_rects: patches[2..n0].iter().map(|p| p.rect).collect(),
                arp: f.narrow(0, n0, plan.arp)?,
                arp_rects: patches[n0..].iter().map(|p| p.rect).collect(),
                size,
            };
            if let Some(c) = cached {
                pf.save(c)?;
            }
            out[*i] = Some(pf);
        }
        progress(done0 + ((ci + 1) * chunk).min(todo.len()), paths.len());
    }
    Ok((out, skipped))
}
