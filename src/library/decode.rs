//! Decoding photos from disk into RGB pixels, with EXIF orientation applied.
//!
//! Errors name the file and say what is wrong with it; a size limit guards against
//! decompression bombs (a small file that claims a gigantic image), checked from the header before
//! any pixel buffer is allocated.
//!
//! - Format from the file's bytes ([`super::formats`]), never from its extension alone.
//! - JPEG goes through libjpeg-turbo (`turbojpeg`, built from source and linked statically). For a
//!   thumbnail or preview ([`Size::Fit`]) it decodes at the smallest DCT scale (1/8, 1/4, 3/8, 1/2, ...)
//!   whose result still covers the requested size, then resizes the rest of the way; [`Size::Full`]
//!   decodes every pixel (multi-patch crops need full resolution). A truncated JPEG decodes what it can:
//!   the missing rows come out grey and [`Decoded::warning`] says why ([`decode_intact`] refuses it
//!   instead: what scoring and the command line use). Should libjpeg-turbo refuse a file outright, the
//!   pure-Rust decoder of the `image` crate gets a second try; a file cut off before its image data
//!   ([`check_jpeg_complete`]) is then reported as truncated rather than by the decoders' messages.
//! - PNG, TIFF and WebP: the `image` crate, full decode (then resized for [`Size::Fit`]).
//! - Camera RAW: the embedded JPEG preview ([`super::raw`]); "full resolution" is the preview's.
//!
//! Reads files only.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::formats::{self, Format, Sniffed};
use super::raw::{self, RawError};
use super::tiff::{self, Tiff};

/// Largest image side accepted (pixels) and largest allocation (bytes) for one decode.
pub const MAX_SIDE: u32 = 20_000;
pub const MAX_ALLOC: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a supported image format (JPEG, PNG, TIFF, WebP or camera RAW)")]
    Unsupported { path: PathBuf },
    #[error("{path}: {format} images are not supported (JPEG, PNG, TIFF, WebP or camera RAW are)")]
    UnsupportedKind { path: PathBuf, format: &'static str },
    #[error("{path}: file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: image is too large ({reason}); limit is {MAX_SIDE} px per side")]
    TooLarge { path: PathBuf, reason: String },
    #[error("{path}: cannot decode: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: cannot decode JPEG: {message}")]
    Jpeg { path: PathBuf, message: String },
    /// The file is truncated or its data is damaged (it may have decoded in part).
    #[error("{path}: damaged or truncated file: {message}")]
    Damaged { path: PathBuf, message: String },
    /// A variant of a supported format that the decoder cannot read (a TIFF compression, a colour space).
    #[error("{path}: cannot read this file: {message}")]
    UnsupportedVariant { path: PathBuf, message: String },
    #[error(transparent)]
    Raw(#[from] RawError),
}

impl DecodeError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            DecodeError::Open { path, .. }
            | DecodeError::Unsupported { path }
            | DecodeError::UnsupportedKind { path, .. }
            | DecodeError::Empty { path }
            | DecodeError::TooLarge { path, .. }
            | DecodeError::Corrupt { path, .. }
            | DecodeError::Jpeg { path, .. }
            | DecodeError::Damaged { path, .. }
            | DecodeError::UnsupportedVariant { path, .. } => path,
            DecodeError::Raw(RawError::Io { path, .. } | RawError::NoPreview { path, .. }) => path,
        }
    }
}

/// An `image` crate error while decoding bytes already read into memory: an I/O error there is the
/// data running out (a truncated file), not a file that could not be opened.
fn classify_err(path: &Path, e: image::ImageError) -> DecodeError {
    let path = path.to_owned();
    match e {
        image::ImageError::Unsupported(u) => match u.kind() {
            image::error::UnsupportedErrorKind::Format(image::error::ImageFormatHint::Unknown) => DecodeError::Unsupported { path },
            _ => DecodeError::UnsupportedVariant { path, message: u.to_string() },
        },
        image::ImageError::Limits(l) => DecodeError::TooLarge { path, reason: l.to_string() },
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Damaged { path, message: "the file ends before its image data does".into() }
        }
        image::ImageError::IoError(e) => DecodeError::Damaged { path, message: e.to_string() },
        e => DecodeError::Corrupt { path, message: readable(&e.to_string()) },
    }
}

