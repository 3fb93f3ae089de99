//! Decoding photos from disk into RGB pixels, with EXIF orientation applied.
//!
//! Errors name the file and say what is wrong with it; a size limit guards against
//! decompression bombs (a small file that claims a gigantic image).

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Largest image side accepted (pixels) and largest allocation (bytes) for one decode.
pub const MAX_SIDE: u32 = 20_000;
pub const MAX_ALLOC: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a supported image format (JPEG or PNG)")]
    Unsupported { path: PathBuf },
    #[error("{path}: file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: image is too large ({reason}); limit is {MAX_SIDE} px per side")]
    TooLarge { path: PathBuf, reason: String },
    #[error("{path}: cannot decode: {source}")]
    Corrupt { path: PathBuf, source: image::ImageError },
}

fn classify_err(path: &Path, e: image::ImageError) -> DecodeError {
    let path = path.to_owned();
    match e {
        image::ImageError::Unsupported(_) => DecodeError::Unsupported { path },
        image::ImageError::Limits(l) => DecodeError::TooLarge { path, reason: l.to_string() },
        image::ImageError::IoError(source) => DecodeError::Open { path, source },
        source => DecodeError::Corrupt { path, source },
    }
}

/// Decodes `path` (format detected from its bytes) to RGB8, upright per its EXIF orientation.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    let meta = std::fs::metadata(path).map_err(|source| DecodeError::Open { path: path.to_owned(), source })?;
    if meta.len() == 0 {
        return Err(DecodeError::Empty { path: path.to_owned() });
    }
    let mut reader = ImageReader::open(path)
        .map_err(|source| DecodeError::Open { path: path.to_owned(), source })?
        .with_guessed_format()
        .map_err(|source| DecodeError::Open { path: path.to_owned(), source })?;
    if reader.format().is_none() {
        return Err(DecodeError::Unsupported { path: path.to_owned() });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| classify_err(path, e))?;
    let orientation = decoder.orientation().map_err(|e| classify_err(path, e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| classify_err(path, e))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Image files directly in `dir` (JPEG/PNG by extension), sorted by name.
pub fn list_images(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    v.sort();
    Ok(v)
}
