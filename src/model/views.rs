//! Views and patches of a photo, the inputs of every seed system; deterministic from a seed.
//!
//! Paper 002 (Lu et al., RAPID/DCNN), sec. III-A: a photo becomes a "normalized input" of
//! 256 x 256 by one of
//! - `I_l^r`, local view: a random 256 x 256 crop at the original resolution;
//! - `I_g^w`, warp: resized to 256 x 256 ignoring the aspect ratio;
//! - `I_g^c`, centre crop: shorter side to 256, centre 256 x 256;
//! - `I_g^p`, padding: longer side to 256, zero borders to 256 x 256 (image centred);
//!
//! then a random 224 x 224 crop is taken for training ([`random_crop`]); testing averages
//! 50 such views ([`test_views`]).
//! Paper 001 (MP-ada): shorter edge to 256 keeping the aspect ratio, random 224 crops with
//! random horizontal flips ([`arp_crops`], also paper 004's aspect-ratio-preserving square
//! patches, with its own sizes).
//! Paper 003 (THEME): the original, its mirror and four corner crops that keep the aspect
//! ratio ([`corner_crops`]); we read the corner crops as 7/8 of each side (a 1/8 trim),
//! since the paper does not give the fraction.
//! Paper 000 (DMA-Net): bags of `M` random patches at full resolution ([`random_patches`]).
//!
//! Every function returns the patch with its rectangle in the original photo's pixels, so a
//! per-patch prediction can be drawn back on the photo (heatmaps).

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use crate::rng::SeededRng;

/// A rectangle in the original photo's pixel coordinates (may be fractional after resizing).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// A view or patch and where it came from.
#[derive(Debug, Clone)]
pub struct Patch {
    pub image: RgbImage,
    /// Region of the original photo it shows.
    pub rect: Rect,
    pub flipped: bool,
}

/// Paper 002's normalized inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlobalView {
    LocalRandomCrop,
    Warp,
    CenterCrop,
    Padding,
}

fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.width() == w && img.height() == h { img.clone() } else { imageops::resize(img, w.max(1), h.max(1), FilterType::Triangle) }
}

/// Resize so the shorter side is `s`, keeping the aspect ratio; returns the scale factor.
fn shorter_side_to(img: &RgbImage, s: u32) -> (RgbImage, f64) {
    let (w, h) = (img.width(), img.height());
    let scale = s as f64 / w.min(h) as f64;
    let (nw, nh) = (((w as f64 * scale).round() as u32).max(s), ((h as f64 * scale).round() as u32).max(s));
    (resize(img, nw, nh), scale)
}

fn full_rect(img: &RgbImage) -> Rect {
    Rect { x: 0.0, y: 0.0, w: img.width() as f64, h: img.height() as f64 }
}

/// A normalized input of `size x size` (256 in the paper).
pub fn normalized_input(img: &RgbImage, view: GlobalView, size: u32, rng: &mut SeededRng) -> Patch {
    let (w, h) = (img.width(), img.height());
    match view {
        GlobalView::LocalRandomCrop => {
            // At original resolution; a photo smaller than `size` is first enlarged to fit.
            let (src, scale) = if w.min(h) < size { shorter_side_to(img, size) } else { (img.clone(), 1.0) };
            let x = rng.below((src.width() - size + 1) as u64) as u32;
            let y = rng.below((src.height() - size + 1) as u64) as u32;
            let image = imageops::crop_imm(&src, x, y, size, size).to_image();
            let rect = Rect { x: x as f64 / scale, y: y as f64 / scale, w: size as f64 / scale, h: size as f64 / scale };
            Patch { image, rect, flipped: false }
        }
        GlobalView::Warp => Patch { image: resize(img, size, size), rect: full_rect(img), flipped: false },
        GlobalView::CenterCrop => {
            let (src, scale) = shorter_side_to(img, size);
            let (x, y) = ((src.width() - size) / 2, (src.height() - size) / 2);
            let image = imageops::crop_imm(&src, x, y, size, size).to_image();
            Patch {
                image,
                rect: Rect { x: x as f64 / scale, y: y as f64 / scale, w: size as f64 / scale, h: size as f64 / scale },
                flipped: false,
            }
        }
        GlobalView::Padding => {
            let scale = size as f64 / w.max(h) as f64;
            let (nw, nh) = (((w as f64 * scale).round() as u32).clamp(1, size), ((h as f64 * scale).round() as u32).clamp(1, size));
            let inner = resize(img, nw, nh);
            let mut canvas = RgbImage::from_pixel(size, size, Rgb([0, 0, 0]));
            let (ox, oy) = ((size - nw) / 2, (size - nh) / 2);
            imageops::replace(&mut canvas, &inner, ox as i64, oy as i64);
            // The canvas in photo pixels: the borders lie outside the photo.
            let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
            let rect = Rect { x: -(ox as f64) * sx, y: -(oy as f64) * sy, w: size as f64 * sx, h: size as f64 * sy };
            Patch { image: canvas, rect, flipped: false }
        }
    }
}

