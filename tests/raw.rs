//! Camera RAW files shown through their embedded JPEG preview, on containers built here byte by byte
//! with the layouts the cameras write: CR2 (IFD0 strip preview, IFD1 thumbnail, lossless raw in IFD3),
//! NEF (preview in a SubIFD), DNG (lossless raw and baseline preview as SubIFD strips), RW2 (`JpgFromRaw`),
//! RAF (header offsets) and CR3 (ISO base media: `PRVW` box, `THMB`, `CMT1`/`CMT2` metadata).

mod libsupport;

use std::fs;
use std::path::{Path, PathBuf};

use keepers::library::decode::{DecodeError, Size, decode_path};
use keepers::library::exif::read_summary;
use keepers::library::formats::{Format, RawKind, Sniffed, sniff_file};
use keepers::library::raw::{RawError, locate_preview};
use libsupport::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Checks sniffing, preview location, upright decode and (where given) the EXIF summary of a RAW file
/// whose largest displayable preview is `preview` (stored size `pw` x `ph`) shown with `orientation`.
fn check(path: &Path, kind: RawKind, pw: u32, ph: u32, orientation: u8, preview: &image::RgbImage) {
    assert_eq!(sniff_file(path).unwrap(), Sniffed::Supported(Format::Raw(kind)), "{}", path.display());
    let data = fs::read(path).unwrap();
    let loc = locate_preview(&data, kind).unwrap_or_else(|| panic!("{}: no preview found", path.display()));
    assert_eq!((loc.width, loc.height), (pw, ph), "{}", path.display());
    let d = decode_path(path, Size::Full).unwrap();
    assert_eq!(d.format, Format::Raw(kind));
    assert_eq!(d.orientation, orientation, "{}", path.display());
    let (ew, eh) = if orientation >= 5 { (ph, pw) } else { (pw, ph) };
    assert_eq!(d.image.dimensions(), (ew, eh), "{}", path.display());
    if orientation == 1 {
        // The pixels are the preview's.
        let diff: f64 = d.image.as_raw().iter().zip(preview.as_raw()).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>()
            / preview.as_raw().len() as f64;
        assert!(diff < 8.0, "{}: mean abs difference {diff}", path.display());
    }
    let t = decode_path(path, Size::Fit(64)).unwrap();
    assert_eq!(t.image.width().max(t.image.height()), 64);
}

fn smooth(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::imageops::blur(&pattern(w, h, seed), 2.0)
}

#[test]
fn cr2_preview_from_ifd0_strip_with_container_orientation() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(600, 400, 1);
    let thumb = smooth(160, 120, 2);
    let mut b = TiffBuilder::new();
    b.header_extra = vec![b'C', b'R', 2, 0, 0, 0, 0, 0];
    let p = b.blob(encode_jpeg(&preview, 92));
    let t = b.blob(encode_jpeg(&thumb, 80));
    let r = b.blob(lossless_jpeg_stub(6000, 4000));
    let exif = b.ifd(vec![
        (0x9003, Val::Ascii("2024:06:01 10:15:42".into())),
        (0x9291, Val::Ascii("37".into())),
        (0xA431, Val::Ascii("032021001234".into())),
        (0xA434, Val::Ascii("RF24-105mm F4 L IS USM".into())),
        (0x829A, Val::Rational(1, 1000)),
        (0x829D, Val::Rational(40, 10)),
        (0x8827, Val::Short(vec![800])),
    ]);
    let ifd0 = b.ifd(vec![
        (0x100, Val::Short(vec![600])),
        (0x101, Val::Short(vec![400])),
        (0x103, Val::Short(vec![6])),
        (0x10F, Val::Ascii("Canon".into())),
        (0x110, Val::Ascii("Canon EOS 5D Mark IV".into())),
        (0x111, Val::BlobOffset(p)),
        (0x112, Val::Short(vec![6])),
        (0x117, Val::BlobLen(p)),
        (0x8769, Val::IfdOffsets(vec![exif])),
    ]);
    let ifd1 = b.ifd(vec![(0x201, Val::BlobOffset(t)), (0x202, Val::BlobLen(t))]);
    let ifd2 = b.ifd(vec![(0x100, Val::Short(vec![592])), (0x101, Val::Short(vec![395])), (0x103, Val::Short(vec![1]))]);
    let ifd3 = b.ifd(vec![(0x103, Val::Short(vec![6])), (0x111, Val::BlobOffset(r)), (0x117, Val::BlobLen(r))]);
    b.chain = vec![ifd0, ifd1, ifd2, ifd3];
    // A misleading extension: the bytes say CR2.
    let path = write(dir.path(), "IMG_0001.tif", &b.build());
    check(&path, RawKind::Cr2, 600, 400, 6, &preview);
    let s = read_summary(&path, Format::Raw(RawKind::Cr2)).unwrap();
    assert_eq!(s.make.as_deref(), Some("Canon"));
    assert_eq!(s.model.as_deref(), Some("Canon EOS 5D Mark IV"));
    assert_eq!(s.date_time_original.as_deref(), Some("2024:06:01 10:15:42"));
    assert_eq!(s.subsec.as_deref(), Some("37"));
    assert_eq!(s.serial.as_deref(), Some("032021001234"));
    assert_eq!(s.lens.as_deref(), Some("RF24-105mm F4 L IS USM"));
    assert_eq!((s.exposure_time, s.f_number, s.iso), (Some(0.001), Some(4.0), Some(800)));
    assert_eq!(s.orientation, Some(6));
    // 2024-06-01 is day 19875 after 1970-01-01.
    assert_eq!(s.capture_ms(), Some(((19875 * 24 + 10) * 60 + 15) * 60_000 + 42_000 + 370));
}

