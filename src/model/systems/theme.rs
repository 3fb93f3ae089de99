//! THEME-EMD (paper 003): full-resolution photos padded to a common size, ROI pooling (or ROI
//! align) of each photo's region, a theme one-hot through FC 256, a K-bin distribution.
//!
//! Where the ROI layer sits (paper 003 sec. III-D replaces Inception-v3's first pooling
//! layer, downsampling ratio tau = 4, and doubles its output side 73 -> 146):
//! - Lite0 column: after the blocks that bring the stride to tau = 4 (stem + stages 1-2,
//!   24 channels); ROI output 2 x 56 = 112 (the standard side there at 224, doubled); then
//!   the remaining blocks, the head convolution and global average pooling (the "adaptive
//!   pooling" the paper adds).
//! - Arch-1 column: in place of its first max-pool (tau = 2), output side = that pool's
//!   standard side, so fc1 keeps its size and an SCNN-trained column can initialise it.
//!
//! "Padded batch == each photo alone": the layers before the ROI see a zero-padded canvas.
//! Two things would make a photo's features depend on its neighbours in the batch, and both
//! are removed here:
//! 1. Values in the padding leak into the photo's border through every spatial kernel, and
//!    BatchNorm + ReLU6 turn zero padding into non-zero activations. So every spatial
//!    layer's input is multiplied by a 0/1 mask of the photo's region at that resolution
//!    (the canvas itself too): the photo's border then reads zeros, exactly as "SAME" zero
//!    padding of the photo alone does.
//! 2. TF "SAME" padding at stride 2 puts `(k - 2) / 2` zeros before an even-sized input but
//!    one more before an odd-sized one, so a photo of odd size would be sampled on a grid
//!    shifted by one pixel from the same photo inside an even canvas. Photos are therefore
//!    cropped (right and bottom, at most tau - 1 pixels) to a multiple of tau; every size the
//!    stride-2 layers see is then even and the grids coincide.
//!
//! The padding sits right and below the photo (the paper pads "along upper and right
//! boundaries"; only the side differs, which the masks make irrelevant).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use image::RgbImage;
use image::imageops::{self, FilterType};

use super::{Batch, Column, ColumnKind, Prepared, RoiKind, SystemConfig, linear_map, patches_tensor};
use crate::model::heads::Head;
use crate::model::pooling::{ImageRegion, roi_align, roi_pool};
use crate::model::views::{Patch, Rect, corner_crops};
use crate::rng::SeededRng;

#[derive(Debug, Clone)]
pub(super) struct ThemeNet {
    column: Column,
    tau: usize,
    /// Lite0: number of blocks before the ROI layer.
    split: usize,
    roi: RoiKind,
    roi_out: usize,
    themes: usize,
    max_side: u32,
    theme_fc: Linear,
    head: Head,
}

impl ThemeNet {
    pub(super) fn reseed_dropout(&self, seed: u64) {
        self.column.reseed_dropout(seed);
    }

    pub(super) fn new(cfg: &SystemConfig, vb: VarBuilder) -> Result<Self> {
        let column = Column::new(&cfg.column, vb.pp("column"))?;
        let (tau, split, default_out) = match &column {
            Column::Lite0(net) => {
                let tau = 4;
                let (split, _) =
                    net.blocks_until_stride(tau).ok_or_else(|| candle_core::Error::Msg("backbone has no stride-4 point".into()))?;
                (tau, split, 2 * net.config().image_size / tau)
            }
            Column::Arch1(c) => (c.config().conv1_stride, 0, c.pool1_side()),
        };
        let roi_out = match (&column, cfg.roi_out) {
            (Column::Arch1(_), Some(o)) if o != default_out => {
                candle_core::bail!("THEME-EMD on the Arch-1 column: ROI output must be {default_out} (fc1's input size), not {o}")
            }
            (_, o) => o.unwrap_or(default_out),
        };
        if cfg.themes == 0 {
            candle_core::bail!("THEME-EMD needs at least one theme");
        }
        let theme_fc = candle_nn::linear(cfg.themes, 256, vb.pp("theme_fc"))?;
        let head = Head::new(cfg.head.clone(), cfg.column.feature_dim() + 256, vb.pp("head"))?;
        Ok(Self { column, tau, split, roi: cfg.roi, roi_out, themes: cfg.themes, max_side: cfg.max_side, theme_fc, head })
    }

