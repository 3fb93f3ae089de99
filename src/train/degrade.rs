//! Synthetic degradations for the quality model's acceptance check (issue 7).
//!
//! A technical-quality score must rank a visibly degraded copy of a photo below the photo. The
//! LIVE Challenge MOS that train the model come from authentic distortions only, so a head can
//! fit them well and still read added noise as detail (it happens to the depthwise-tap plans,
//! see `weights/quality.md`). [`acceptance`] measures that on real photos with two fixed
//! degradations: Gaussian blur (sigma 3) and JPEG at quality 8 followed by Gaussian noise
//! (sigma 12 grey levels, seeded). `keepers train-quality` ships a plan only when both rank
//! below the originals for at least [`ACCEPT_FRACTION`] of the photos, and `tests/quality.rs`
//! checks the shipped model the same way.

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;

use crate::rng::SeededRng;

/// Gaussian blur sigma of the blurred copy.
pub const BLUR_SIGMA: f32 = 3.0;
/// JPEG quality of the compressed copy.
pub const JPEG_QUALITY: u8 = 8;
/// Standard deviation (grey levels) of the noise added after compression.
pub const NOISE_SIGMA: f64 = 12.0;
/// Share of photos whose degraded copies must score lower than the original.
pub const ACCEPT_FRACTION: f64 = 0.8;

/// The blurred copy.
pub fn blurred(img: &RgbImage) -> RgbImage {
    image::imageops::blur(img, BLUR_SIGMA)
}

/// JPEG at [`JPEG_QUALITY`], decoded, then additive Gaussian noise of [`NOISE_SIGMA`] (Box-Muller
/// on the seeded generator), rounded and clamped to 0..=255.
pub fn compressed_noisy(img: &RgbImage, seed: u64) -> image::ImageResult<RgbImage> {
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY).encode_image(img)?;
    let mut out = image::load_from_memory(&buf)?.to_rgb8();
    let mut rng = SeededRng::new(seed);
    for v in out.iter_mut() {
        let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        *v = (*v as f64 + NOISE_SIGMA * normal).round().clamp(0.0, 255.0) as u8;
    }
    Ok(out)
}

/// How often the degraded copies scored lower than their originals.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Acceptance {
    pub photos: usize,
    pub blur_lower: usize,
    pub noise_lower: usize,
}

impl Acceptance {
    pub fn passed(&self) -> bool {
        let need = (ACCEPT_FRACTION * self.photos as f64).ceil() as usize;
        self.photos > 0 && self.blur_lower >= need && self.noise_lower >= need
    }
}

impl std::fmt::Display for Acceptance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blurred copy lower {}/{}, JPEG q{JPEG_QUALITY} + noise copy lower {}/{} ({})",
            self.blur_lower,
            self.photos,
            self.noise_lower,
            self.photos,
            if self.passed() { "passed" } else { "failed" }
        )
    }
}

/// Scores every photo, its blurred copy and its compressed + noisy copy (seed = the photo's
/// index) with `score` (one call, originals then blurred then noisy) and counts the copies that
/// scored lower.
pub fn acceptance<E>(photos: &[RgbImage], score: impl FnOnce(&[&RgbImage]) -> Result<Vec<f64>, E>) -> Result<Acceptance, E>
where
    E: From<image::ImageError>,
{
    let blur: Vec<RgbImage> = photos.iter().map(blurred).collect();
    let noisy = photos.iter().enumerate().map(|(i, p)| compressed_noisy(p, i as u64)).collect::<Result<Vec<_>, _>>()?;
    let all: Vec<&RgbImage> = photos.iter().chain(&blur).chain(&noisy).collect();
    let s = score(&all)?;
    let n = photos.len();
    assert_eq!(s.len(), 3 * n, "one score per image");
    let lower = |k: usize| (0..n).filter(|&i| s[k * n + i] < s[i]).count();
    Ok(Acceptance { photos: n, blur_lower: lower(1), noise_lower: lower(2) })
}