#[test]
fn nef_preview_in_subifd() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(640, 424, 3);
    let mut b = TiffBuilder::new();
    let p = b.blob(encode_jpeg(&preview, 90));
    let cfa = b.blob(vec![0x11; 8192]);
    let sub_preview =
        b.ifd(vec![(0xFE, Val::Long(vec![1])), (0x103, Val::Short(vec![6])), (0x201, Val::BlobOffset(p)), (0x202, Val::BlobLen(p))]);
    let sub_raw =
        b.ifd(vec![(0xFE, Val::Long(vec![0])), (0x103, Val::Short(vec![1])), (0x111, Val::BlobOffset(cfa)), (0x117, Val::BlobLen(cfa))]);
    let ifd0 = b.ifd(vec![
        (0x10F, Val::Ascii("NIKON CORPORATION".into())),
        (0x110, Val::Ascii("NIKON Z 6_2".into())),
        (0x112, Val::Short(vec![1])),
        (0x14A, Val::IfdOffsets(vec![sub_preview, sub_raw])),
    ]);
    b.chain = vec![ifd0];
    let path = write(dir.path(), "DSC_0412.NEF", &b.build());
    check(&path, RawKind::Nef, 640, 424, 1, &preview);
    assert_eq!(read_summary(&path, Format::Raw(RawKind::Nef)).unwrap().model.as_deref(), Some("NIKON Z 6_2"));
}

#[test]
fn dng_preview_next_to_lossless_raw() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(512, 342, 4);
    let mut b = TiffBuilder::new();
    let raw = b.blob(lossless_jpeg_stub(6016, 4016));
    let p = b.blob(encode_jpeg(&preview, 90));
    let sub_raw =
        b.ifd(vec![(0xFE, Val::Long(vec![0])), (0x103, Val::Short(vec![7])), (0x111, Val::BlobOffset(raw)), (0x117, Val::BlobLen(raw))]);
    let sub_prev =
        b.ifd(vec![(0xFE, Val::Long(vec![1])), (0x103, Val::Short(vec![7])), (0x111, Val::BlobOffset(p)), (0x117, Val::BlobLen(p))]);
    let ifd0 = b.ifd(vec![
        (0xFE, Val::Long(vec![1])),
        (0x103, Val::Short(vec![1])),
        (0x112, Val::Short(vec![3])),
        (0x14A, Val::IfdOffsets(vec![sub_raw, sub_prev])),
        (0xC612, Val::Undefined(vec![1, 4, 0, 0])),
    ]);
    b.chain = vec![ifd0];
    let path = write(dir.path(), "L1004220.DNG", &b.build());
    check(&path, RawKind::Dng, 512, 342, 3, &preview);
}

#[test]
fn rw2_jpg_from_raw() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(480, 320, 5);
    let mut b = TiffBuilder::new();
    b.magic = 0x55;
    let ifd0 = b.ifd(vec![(0x2E, Val::Undefined(encode_jpeg(&preview, 90))), (0x10F, Val::Ascii("Panasonic".into()))]);
    b.chain = vec![ifd0];
    let path = write(dir.path(), "P1000123.RW2", &b.build());
    check(&path, RawKind::Rw2, 480, 320, 1, &preview);
}

#[test]
fn raf_preview_from_header_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(400, 600, 6);
    let exif = exif_block(&ExifSpec {
        make: "FUJIFILM",
        model: "X-T4",
        orientation: Some(8),
        date_time_original: Some("2023:12:24 18:00:01"),
        subsec: Some("5"),
        serial: None,
    });
    let jpeg = with_exif(&encode_jpeg(&preview, 90), &exif);
    let mut f = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
    f.resize(84, 0);
    let off = 160u32;
    f.extend_from_slice(&off.to_be_bytes());
    f.extend_from_slice(&(jpeg.len() as u32).to_be_bytes());
    f.resize(off as usize, 0);
    f.extend_from_slice(&jpeg);
    f.extend(std::iter::repeat_n(0x42, 10_000)); // CFA data
    let path = write(dir.path(), "DSCF0001.RAF", &f);
    check(&path, RawKind::Raf, 400, 600, 8, &preview);
    let s = read_summary(&path, Format::Raw(RawKind::Raf)).unwrap();
    assert_eq!(
        (s.make.as_deref(), s.date_time_original.as_deref(), s.subsec.as_deref()),
        (Some("FUJIFILM"), Some("2023:12:24 18:00:01"), Some("5"))
    );
}