    pub(super) fn head(&self) -> &Head {
        &self.head
    }

    /// The photo at (at most) `max_side`, cropped to a multiple of tau; in training one of
    /// paper 003's augmentations (original, mirror, four 7/8 corner crops) first.
    pub(super) fn prepare(&self, img: &RgbImage, train: bool, rng: &mut SeededRng) -> Patch {
        let base = if train {
            let mut all = corner_crops(img);
            let i = rng.below(all.len() as u64) as usize;
            all.swap_remove(i)
        } else {
            Patch { image: img.clone(), rect: Rect { x: 0.0, y: 0.0, w: img.width() as f64, h: img.height() as f64 }, flipped: false }
        };
        let (w, h) = base.image.dimensions();
        let scale = (self.max_side as f64 / w.max(h) as f64).min(1.0);
        let t = self.tau as u32;
        let (nw, nh) = (((w as f64 * scale).round() as u32).max(t), ((h as f64 * scale).round() as u32).max(t));
        let resized = if (nw, nh) == (w, h) { base.image } else { imageops::resize(&base.image, nw, nh, FilterType::Triangle) };
        let (cw, ch) = (nw / t * t, nh / t * t);
        let image = if (cw, ch) == (nw, nh) { resized } else { imageops::crop_imm(&resized, 0, 0, cw, ch).to_image() };
        let (sx, sy) = (base.rect.w / nw as f64, base.rect.h / nh as f64);
        // A mirrored photo's crop comes off its (mirrored) right edge: the original's left.
        let x0 = if base.flipped { base.rect.x + (nw - cw) as f64 * sx } else { base.rect.x };
        Patch { image, rect: Rect { x: x0, y: base.rect.y, w: cw as f64 * sx, h: ch as f64 * sy }, flipped: base.flipped }
    }

    pub(super) fn collate(&self, items: &[Prepared], batch: &mut Batch, device: &Device) -> Result<()> {
        let fulls: Vec<&Patch> = items
            .iter()
            .map(|p| p.full.as_ref())
            .collect::<Option<_>>()
            .ok_or_else(|| candle_core::Error::Msg("THEME-EMD needs the full photo".into()))?;
        let hc = fulls.iter().map(|p| p.image.height()).max().unwrap_or(0);
        let wc = fulls.iter().map(|p| p.image.width()).max().unwrap_or(0);
        // Each photo alone, then zero-padded right/below to the common canvas.
        let mut canvases = Vec::with_capacity(fulls.len());
        for p in &fulls {
            let (w, h) = p.image.dimensions();
            let t = patches_tensor(&[&p.image], DType::F32, device)?;
            canvases.push(t.pad_with_zeros(2, 0, (hc - h) as usize)?.pad_with_zeros(3, 0, (wc - w) as usize)?);
        }
        batch.canvas = Some(Tensor::cat(&canvases, 0)?);
        batch.regions = fulls.iter().map(|p| ImageRegion { width: p.image.width() as f64, height: p.image.height() as f64 }).collect();
        batch.region_rects = fulls.iter().map(|p| p.rect).collect();
        let mut onehot = vec![0f32; items.len() * self.themes];
        for (i, p) in items.iter().enumerate() {
            if let Some(t) = p.theme {
                if t >= self.themes {
                    candle_core::bail!("theme {t} out of range: this network knows {} themes", self.themes);
                }
                onehot[i * self.themes + t] = 1.0;
            }
        }
        batch.themes = Some(Tensor::from_vec(onehot, (items.len(), self.themes), device)?);
        Ok(())
    }