/// A decoder's message for people: the PNG decoder names a chunk by its debug form
/// (`ChunkType { type: IDAT, critical: true, ... }`); that becomes `IDAT`.
fn readable(msg: &str) -> String {
    const DEBUG: &str = "ChunkType { type: ";
    let mut out = msg.to_string();
    while let Some(i) = out.find(DEBUG) {
        let rest = &out[i + DEBUG.len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let Some(end) = rest.find('}') else { break };
        out = format!("{}{name}{}", &out[..i], &rest[end + 1..]);
    }
    out
}

/// How much of the image to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Every pixel.
    Full,
    /// At most this many pixels on the long side (never enlarged): thumbnails and previews, decoded
    /// at a reduced DCT scale where the codec allows.
    Fit(u32),
}

/// A decoded, upright photo.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: RgbImage,
    /// Upright size of the full-resolution image (for a RAW file: of its preview).
    pub full_width: u32,
    pub full_height: u32,
    pub format: Format,
    /// EXIF orientation applied (1 = none).
    pub orientation: u8,
    /// Set when the file is damaged but part of it decoded (e.g. a truncated JPEG).
    pub warning: Option<String>,
}

/// Decodes `path` (format detected from its bytes) to RGB8, upright per its EXIF orientation.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    decode_path(path, Size::Full).map(|d| d.image)
}

/// Decodes `path` at `size`; the format comes from the file's bytes.
pub fn decode_path(path: &Path, size: Size) -> Result<Decoded, DecodeError> {
    let open_err = |source| DecodeError::Open { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.len() == 0 {
        return Err(DecodeError::Empty { path: path.to_owned() });
    }
    let format = match formats::sniff_file(path).map_err(open_err)? {
        Sniffed::Supported(f) => f,
        Sniffed::Empty => return Err(DecodeError::Empty { path: path.to_owned() }),
        Sniffed::Unsupported(format) => return Err(DecodeError::UnsupportedKind { path: path.to_owned(), format }),
        Sniffed::Unknown => return Err(DecodeError::Unsupported { path: path.to_owned() }),
    };
    match format {
        Format::Jpeg => {
            let data = std::fs::read(path).map_err(open_err)?;
            decode_jpeg(path, &data, size, None)
        }
        Format::Raw(kind) => {
            let p = raw::read_preview(path, kind)?;
            let mut d = decode_jpeg(path, &p.jpeg, size, p.orientation)?;
            d.format = format;
            Ok(d)
        }
        Format::Png | Format::Tiff | Format::WebP => {
            let data = std::fs::read(path).map_err(open_err)?;
            let mut d = decode_with_image(path, &data, size)?;
            d.format = format;
            Ok(d)
        }
    }
}

/// [`decode_path`], with a partly decoded file (a truncated JPEG, whose missing rows would come out
/// grey) an error: what scoring, classification and the command line use, so that no score is
/// computed from pixels the file does not have. The thumbnails and the loupe show such a file as
/// far as it goes.
pub fn decode_intact(path: &Path, size: Size) -> Result<Decoded, DecodeError> {
    let d = decode_path(path, size)?;
    match d.warning {
        None => Ok(d),
        Some(message) => Err(DecodeError::Damaged { path: path.to_owned(), message }),
    }
}

fn check_size(path: &Path, w: u64, h: u64) -> Result<(), DecodeError> {
    if w > MAX_SIDE as u64 || h > MAX_SIDE as u64 || w * h * 3 > MAX_ALLOC {
        return Err(DecodeError::TooLarge { path: path.to_owned(), reason: format!("{w}x{h} pixels") });
    }
    Ok(())
}

/// EXIF orientation of a JPEG's own APP1 block.
pub fn jpeg_orientation(jpeg: &[u8]) -> Option<u8> {
    tiff::jpeg_exif(jpeg).and_then(Tiff::parse).and_then(|t| tiff::orientation(&t))
}

fn upright(img: RgbImage, orientation: u8) -> RgbImage {
    match Orientation::from_exif(orientation) {
        Some(o) if o != Orientation::NoTransforms => {
            let mut d = DynamicImage::ImageRgb8(img);
            d.apply_orientation(o);
            d.into_rgb8()
        }
        _ => img,
    }
}

/// Long side `fit`, aspect kept; never enlarges.
fn fit_dims(w: u32, h: u32, fit: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= fit {
        return (w, h);
    }
    let s = fit as f64 / long as f64;
    (((w as f64 * s).round() as u32).max(1), ((h as f64 * s).round() as u32).max(1))
}

fn resize_to_fit(img: RgbImage, fit: u32) -> RgbImage {
    let (w, h) = fit_dims(img.width(), img.height(), fit);
    if (w, h) == img.dimensions() { img } else { image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle) }
}