fn bmff(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

#[test]
fn cr3_prvw_box_and_cmt_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let preview = smooth(540, 360, 7);
    let thumb = smooth(160, 120, 8);
    let pj = encode_jpeg(&preview, 90);
    let tj = encode_jpeg(&thumb, 80);
    // CMT1: IFD0 (make, model, orientation); CMT2: a TIFF whose first IFD is the EXIF IFD.
    let mut c1 = TiffBuilder::new();
    let i = c1.ifd(vec![(0x10F, Val::Ascii("Canon".into())), (0x110, Val::Ascii("Canon EOS R5".into())), (0x112, Val::Short(vec![8]))]);
    c1.chain = vec![i];
    let mut c2 = TiffBuilder::new();
    let i = c2.ifd(vec![
        (0x9003, Val::Ascii("2025:03:14 15:09:26".into())),
        (0x9291, Val::Ascii("53".into())),
        (0xA431, Val::Ascii("012345678901".into())),
    ]);
    c2.chain = vec![i];
    let mut thmb = vec![0, 0, 0, 0];
    thmb.extend_from_slice(&160u16.to_be_bytes());
    thmb.extend_from_slice(&120u16.to_be_bytes());
    thmb.extend_from_slice(&(tj.len() as u32).to_be_bytes());
    thmb.extend_from_slice(&[0, 1, 0, 0]);
    thmb.extend_from_slice(&tj);
    let canon_uuid = [0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48];
    let mut cu = canon_uuid.to_vec();
    cu.extend(bmff(b"CNCV", b"CanonCR3_001/00.09.00/00.00.00"));
    cu.extend(bmff(b"CMT1", &c1.build()));
    cu.extend(bmff(b"CMT2", &c2.build()));
    cu.extend(bmff(b"THMB", &thmb));
    let mut moov = bmff(b"uuid", &cu);
    moov.extend(bmff(b"trak", &[0; 32]));
    let mut prvw = vec![0, 0, 0, 0, 0, 1];
    prvw.extend_from_slice(&540u16.to_be_bytes());
    prvw.extend_from_slice(&360u16.to_be_bytes());
    prvw.extend_from_slice(&[0, 1]);
    prvw.extend_from_slice(&(pj.len() as u32).to_be_bytes());
    prvw.extend_from_slice(&pj);
    let preview_uuid = [0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88, 0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16];
    let mut pu = preview_uuid.to_vec();
    pu.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    pu.extend(bmff(b"PRVW", &prvw));
    let mut file = bmff(b"ftyp", b"crx \0\0\0\x01crx isom");
    file.extend(bmff(b"moov", &moov));
    file.extend(bmff(b"uuid", &pu));
    file.extend(bmff(b"mdat", &[0x77; 4096]));
    let path = write(dir.path(), "IMG_0042.CR3", &file);
    check(&path, RawKind::Cr3, 540, 360, 8, &preview);
    let s = read_summary(&path, Format::Raw(RawKind::Cr3)).unwrap();
    assert_eq!(s.model.as_deref(), Some("Canon EOS R5"));
    assert_eq!(s.date_time_original.as_deref(), Some("2025:03:14 15:09:26"));
    assert_eq!(s.serial.as_deref(), Some("012345678901"));
    assert_eq!(s.orientation, Some(8));

    // Without the PRVW box, the THMB thumbnail is what there is.
    let mut file = bmff(b"ftyp", b"crx \0\0\0\x01crx isom");
    file.extend(bmff(b"moov", &moov));
    let path = write(dir.path(), "IMG_0043.CR3", &file);
    let loc = locate_preview(&fs::read(&path).unwrap(), RawKind::Cr3).unwrap();
    assert_eq!((loc.width, loc.height), (160, 120));
}

#[test]
fn raw_without_preview_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TiffBuilder::new();
    let raw = b.blob(lossless_jpeg_stub(4000, 3000));
    let ifd0 = b.ifd(vec![(0x103, Val::Short(vec![7])), (0x111, Val::BlobOffset(raw)), (0x117, Val::BlobLen(raw))]);
    b.chain = vec![ifd0];
    let path = write(dir.path(), "bare.DNG", &b.build());
    let e = decode_path(&path, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::Raw(RawError::NoPreview { .. })), "{e:?}");
    assert!(e.to_string().contains("bare.DNG") && e.to_string().contains("preview"), "{e}");
    // A truncated container (cut inside the preview) neither panics nor shows garbage as a preview.
    let preview = smooth(300, 200, 9);
    let mut b = TiffBuilder::new();
    let p = b.blob(encode_jpeg(&preview, 90));
    let ifd0 = b.ifd(vec![(0x201, Val::BlobOffset(p)), (0x202, Val::BlobLen(p))]);
    b.chain = vec![ifd0];
    let full = b.build();
    for cut in [6, 20, 60, full.len() / 2] {
        let path = write(dir.path(), "cut.NEF", &full[..cut]);
        let _ = decode_path(&path, Size::Fit(64));
    }
}