/// Maps a crop of a patch back to the original photo.
fn sub_rect(parent: &Rect, pw: u32, ph: u32, x: u32, y: u32, cw: u32, ch: u32) -> Rect {
    let (sx, sy) = (parent.w / pw as f64, parent.h / ph as f64);
    Rect { x: parent.x + x as f64 * sx, y: parent.y + y as f64 * sy, w: cw as f64 * sx, h: ch as f64 * sy }
}

/// A random `size x size` crop of a view (training augmentation), optionally flipped.
pub fn random_crop(view: &Patch, size: u32, flip: bool, rng: &mut SeededRng) -> Patch {
    let (w, h) = view.image.dimensions();
    let (cw, ch) = (size.min(w), size.min(h));
    let x = rng.below((w - cw + 1) as u64) as u32;
    let y = rng.below((h - ch + 1) as u64) as u32;
    let mut image = imageops::crop_imm(&view.image, x, y, cw, ch).to_image();
    let flipped = flip && rng.coin();
    if flipped {
        imageops::flip_horizontal_in_place(&mut image);
    }
    Patch { image, rect: sub_rect(&view.rect, w, h, x, y, cw, ch), flipped: flipped ^ view.flipped }
}

/// `n` test views: normalized input of the given kind, each with a random 224 crop
/// (paper 002 averages the predictions of 50).
pub fn test_views(img: &RgbImage, view: GlobalView, n: usize, rng: &mut SeededRng) -> Vec<Patch> {
    (0..n).map(|_| random_crop(&normalized_input(img, view, 256, rng), 224, false, rng)).collect()
}

/// Aspect-ratio-preserving square crops: shorter side to `shorter`, `n` random
/// `crop x crop` patches, each flipped with probability 1/2 when `flip` (papers 001, 004).
pub fn arp_crops(img: &RgbImage, shorter: u32, crop: u32, n: usize, flip: bool, rng: &mut SeededRng) -> Vec<Patch> {
    let (src, _) = shorter_side_to(img, shorter);
    let base = Patch { rect: full_rect(img), image: src, flipped: false };
    (0..n).map(|_| random_crop(&base, crop, flip, rng)).collect()
}

/// Paper 003's augmentations: original, mirrored, and the four corner crops of 7/8 of each
/// side (aspect ratio kept).
pub fn corner_crops(img: &RgbImage) -> Vec<Patch> {
    let (w, h) = img.dimensions();
    let (cw, ch) = ((w * 7 / 8).max(1), (h * 7 / 8).max(1));
    let mut out = vec![Patch { image: img.clone(), rect: full_rect(img), flipped: false }];
    out.push(Patch { image: imageops::flip_horizontal(img), rect: full_rect(img), flipped: true });
    for (x, y) in [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch)] {
        let image = imageops::crop_imm(img, x, y, cw, ch).to_image();
        out.push(Patch { image, rect: Rect { x: x as f64, y: y as f64, w: cw as f64, h: ch as f64 }, flipped: false });
    }
    out
}

/// A bag of `m` random `size x size` patches at full resolution (paper 000; M = 5, 224 here
/// to match the backbone, 256 in the paper). Photos smaller than `size` are enlarged first.
pub fn random_patches(img: &RgbImage, size: u32, m: usize, rng: &mut SeededRng) -> Vec<Patch> {
    (0..m).map(|_| normalized_input(img, GlobalView::LocalRandomCrop, size, rng)).collect()
}