thread_local! {
    static TURBO: RefCell<Option<turbojpeg::Decompressor>> = const { RefCell::new(None) };
}

/// libjpeg-turbo's warnings for damaged data: the image is decoded as far as the data goes.
/// (Stray bytes before the end-of-image marker, which some cameras and editors leave, raise no
/// warning through TurboJPEG: such a file decodes whole, tested.)
fn is_partial_warning(msg: &str) -> bool {
    msg.contains("Premature end of JPEG file") || msg.contains("Corrupt JPEG data")
}

/// Decodes JPEG bytes (`path` only names them in errors). `fallback_orientation` applies when the
/// JPEG has no EXIF orientation of its own (a RAW preview whose container records it).
pub fn decode_jpeg(path: &Path, data: &[u8], size: Size, fallback_orientation: Option<u8>) -> Result<Decoded, DecodeError> {
    let orientation = jpeg_orientation(data).or(fallback_orientation).unwrap_or(1);
    let jerr = |e: turbojpeg::Error| DecodeError::Jpeg { path: path.to_owned(), message: e.to_string() };
    // The image, its full width and height, and a note on how it was decoded.
    type Turbo = (RgbImage, u32, u32, Option<String>);
    let result = TURBO.with(|cell| -> Result<Result<Turbo, DecodeError>, DecodeError> {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(turbojpeg::Decompressor::new().map_err(jerr)?);
        }
        let dec = cell.as_mut().unwrap();
        let header = match dec.read_header(data) {
            Ok(h) => h,
            Err(e) => return Ok(Err(jerr(e))),
        };
        check_size(path, header.width as u64, header.height as u64)?;
        let factor = match size {
            Size::Full => turbojpeg::ScalingFactor::ONE,
            Size::Fit(fit) => {
                // The smallest scale whose long side still covers `fit`.
                let long = header.width.max(header.height);
                let mut fs = turbojpeg::Decompressor::supported_scaling_factors();
                fs.retain(|f| f.num() <= f.denom());
                fs.sort_by(|a, b| (a.num() * b.denom()).cmp(&(b.num() * a.denom())));
                fs.into_iter().find(|f| f.scale(long) >= fit as usize).unwrap_or(turbojpeg::ScalingFactor::ONE)
            }
        };
        dec.set_scaling_factor(factor).map_err(jerr)?;
        let s = header.scaled(factor);
        let mut img = turbojpeg::Image {
            pixels: vec![0u8; s.width * s.height * 3],
            width: s.width,
            pitch: s.width * 3,
            height: s.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        let warning = match dec.decompress(data, img.as_deref_mut()) {
            Ok(()) => None,
            Err(turbojpeg::Error::TurboJpegError(msg)) if is_partial_warning(&msg) => Some(msg),
            Err(e) => return Ok(Err(jerr(e))),
        };
        let rgb = RgbImage::from_raw(s.width as u32, s.height as u32, img.pixels).expect("buffer sized from the header");
        Ok(Ok((rgb, header.width as u32, header.height as u32, warning)))
    })?;
    let (rgb, w, h, warning) = match result {
        Ok(r) => r,
        Err(turbo_err) => {
            // Second opinion from the pure-Rust decoder. If it fails too: "truncated" for a file cut
            // short, else libjpeg-turbo's message (the file's own problems, e.g. too large, pass through).
            return match decode_with_image(path, data, size) {
                // The `image` crate pads a cut-off file with grey instead of failing.
                Ok(d) => Ok(Decoded { format: Format::Jpeg, warning: check_jpeg_complete(data).err(), ..d }),
                Err(DecodeError::TooLarge { .. })
                | Err(DecodeError::Corrupt { .. })
                | Err(DecodeError::Unsupported { .. })
                | Err(DecodeError::UnsupportedVariant { .. })
                | Err(DecodeError::Damaged { .. }) => {
                    // Both decoders refused it: a file cut short says so, whatever they said.
                    match check_jpeg_complete(data) {
                        Err(message) => Err(DecodeError::Damaged { path: path.to_owned(), message }),
                        Ok(()) => Err(turbo_err),
                    }
                }
                Err(e) => Err(e),
            };
        }
    };
    let rgb = upright(rgb, orientation);
    let (full_width, full_height) = if orientation >= 5 { (h, w) } else { (w, h) };
    let image = match size {
        Size::Full => rgb,
        Size::Fit(fit) => resize_to_fit(rgb, fit),
    };
    Ok(Decoded { image, full_width, full_height, format: Format::Jpeg, orientation, warning })
}

