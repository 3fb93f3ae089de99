//! Photo formats recognised from a file's first bytes (magic numbers), with the extension used only
//! where the bytes cannot tell (TIFF-based camera RAW files share TIFF's header).
//!
//! Reads at most [`SNIFF_LEN`] bytes of a file; writes nothing.

use std::io::Read;
use std::path::Path;

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: usize = 32;

/// A camera RAW container, shown through its embedded JPEG preview (`super::raw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawKind {
    /// Canon CR2 (TIFF with `CR` at byte 8).
    Cr2,
    /// Canon CR3 (ISO base media file, brand `crx `).
    Cr3,
    /// Nikon NEF (TIFF).
    Nef,
    /// Sony ARW (TIFF).
    Arw,
    /// Fujifilm RAF (`FUJIFILMCCD-RAW`).
    Raf,
    /// Olympus ORF (TIFF variant, magic `RO` / `RS`).
    Orf,
    /// Panasonic RW2 (TIFF variant, magic 0x55).
    Rw2,
    /// Adobe DNG (TIFF).
    Dng,
}

impl RawKind {
    pub fn name(self) -> &'static str {
        match self {
            RawKind::Cr2 => "CR2",
            RawKind::Cr3 => "CR3",
            RawKind::Nef => "NEF",
            RawKind::Arw => "ARW",
            RawKind::Raf => "RAF",
            RawKind::Orf => "ORF",
            RawKind::Rw2 => "RW2",
            RawKind::Dng => "DNG",
        }
    }

    /// The RAW kind a file extension names (case-insensitive), if any.
    pub fn from_extension(ext: &str) -> Option<RawKind> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "cr2" => RawKind::Cr2,
            "cr3" => RawKind::Cr3,
            "nef" | "nrw" => RawKind::Nef,
            "arw" | "srf" | "sr2" => RawKind::Arw,
            "raf" => RawKind::Raf,
            "orf" => RawKind::Orf,
            "rw2" | "rwl" => RawKind::Rw2,
            "dng" => RawKind::Dng,
            _ => return None,
        })
    }
}

/// A format Keepers can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Tiff,
    WebP,
    Raw(RawKind),
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Tiff => "TIFF",
            Format::WebP => "WebP",
            Format::Raw(k) => k.name(),
        }
    }

    pub fn is_raw(self) -> bool {
        matches!(self, Format::Raw(_))
    }
}

/// What the first bytes of a file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Supported(Format),
    /// A recognised image format Keepers does not read (GIF, HEIC, JPEG 2000, ...), by name.
    Unsupported(&'static str),
    /// Not an image format known here.
    Unknown,
    /// Zero bytes.
    Empty,
}

/// Extensions that say "this is meant to be a photo": such a file that turns out empty, unknown or
/// unsupported is reported by the scanner rather than silently skipped.
pub fn is_image_extension(ext: &str) -> bool {
    RawKind::from_extension(ext).is_some()
        || matches!(
            ext.to_ascii_lowercase().as_str(),
            "jpg"
                | "jpeg"
                | "jpe"
                | "jfif"
                | "png"
                | "tif"
                | "tiff"
                | "webp"
                | "gif"
                | "heic"
                | "heif"
                | "hif"
                | "avif"
                | "bmp"
                | "jp2"
                | "jxl"
        )
}

/// Recognises a format from the first bytes of a file (at least 12 are needed for most formats;
/// [`SNIFF_LEN`] is enough for all). `ext` (without the dot) only separates TIFF-based RAW kinds.
pub fn sniff(head: &[u8], ext: Option<&str>) -> Sniffed {
    if head.is_empty() {
        return Sniffed::Empty;
    }
    let raw_ext = ext.and_then(RawKind::from_extension);
    let at = |off: usize, magic: &[u8]| head.len() >= off + magic.len() && &head[off..off + magic.len()] == magic;
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Sniffed::Supported(Format::Jpeg);
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Sniffed::Supported(Format::Png);
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Sniffed::Supported(Format::WebP);
    }
    if at(0, b"FUJIFILMCCD-RAW") {
        return Sniffed::Supported(Format::Raw(RawKind::Raf));
    }
    if at(4, b"ftyp") {
        if at(8, b"crx ") {
            return Sniffed::Supported(Format::Raw(RawKind::Cr3));
        }
        if at(8, b"heic") || at(8, b"heix") || at(8, b"mif1") || at(8, b"msf1") || at(8, b"hevc") {
            return Sniffed::Unsupported("HEIF");
        }
        if at(8, b"avif") || at(8, b"avis") {
            return Sniffed::Unsupported("AVIF");
        }
        return Sniffed::Unknown;
    }
    if at(0, b"IIRO") || at(0, b"IIRS") || at(0, b"MMOR") {
        return Sniffed::Supported(Format::Raw(RawKind::Orf));
    }
    if at(0, b"IIU\0") {
        return Sniffed::Supported(Format::Raw(RawKind::Rw2));
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        if at(8, b"CR") {
            return Sniffed::Supported(Format::Raw(RawKind::Cr2));
        }
        return Sniffed::Supported(match raw_ext {
            Some(k @ (RawKind::Nef | RawKind::Arw | RawKind::Dng | RawKind::Cr2 | RawKind::Orf | RawKind::Rw2)) => Format::Raw(k),
            _ => Format::Tiff,
        });
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Sniffed::Unsupported("GIF");
    }
    if at(0, b"BM") && head.len() >= 14 {
        return Sniffed::Unsupported("BMP");
    }
    if at(0, &[0xFF, 0x0A]) || at(4, b"JXL ") {
        return Sniffed::Unsupported("JPEG XL");
    }
    if at(4, b"jP  ") || at(0, &[0xFF, 0x4F, 0xFF, 0x51]) {
        return Sniffed::Unsupported("JPEG 2000");
    }
    Sniffed::Unknown
}

/// Reads the first [`SNIFF_LEN`] bytes of `path` and sniffs them.
pub fn sniff_file(path: &Path) -> std::io::Result<Sniffed> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; SNIFF_LEN];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let ext = path.extension().and_then(|e| e.to_str());
    Ok(sniff(&head[..n], ext))
}
