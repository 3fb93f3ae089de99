//! A small reader for TIFF structures (image file directories) in a byte slice: the EXIF block of a
//! JPEG, and TIFF-based camera RAW files (CR2, NEF, ARW, DNG, ORF, RW2), including the CR3 `CMT`
//! boxes. Pure parsing of borrowed bytes; every offset is bounds-checked, nothing panics on bad input.

/// Field types (TIFF 6.0 plus BigTIFF-less EXIF usage).
const TYPE_SIZES: [usize; 14] = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4];

/// Most entries read from one IFD; more means a corrupt file.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct Tiff<'a> {
    data: &'a [u8],
    le: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub tag: u16,
    pub typ: u16,
    pub count: u32,
    /// Position of the value bytes in the slice (inline values point into the entry itself).
    pub pos: usize,
}

impl Entry {
    pub fn byte_len(&self) -> usize {
        TYPE_SIZES.get(self.typ as usize).copied().unwrap_or(0).saturating_mul(self.count as usize)
    }
}

impl<'a> Tiff<'a> {
    /// Accepts `II`/`MM` headers with magic 42 (TIFF), 0x4F52 / 0x5352 (Olympus ORF) and 0x55 (Panasonic RW2).
    pub fn parse(data: &'a [u8]) -> Option<Tiff<'a>> {
        if data.len() < 8 {
            return None;
        }
        let le = match &data[..2] {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        let t = Tiff { data, le };
        match t.u16_at(2)? {
            42 | 0x4F52 | 0x5352 | 0x55 => Some(t),
            _ => None,
        }
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    pub fn u16_at(&self, pos: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
    }

    pub fn u32_at(&self, pos: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }

    /// Offset of the first IFD.
    pub fn first_ifd(&self) -> Option<usize> {
        Some(self.u32_at(4)? as usize)
    }

    /// The entries of the IFD at `off` and the offset of the next IFD (0 = none).
    pub fn ifd(&self, off: usize) -> Option<(Vec<Entry>, usize)> {
        let n = self.u16_at(off)? as usize;
        if n == 0 || n > MAX_ENTRIES {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let p = off + 2 + 12 * i;
            let tag = self.u16_at(p)?;
            let typ = self.u16_at(p + 2)?;
            let count = self.u32_at(p + 4)?;
            let mut e = Entry { tag, typ, count, pos: p + 8 };
            if e.byte_len() > 4 {
                e.pos = self.u32_at(p + 8)? as usize;
            }
            entries.push(e);
        }
        let next = self.u32_at(off + 2 + 12 * n).unwrap_or(0) as usize;
        Some((entries, next))
    }

    /// The raw bytes of an entry's value, if they lie inside the slice.
    pub fn bytes(&self, e: &Entry) -> Option<&'a [u8]> {
        self.data.get(e.pos..e.pos.checked_add(e.byte_len())?)
    }

    /// Integer values (BYTE, SHORT, LONG, their signed forms; IFD type 13).
    pub fn uints(&self, e: &Entry) -> Option<Vec<u64>> {
        let n = (e.count as usize).min(1 << 16);
        (0..n)
            .map(|i| match e.typ {
                1 | 6 | 7 => self.data.get(e.pos + i).map(|&b| b as u64),
                3 | 8 => self.u16_at(e.pos + 2 * i).map(u64::from),
                4 | 9 | 13 => self.u32_at(e.pos + 4 * i).map(u64::from),
                _ => None,
            })
            .collect()
    }

    pub fn uint(&self, e: &Entry) -> Option<u64> {
        self.uints(e)?.first().copied()
    }

    /// First RATIONAL / SRATIONAL value as f64.
    pub fn rational(&self, e: &Entry) -> Option<f64> {
        let (n, d) = (self.u32_at(e.pos)?, self.u32_at(e.pos + 4)?);
        let (n, d) = if e.typ == 10 {
            (n as i32 as f64, d as i32 as f64)
        } else if e.typ == 5 {
            (n as f64, d as f64)
        } else {
            return None;
        };
        (d != 0.0).then(|| n / d)
    }

    /// ASCII value without its trailing NULs and spaces; `None` when empty.
    pub fn ascii(&self, e: &Entry) -> Option<String> {
        if e.typ != 2 && e.typ != 7 {
            return None;
        }
        let b = self.bytes(e)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        let s = String::from_utf8_lossy(&b[..end]).trim().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// Finds `tag` in a list of entries.
pub fn find(entries: &[Entry], tag: u16) -> Option<&Entry> {
    entries.iter().find(|e| e.tag == tag)
}

/// The header segments of a JPEG stream, `(marker, payload)`, in order, up to the image data
/// (start of scan or end of image); stops at the first malformed marker. Standalone markers
/// (SOI, TEM, RSTn) carry no payload and are skipped.
pub fn jpeg_segments(jpeg: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let valid = jpeg.len() >= 4 && jpeg[0] == 0xFF && jpeg[1] == 0xD8;
    let mut i = if valid { 2 } else { jpeg.len() };
    std::iter::from_fn(move || {
        while i + 4 <= jpeg.len() {
            if jpeg[i] != 0xFF {
                return None;
            }
            let marker = jpeg[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            if matches!(marker, 0xD8 | 0x01 | 0xD0..=0xD7) {
                i += 2;
                continue;
            }
            if marker == 0xDA || marker == 0xD9 {
                return None;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if len < 2 {
                return None;
            }
            let seg = jpeg.get(i + 4..i + 2 + len)?;
            i += 2 + len;
            return Some((marker, seg));
        }
        None
    })
}

/// The TIFF block of a JPEG's `Exif\0\0` APP1 segment, if any.
pub fn jpeg_exif(jpeg: &[u8]) -> Option<&[u8]> {
    jpeg_segments(jpeg).find(|(m, seg)| *m == 0xE1 && seg.starts_with(b"Exif\0\0")).map(|(_, seg)| &seg[6..])
}

/// EXIF orientation (1..=8) from IFD0 of a TIFF block; `None` when absent or out of range.
pub fn orientation(tiff: &Tiff) -> Option<u8> {
    let (entries, _) = tiff.ifd(tiff.first_ifd()?)?;
    let v = tiff.uint(find(&entries, 0x0112)?)?;
    (1..=8).contains(&v).then_some(v as u8)
}