/// Decodes with the `image` crate (PNG, TIFF, WebP; JPEG as a fallback), with size limits.
fn decode_with_image(path: &Path, data: &[u8], size: Size) -> Result<Decoded, DecodeError> {
    let mut reader =
        ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|source| DecodeError::Open { path: path.to_owned(), source })?;
    let format = match reader.format() {
        Some(image::ImageFormat::Jpeg) => Format::Jpeg,
        Some(image::ImageFormat::Png) => Format::Png,
        Some(image::ImageFormat::Tiff) => Format::Tiff,
        Some(image::ImageFormat::WebP) => Format::WebP,
        _ => return Err(DecodeError::Unsupported { path: path.to_owned() }),
    };
    // The header's size first, so that a too-large image is named with its size.
    if let Some((w, h)) = ImageReader::new(Cursor::new(data)).with_guessed_format().ok().and_then(|r| r.into_dimensions().ok()) {
        check_size(path, w as u64, h as u64)?;
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| classify_err(path, e))?;
    let (w, h) = decoder.dimensions();
    check_size(path, w as u64, h as u64)?;
    let orientation = decoder.orientation().map_err(|e| classify_err(path, e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| classify_err(path, e))?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (full_width, full_height) = rgb.dimensions();
    let image = match size {
        Size::Full => rgb,
        Size::Fit(fit) => {
            let (tw, th) = fit_dims(full_width, full_height, fit);
            if (tw, th) == rgb.dimensions() { rgb } else { image::imageops::thumbnail(&rgb, tw, th) }
        }
    };
    let orientation = orientation_number(orientation);
    Ok(Decoded { image, full_width, full_height, format, orientation, warning: None })
}

fn orientation_number(o: Orientation) -> u8 {
    match o {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}

/// Checks that a JPEG's bytes reach its end-of-image marker, walking the marker segments and
/// the entropy-coded scans (bytes after the EOI, such as an appended motion-photo video, are
/// allowed; an EXIF thumbnail's EOI inside APP1 is skipped with its segment). Decoders pad a
/// truncated JPEG with grey or give messages that depend on where it ends, so training and
/// [`decode_jpeg`] check this themselves. Data that is not a JPEG (no `FF D8` start) passes.
pub fn check_jpeg_complete(b: &[u8]) -> Result<(), String> {
    let n = b.len();
    if n < 2 || b[0] != 0xFF || b[1] != 0xD8 {
        return Ok(());
    }
    let truncated = |at: usize| Err(format!("truncated JPEG: the data ends at byte {at} of {n} before the end-of-image marker"));
    let mut i = 2;
    loop {
        // Next marker: skip anything up to 0xFF (decoders tolerate junk between segments), then fill bytes.
        while i < n && b[i] != 0xFF {
            i += 1;
        }
        while i < n && b[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return truncated(n);
        }
        let m = b[i];
        i += 1;
        match m {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                if i + 2 > n {
                    return truncated(n);
                }
                let len = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
                if len < 2 {
                    return Err(format!("corrupt JPEG: segment 0xFF{m:02X} at byte {} has length {len}", i - 2));
                }
                if i + len > n {
                    return truncated(n);
                }
                i += len;
                if m == 0xDA {
                    // Entropy-coded data runs to the next marker other than FF00, RSTn or fill bytes.
                    loop {
                        if i + 1 >= n {
                            return truncated(n);
                        }
                        if b[i] == 0xFF {
                            let next = b[i + 1];
                            if next == 0x00 || (0xD0..=0xD7).contains(&next) {
                                i += 2;
                                continue;
                            }
                            if next != 0xFF {
                                break;
                            }
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}
