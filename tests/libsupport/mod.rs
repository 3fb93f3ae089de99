//! Shared helpers for the album library tests: JPEG encoding of test patterns, EXIF blocks and whole
//! TIFF-based RAW containers built byte by byte, and running a test body as an unprivileged user (so
//! permission tests mean something when the suite runs as root).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Four flat quadrants: top-left red, top-right green, bottom-left blue, bottom-right white.
pub const QUAD: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];

pub fn quadrants(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(QUAD[(y >= h / 2) as usize * 2 + (x >= w / 2) as usize]))
}

/// A smooth pattern that compresses like a photo (no flat areas).
pub fn pattern(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = |k: u32| (((x * (3 + k + seed) + y * (5 + 2 * k)) ^ (x * y / 97 + seed * 31)) % 256) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

pub fn encode_jpeg(img: &image::RgbImage, quality: i32) -> Vec<u8> {
    let t = turbojpeg::Image {
        pixels: img.as_raw().as_slice(),
        width: img.width() as usize,
        pitch: img.width() as usize * 3,
        height: img.height() as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(t, quality, turbojpeg::Subsamp::None).unwrap().to_vec()
}

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode_jpeg(&pattern(w, h, 1), 90)
}

/// Inserts an `Exif` APP1 segment holding `tiff` right after the SOI marker.
pub fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(tiff);
    let len = (seg.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A TIFF field value. Offsets to blobs and IFDs are resolved when the file is laid out.
#[derive(Clone, Debug)]
pub enum Val {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Ascii(String),
    Rational(u32, u32),
    Undefined(Vec<u8>),
    /// LONG offset of blob `i`.
    BlobOffset(usize),
    /// LONG byte length of blob `i`.
    BlobLen(usize),
    /// LONG offsets of the given IFDs (SubIFDs, EXIF IFD pointer).
    IfdOffsets(Vec<usize>),
}

impl Val {
    fn typ(&self) -> u16 {
        match self {
            Val::Short(_) => 3,
            Val::Ascii(_) => 2,
            Val::Rational(..) => 5,
            Val::Undefined(_) => 7,
            _ => 4,
        }
    }
    fn count(&self) -> u32 {
        match self {
            Val::Short(v) => v.len() as u32,
            Val::Long(v) => v.len() as u32,
            Val::Ascii(s) => s.len() as u32 + 1,
            Val::Rational(..) => 1,
            Val::Undefined(b) => b.len() as u32,
            Val::BlobOffset(_) | Val::BlobLen(_) => 1,
            Val::IfdOffsets(v) => v.len() as u32,
        }
    }
    fn byte_len(&self) -> usize {
        match self {
            Val::Short(v) => 2 * v.len(),
            Val::Long(v) => 4 * v.len(),
            Val::Ascii(s) => s.len() + 1,
            Val::Rational(..) => 8,
            Val::Undefined(b) => b.len(),
            Val::BlobOffset(_) | Val::BlobLen(_) => 4,
            Val::IfdOffsets(v) => 4 * v.len(),
        }
    }
}

/// Builds a little-endian TIFF: IFDs (the `chain` ones linked as the main IFD chain, the others reached
/// through `IfdOffsets` values) followed by blobs (image data).
#[derive(Default, Clone)]
pub struct TiffBuilder {
    pub magic: u16,
    /// Bytes after the 8-byte header before the first IFD (CR2 puts `CR`, version and an offset there).
    pub header_extra: Vec<u8>,
    pub ifds: Vec<Vec<(u16, Val)>>,
    pub chain: Vec<usize>,
    pub blobs: Vec<Vec<u8>>,
}

impl TiffBuilder {
    pub fn new() -> Self {
        TiffBuilder { magic: 42, ..Default::default() }
    }

    pub fn ifd(&mut self, entries: Vec<(u16, Val)>) -> usize {
        let mut e = entries;
        e.sort_by_key(|(t, _)| *t);
        self.ifds.push(e);
        self.ifds.len() - 1
    }

    pub fn blob(&mut self, b: Vec<u8>) -> usize {
        self.blobs.push(b);
        self.blobs.len() - 1
    }

    pub fn build(&self) -> Vec<u8> {
        let start = 8 + self.header_extra.len();
        let ifd_size = |e: &Vec<(u16, Val)>| {
            2 + 12 * e.len() + 4 + e.iter().map(|(_, v)| if v.byte_len() > 4 { (v.byte_len() + 1) & !1 } else { 0 }).sum::<usize>()
        };
        let mut ifd_off = Vec::new();
        let mut pos = start;
        for e in &self.ifds {
            ifd_off.push(pos);
            pos += ifd_size(e);
        }
        let mut blob_off = Vec::new();
        for b in &self.blobs {
            blob_off.push(pos);
            pos += (b.len() + 1) & !1;
        }
        let mut out = vec![0u8; pos];
        out[..2].copy_from_slice(b"II");
        out[2..4].copy_from_slice(&self.magic.to_le_bytes());
        let first = self.chain.first().map_or(0, |&i| ifd_off[i]) as u32;
        out[4..8].copy_from_slice(&first.to_le_bytes());
        out[8..start].copy_from_slice(&self.header_extra);
        for (i, e) in self.ifds.iter().enumerate() {
            let base = ifd_off[i];
            out[base..base + 2].copy_from_slice(&(e.len() as u16).to_le_bytes());
            let mut extra = base + 2 + 12 * e.len() + 4;
            for (k, (tag, v)) in e.iter().enumerate() {
                let p = base + 2 + 12 * k;
                out[p..p + 2].copy_from_slice(&tag.to_le_bytes());
                out[p + 2..p + 4].copy_from_slice(&v.typ().to_le_bytes());
                out[p + 4..p + 8].copy_from_slice(&v.count().to_le_bytes());
                let bytes: Vec<u8> = match v {
                    Val::Short(s) => s.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Val::Long(s) => s.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Val::Ascii(s) => {
                        let mut b = s.as_bytes().to_vec();
                        b.push(0);
                        b
                    }
                    Val::Rational(n, d) => [n.to_le_bytes(), d.to_le_bytes()].concat(),
                    Val::Undefined(b) => b.clone(),
                    Val::BlobOffset(j) => (blob_off[*j] as u32).to_le_bytes().to_vec(),
                    Val::BlobLen(j) => (self.blobs[*j].len() as u32).to_le_bytes().to_vec(),
                    Val::IfdOffsets(v) => v.iter().flat_map(|&j| (ifd_off[j] as u32).to_le_bytes()).collect(),
                };
                if bytes.len() <= 4 {
                    out[p + 8..p + 8 + bytes.len()].copy_from_slice(&bytes);
                } else {
                    out[p + 8..p + 12].copy_from_slice(&(extra as u32).to_le_bytes());
                    out[extra..extra + bytes.len()].copy_from_slice(&bytes);
                    extra += (bytes.len() + 1) & !1;
                }
            }
            let next_pos = base + 2 + 12 * e.len();
            let next = self.chain.iter().position(|&c| c == i).and_then(|k| self.chain.get(k + 1)).map_or(0, |&n| ifd_off[n]);
            out[next_pos..next_pos + 4].copy_from_slice(&(next as u32).to_le_bytes());
        }
        for (j, b) in self.blobs.iter().enumerate() {
            out[blob_off[j]..blob_off[j] + b.len()].copy_from_slice(b);
        }
        out
    }
}

/// An EXIF TIFF block: IFD0 (make, model, orientation) and an EXIF IFD (capture time, serial, exposure).
pub struct ExifSpec<'a> {
    pub make: &'a str,
    pub model: &'a str,
    pub orientation: Option<u16>,
    pub date_time_original: Option<&'a str>,
    pub subsec: Option<&'a str>,
    pub serial: Option<&'a str>,
}

pub fn exif_block(s: &ExifSpec) -> Vec<u8> {
    let mut b = TiffBuilder::new();
    let mut exif = vec![(0x829A, Val::Rational(1, 250)), (0x829D, Val::Rational(28, 10)), (0x8827, Val::Short(vec![400]))];
    if let Some(d) = s.date_time_original {
        exif.push((0x9003, Val::Ascii(d.into())));
    }
    if let Some(d) = s.subsec {
        exif.push((0x9291, Val::Ascii(d.into())));
    }
    if let Some(d) = s.serial {
        exif.push((0xA431, Val::Ascii(d.into())));
    }
    let exif_ifd = 1;
    let mut ifd0 =
        vec![(0x010F, Val::Ascii(s.make.into())), (0x0110, Val::Ascii(s.model.into())), (0x8769, Val::IfdOffsets(vec![exif_ifd]))];
    if let Some(o) = s.orientation {
        ifd0.push((0x0112, Val::Short(vec![o])));
    }
    let i0 = b.ifd(ifd0);
    let i1 = b.ifd(exif);
    assert_eq!(i1, exif_ifd);
    b.chain = vec![i0];
    b.build()
}

/// A lossless-JPEG stub (SOF3) like the raw data of CR2 / DNG files: never a preview.
pub fn lossless_jpeg_stub(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 0x0E];
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
    v.extend(std::iter::repeat_n(0x55, 4096));
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// Mean colour of a `r`-pixel square around (x, y).
pub fn mean_at(img: &image::RgbImage, x: u32, y: u32, r: u32) -> [f32; 3] {
    let mut s = [0f32; 3];
    let mut n = 0.0;
    for yy in y.saturating_sub(r)..(y + r).min(img.height()) {
        for xx in x.saturating_sub(r)..(x + r).min(img.width()) {
            let p = img.get_pixel(xx, yy).0;
            for c in 0..3 {
                s[c] += p[c] as f32;
            }
            n += 1.0;
        }
    }
    s.map(|v| v / n)
}

pub fn close(a: [f32; 3], b: [u8; 3], tol: f32) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y as f32).abs() <= tol)
}

