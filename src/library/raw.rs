//! Camera RAW files shown through their embedded JPEG preview: finds the largest baseline or
//! progressive JPEG a RAW container carries and the orientation the container records for it.
//!
//! - TIFF-based (CR2, NEF, ARW, DNG, ORF, RW2): every IFD of the main chain and their SubIFDs (tag 0x14A),
//!   candidates from `JPEGInterchangeFormat`/`Length` (0x201/0x202), single-strip JPEG-compressed images
//!   (Compression 6 or 7, `StripOffsets`/`StripByteCounts`) and Panasonic's `JpgFromRaw` (0x2E). Lossless
//!   JPEG (SOF3, the raw data of CR2 and DNG) is not a preview and is skipped.
//! - RAF: the JPEG offset and length at bytes 84 and 88 of the header (big-endian).
//! - CR3 (ISO base media): the `PRVW` box (about 1620x1080) inside Canon's preview `uuid` box, else the
//!   `THMB` thumbnail (160x120) in `moov`; orientation from the `CMT1` TIFF block.
//!
//! Reads the file; never writes. Decoding of the preview itself is `decode.rs`'s job.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::formats::RawKind;
use super::tiff::{self, Tiff};

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {kind} file has no embedded JPEG preview that Keepers can show")]
    NoPreview { path: PathBuf, kind: &'static str },
}

/// Where the preview lies in the RAW file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLocation {
    pub range: Range<usize>,
    pub width: u32,
    pub height: u32,
    /// EXIF orientation the container records (IFD0 / CMT1), used when the preview has none of its own.
    pub orientation: Option<u8>,
}

/// An embedded preview, copied out of the RAW file.
#[derive(Debug, Clone)]
pub struct Preview {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub orientation: Option<u8>,
}

/// Width, height and SOF marker of a JPEG stream (from its first SOF segment).
pub fn jpeg_dimensions(jpeg: &[u8]) -> Option<(u32, u32, u8)> {
    let (m, s) = tiff::jpeg_segments(jpeg).find(|(m, _)| matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC))?;
    let s = s.get(..5)?;
    Some((u16::from_be_bytes([s[3], s[4]]) as u32, u16::from_be_bytes([s[1], s[2]]) as u32, m))
}

/// Accepts a candidate range if it holds a displayable (baseline / extended / progressive) JPEG.
fn candidate(data: &[u8], start: u64, len: u64, orientation: Option<u8>) -> Option<PreviewLocation> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?.min(data.len());
    if len < 4 || start >= end {
        return None;
    }
    let (width, height, sof) = jpeg_dimensions(&data[start..end])?;
    if !matches!(sof, 0xC0..=0xC2) || width == 0 || height == 0 {
        return None;
    }
    Some(PreviewLocation { range: start..end, width, height, orientation })
}

fn better(best: Option<PreviewLocation>, c: Option<PreviewLocation>) -> Option<PreviewLocation> {
    match (best, c) {
        (Some(b), Some(c)) => {
            let key = |p: &PreviewLocation| (p.width as u64 * p.height as u64, p.range.len());
            Some(if key(&c) > key(&b) { c } else { b })
        }
        (b, c) => b.or(c),
    }
}

fn tiff_preview(data: &[u8]) -> Option<PreviewLocation> {
    let t = Tiff::parse(data)?;
    let orientation = tiff::orientation(&t);
    let mut best = None;
    let mut queue: Vec<(usize, u32)> = vec![(t.first_ifd()?, 0)];
    let mut seen = std::collections::HashSet::new();
    while let Some((off, depth)) = queue.pop() {
        if off == 0 || depth > 4 || !seen.insert(off) || seen.len() > 64 {
            continue;
        }
        let Some((entries, next)) = t.ifd(off) else { continue };
        queue.push((next, depth));
        let get = |tag| tiff::find(&entries, tag).and_then(|e| t.uint(e));
        if let (Some(o), Some(l)) = (get(0x201), get(0x202)) {
            best = better(best, candidate(data, o, l, orientation));
        }
        if matches!(get(0x103), Some(6 | 7))
            && let (Some(so), Some(sc)) = (tiff::find(&entries, 0x111), tiff::find(&entries, 0x117))
            && let (Some(so), Some(sc)) = (t.uints(so), t.uints(sc))
            && so.len() == 1
            && sc.len() == 1
        {
            best = better(best, candidate(data, so[0], sc[0], orientation));
        }
        if let Some(e) = tiff::find(&entries, 0x2E) {
            best = better(best, candidate(data, e.pos as u64, e.count as u64, orientation));
        }
        if let Some(e) = tiff::find(&entries, 0x14A)
            && let Some(subs) = t.uints(e)
        {
            queue.extend(subs.into_iter().map(|s| (s as usize, depth + 1)));
        }
    }
    best
}

fn raf_preview(data: &[u8]) -> Option<PreviewLocation> {
    let be = |p: usize| data.get(p..p + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as u64);
    let (off, len) = (be(84)?, be(88)?);
    candidate(data, off, len, None)
}