    /// `(N, 1, h, w)` (or NHWC `(N, h, w, 1)`) 0/1 mask of each region at a map of `h x w`
    /// over a canvas of `hc x wc`.
    fn mask(&self, regions: &[ImageRegion], canvas: (usize, usize), h: usize, w: usize, nhwc: bool, device: &Device) -> Result<Tensor> {
        let (sy, sx) = (canvas.0 / h, canvas.1 / w);
        let mut m = vec![0f32; regions.len() * h * w];
        for (b, r) in regions.iter().enumerate() {
            let (vh, vw) = ((r.height as usize).div_ceil(sy).min(h), (r.width as usize).div_ceil(sx).min(w));
            for y in 0..vh {
                m[b * h * w + y * w..b * h * w + y * w + vw].fill(1.0);
            }
        }
        let shape = if nhwc { (regions.len(), h, w, 1) } else { (regions.len(), 1, h, w) };
        Tensor::from_vec(m, shape, device)
    }

    fn roi(&self, x: &Tensor, regions: &[ImageRegion]) -> Result<Tensor> {
        let out = (self.roi_out, self.roi_out);
        match self.roi {
            RoiKind::Pool => roi_pool(x, regions, self.tau as f64, out),
            RoiKind::Align { samples } => roi_align(x, regions, self.tau as f64, out, samples),
        }
    }

    /// Raw outputs `(N, out)` and, for the Lite0 column, the spatial map `(N, h, w, out)`.
    pub(super) fn forward_t(&self, batch: &Batch, train: bool) -> Result<(Tensor, Option<Tensor>)> {
        let canvas = batch.canvas.as_ref().ok_or_else(|| candle_core::Error::Msg("THEME-EMD needs a padded canvas".into()))?;
        let themes = batch.themes.as_ref().ok_or_else(|| candle_core::Error::Msg("THEME-EMD needs theme codes".into()))?;
        let (_, _, hc, wc) = canvas.dims4()?;
        let dev = canvas.device();
        let regions = &batch.regions;
        let x = canvas.broadcast_mul(&self.mask(regions, (hc, wc), hc, wc, false, dev)?.to_dtype(canvas.dtype())?)?;
        let (visual, vmap) = match &self.column {
            Column::Lite0(net) => {
                let stem = net.stem_t(&x, train)?;
                let dtype = stem.dtype();
                let mask = |h: usize, w: usize| self.mask(regions, (hc, wc), h, w, true, dev)?.to_dtype(dtype);
                let pre = net.blocks_t(&stem, 0..self.split, train, Some(&mask))?;
                let pooled = self.roi(&pre.permute((0, 3, 1, 2))?.contiguous()?, regions)?;
                let post = net.blocks_t(&pooled.permute((0, 2, 3, 1))?.contiguous()?, self.split..net.num_blocks(), train, None)?;
                let f = net.head_t(&post, train)?;
                (f.pooled, Some(f.map))
            }
            Column::Arch1(col) => {
                let pooled = self.roi(&col.conv1_t(&x)?, regions)?;
                (col.after_pool1_t(&pooled, train)?, None)
            }
        };
        let theme = self.theme_fc.forward(themes)?.relu()?;
        let raw = self.head.forward(&Tensor::cat(&[&visual, &theme], 1)?)?;
        let map = vmap.map(|m| linear_map(&self.head, &m, &visual, &raw)).transpose()?;
        Ok((raw, map))
    }
}

impl ColumnKind {
    /// THEME-EMD's downsampling ratio at the ROI layer for this column.
    pub fn theme_tau(&self) -> usize {
        match self {
            ColumnKind::Lite0 => 4,
            ColumnKind::Arch1(c) => c.conv1_stride,
        }
    }
}