/// Effective user id from /proc (Linux); `None` elsewhere.
pub fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse().ok()
}

/// Runs test `child_test` of this test binary (an `#[ignore]`d test reading `env`) as user `nobody`
/// when the suite runs as root, so that permission bits are enforced; returns false when not root (the
/// caller then runs the body itself). Panics if the child fails.
pub fn run_unprivileged_if_root(child_test: &str, env: &[(&str, &Path)]) -> bool {
    if euid() != Some(0) {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&exe).args([
        "--exact",
        child_test,
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("setpriv (util-linux) runs permission tests as nobody when the suite runs as root");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "unprivileged child {child_test} failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
    true
}

/// Makes `dir` and its parents up to the temp dir traversable by other users.
pub fn open_up(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The smallest file the album reads as a Canon CR2: a TIFF with the `CR` marker and a JPEG preview.
pub fn minimal_cr2() -> Vec<u8> {
    let mut b = TiffBuilder::new();
    b.header_extra = vec![b'C', b'R', 2, 0, 0, 0, 0, 0];
    let p = b.blob(jpeg(64, 48));
    let i = b.ifd(vec![(0x103, Val::Short(vec![6])), (0x111, Val::BlobOffset(p)), (0x117, Val::BlobLen(p))]);
    b.chain = vec![i];
    b.build()
}

/// The smallest file the album reads as a DNG: a TIFF with `DNGVersion` and a JPEG preview.
pub fn minimal_dng() -> Vec<u8> {
    let mut b = TiffBuilder::new();
    let p = b.blob(jpeg(64, 48));
    let i = b.ifd(vec![
        (0x103, Val::Short(vec![7])),
        (0x111, Val::BlobOffset(p)),
        (0x117, Val::BlobLen(p)),
        (0xC612, Val::Undefined(vec![1, 4, 0, 0])),
    ]);
    b.chain = vec![i];
    b.build()
}