/// An ISO base media box: type, payload range (after the header) and whole-box range.
#[derive(Debug, Clone)]
pub struct BmffBox {
    pub kind: [u8; 4],
    pub payload: Range<usize>,
}

/// The boxes directly inside `range` of `data`.
pub fn bmff_boxes(data: &[u8], range: Range<usize>) -> Vec<BmffBox> {
    let mut out = Vec::new();
    let mut i = range.start;
    let end = range.end.min(data.len());
    while i + 8 <= end {
        let size32 = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as u64;
        let kind: [u8; 4] = data[i + 4..i + 8].try_into().unwrap();
        let (header, size) = match size32 {
            1 => match data.get(i + 8..i + 16) {
                Some(b) => (16usize, u64::from_be_bytes(b.try_into().unwrap())),
                None => break,
            },
            0 => (8, (end - i) as u64),
            s => (8, s),
        };
        let Some(box_end) = usize::try_from(size).ok().and_then(|s| i.checked_add(s)) else { break };
        if size < header as u64 || box_end > end {
            break;
        }
        out.push(BmffBox { kind, payload: i + header..box_end });
        i = box_end;
    }
    out
}

const CANON_UUID: [u8; 16] = [0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48];
const CANON_PREVIEW_UUID: [u8; 16] = [0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88, 0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16];

/// The boxes inside Canon's metadata `uuid` box of `moov` (CMT1..CMT4, THMB, ...).
fn cr3_canon_boxes(data: &[u8]) -> Vec<BmffBox> {
    for b in bmff_boxes(data, 0..data.len()) {
        if &b.kind == b"moov" {
            for u in bmff_boxes(data, b.payload.clone()) {
                if &u.kind == b"uuid" && data.get(u.payload.start..u.payload.start + 16) == Some(&CANON_UUID[..]) {
                    return bmff_boxes(data, u.payload.start + 16..u.payload.end);
                }
            }
        }
    }
    Vec::new()
}

/// The TIFF blocks of a CR3 file: `CMT1` (IFD0), `CMT2` (EXIF IFD), `CMT3` (maker notes), `CMT4` (GPS).
pub fn cr3_tiff_blocks(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    cr3_canon_boxes(data).into_iter().filter(|b| b.kind.starts_with(b"CMT")).map(|b| (b.kind, &data[b.payload])).collect()
}

/// A `PRVW` / `THMB` box: the JPEG follows a small header (its size field sits at a different place in
/// each box) and runs to the end of the box; decoders stop at its end-of-image marker.
fn cr3_jpeg_in(data: &[u8], payload: Range<usize>, orientation: Option<u8>) -> Option<PreviewLocation> {
    let body = data.get(payload.clone())?;
    let at = body.windows(3).take(64).position(|w| w == [0xFF, 0xD8, 0xFF])?;
    let start = payload.start + at;
    candidate(data, start as u64, (payload.end - start) as u64, orientation)
}

fn cr3_preview(data: &[u8]) -> Option<PreviewLocation> {
    let canon = cr3_canon_boxes(data);
    let orientation =
        canon.iter().find(|b| &b.kind == b"CMT1").and_then(|b| Tiff::parse(&data[b.payload.clone()])).and_then(|t| tiff::orientation(&t));
    let mut best = None;
    for b in bmff_boxes(data, 0..data.len()) {
        if &b.kind == b"uuid" && data.get(b.payload.start..b.payload.start + 16) == Some(&CANON_PREVIEW_UUID[..]) {
            // 16-byte UUID, 8 bytes (version, flags, count), then the PRVW box.
            for p in bmff_boxes(data, (b.payload.start + 24).min(b.payload.end)..b.payload.end) {
                if &p.kind == b"PRVW" {
                    best = better(best, cr3_jpeg_in(data, p.payload, orientation));
                }
            }
        }
    }
    if best.is_none()
        && let Some(t) = canon.iter().find(|b| &b.kind == b"THMB")
    {
        best = cr3_jpeg_in(data, t.payload.clone(), orientation);
    }
    best
}

/// Locates the embedded preview in the bytes of a RAW file of kind `kind`.
pub fn locate_preview(data: &[u8], kind: RawKind) -> Option<PreviewLocation> {
    match kind {
        RawKind::Raf => raf_preview(data),
        RawKind::Cr3 => cr3_preview(data),
        _ => tiff_preview(data),
    }
}

/// Reads `path` and copies out its embedded preview.
pub fn read_preview(path: &Path, kind: RawKind) -> Result<Preview, RawError> {
    let data = std::fs::read(path).map_err(|source| RawError::Io { path: path.to_owned(), source })?;
    let loc = locate_preview(&data, kind).ok_or_else(|| RawError::NoPreview { path: path.to_owned(), kind: kind.name() })?;
    Ok(Preview { jpeg: data[loc.range].to_vec(), width: loc.width, height: loc.height, orientation: loc.orientation })
}
