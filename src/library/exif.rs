//! EXIF summary of a photo: capture time (DateTimeOriginal + SubSecTimeOriginal), camera make, model
//! and body serial, lens, exposure, orientation. Used for burst grouping and shown in the app; stored
//! as JSON in the library database.
//!
//! Sources: a JPEG's `Exif` APP1 block; TIFF and TIFF-based RAW files (IFD0 + EXIF IFD); the JPEG inside
//! a RAF; the `CMT1`/`CMT2` TIFF blocks of a CR3. PNG and WebP have none here. Reads only a prefix of
//! the file where the metadata lives; writes nothing.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::formats::{Format, RawKind};
use super::raw;
use super::tiff::{self, Tiff};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExifSummary {
    /// `DateTimeOriginal` as written (`YYYY:MM:DD HH:MM:SS`), camera local time.
    pub date_time_original: Option<String>,
    /// `SubSecTimeOriginal` digits (fraction of a second).
    pub subsec: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// `BodySerialNumber` (EXIF 2.3) when the camera writes it.
    pub serial: Option<String>,
    pub lens: Option<String>,
    /// Seconds.
    pub exposure_time: Option<f64>,
    pub f_number: Option<f64>,
    pub iso: Option<u32>,
    /// Millimetres.
    pub focal_length: Option<f64>,
    pub orientation: Option<u8>,
}

impl ExifSummary {
    /// Capture time in milliseconds on the camera's clock (days since 1970-01-01 of the local date,
    /// no time zone), with the sub-second digits; `None` without a valid `DateTimeOriginal`.
    pub fn capture_ms(&self) -> Option<i64> {
        let s = self.date_time_original.as_deref()?;
        let b = s.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if y == 0 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        let mut ms = ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000;
        if let Some(sub) = self.subsec.as_deref() {
            let digits: String = sub.trim().chars().take_while(|c| c.is_ascii_digit()).take(3).collect();
            if !digits.is_empty() {
                let v: i64 = digits.parse().ok()?;
                ms += v * 10i64.pow(3 - digits.len() as u32);
            }
        }
        Some(ms)
    }

    /// Which camera took it: serial if known, else make + model.
    pub fn camera_id(&self) -> Option<String> {
        if let Some(s) = &self.serial {
            return Some(format!("{} {} #{s}", self.make.as_deref().unwrap_or(""), self.model.as_deref().unwrap_or("")));
        }
        match (&self.make, &self.model) {
            (None, None) => None,
            (a, b) => Some(format!("{} {}", a.as_deref().unwrap_or(""), b.as_deref().unwrap_or(""))),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == ExifSummary::default()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn fill_ifd0(t: &Tiff, entries: &[tiff::Entry], s: &mut ExifSummary) {
    let ascii = |tag| tiff::find(entries, tag).and_then(|e| t.ascii(e));
    s.make = s.make.take().or(ascii(0x010F));
    s.model = s.model.take().or(ascii(0x0110));
    if s.orientation.is_none() {
        s.orientation = tiff::find(entries, 0x0112).and_then(|e| t.uint(e)).filter(|v| (1..=8).contains(v)).map(|v| v as u8);
    }
    if s.date_time_original.is_none() {
        // DateTimeOriginal sometimes sits in IFD0 (TIFF/EP, some DNGs).
        s.date_time_original = ascii(0x9003);
    }
}

fn fill_exif_ifd(t: &Tiff, entries: &[tiff::Entry], s: &mut ExifSummary) {
    let ascii = |tag| tiff::find(entries, tag).and_then(|e| t.ascii(e));
    let rational = |tag| tiff::find(entries, tag).and_then(|e| t.rational(e)).filter(|v| v.is_finite() && *v > 0.0);
    s.date_time_original = ascii(0x9003).or(s.date_time_original.take());
    s.subsec = s.subsec.take().or(ascii(0x9291));
    s.serial = s.serial.take().or(ascii(0xA431));
    s.lens = s.lens.take().or(ascii(0xA434));
    s.exposure_time = s.exposure_time.or(rational(0x829A));
    s.f_number = s.f_number.or(rational(0x829D));
    s.focal_length = s.focal_length.or(rational(0x920A));
    s.iso = s.iso.or(tiff::find(entries, 0x8827).and_then(|e| t.uint(e)).map(|v| v as u32));
}

/// Summary from a TIFF block (IFD0 and the EXIF IFD it points to).
pub fn summary_from_tiff(data: &[u8]) -> ExifSummary {
    let mut s = ExifSummary::default();
    let Some(t) = Tiff::parse(data) else { return s };
    let Some((ifd0, _)) = t.first_ifd().and_then(|o| t.ifd(o)) else { return s };
    fill_ifd0(&t, &ifd0, &mut s);
    if let Some(off) = tiff::find(&ifd0, 0x8769).and_then(|e| t.uint(e))
        && let Some((exif, _)) = t.ifd(off as usize)
    {
        fill_exif_ifd(&t, &exif, &mut s);
    }
    s
}

/// Summary from a JPEG's bytes (its `Exif` APP1 block).
pub fn summary_from_jpeg(jpeg: &[u8]) -> ExifSummary {
    tiff::jpeg_exif(jpeg).map(summary_from_tiff).unwrap_or_default()
}

/// Summary from a CR3 file's bytes (`CMT1` = IFD0, `CMT2` = EXIF IFD).
pub fn summary_from_cr3(data: &[u8]) -> ExifSummary {
    let mut s = ExifSummary::default();
    for (kind, block) in raw::cr3_tiff_blocks(data) {
        let Some(t) = Tiff::parse(block) else { continue };
        let Some((entries, _)) = t.first_ifd().and_then(|o| t.ifd(o)) else { continue };
        match &kind {
            b"CMT1" => fill_ifd0(&t, &entries, &mut s),
            b"CMT2" => fill_exif_ifd(&t, &entries, &mut s),
            _ => {}
        }
    }
    s
}

fn read_prefix(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(path)?.take(n).read_to_end(&mut v)?;
    Ok(v)
}

/// Reads the EXIF summary of `path` of the given format. Files without EXIF give an empty summary;
/// only I/O errors are errors.
pub fn read_summary(path: &Path, format: Format) -> std::io::Result<ExifSummary> {
    const PREFIX: u64 = 1 << 20;
    Ok(match format {
        Format::Jpeg => summary_from_jpeg(&read_prefix(path, 128 << 10)?),
        Format::Png | Format::WebP => ExifSummary::default(),
        Format::Raw(RawKind::Cr3) => summary_from_cr3(&read_prefix(path, 4 * PREFIX)?),
        Format::Raw(RawKind::Raf) => {
            let head = read_prefix(path, PREFIX)?;
            match raw::locate_preview(&head, RawKind::Raf) {
                Some(loc) => summary_from_jpeg(&head[loc.range]),
                None => {
                    let all = std::fs::read(path)?;
                    raw::locate_preview(&all, RawKind::Raf).map(|l| summary_from_jpeg(&all[l.range])).unwrap_or_default()
                }
            }
        }
        Format::Tiff | Format::Raw(_) => {
            let head = read_prefix(path, PREFIX)?;
            let s = summary_from_tiff(&head);
            if s.date_time_original.is_none() && head.len() as u64 == PREFIX { summary_from_tiff(&std::fs::read(path)?) } else { s }
        }
    })
}
