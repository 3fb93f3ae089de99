//! Decoding: EXIF orientation (all eight), reduced-size JPEG decoding against full decode + resize,
//! every supported format, and bad input one case per test (zero bytes, truncated, wrong extension,
//! unsupported format, a 30000x30000 header, an unreadable file).

mod libsupport;

use std::fs;
use std::path::{Path, PathBuf};

use keepers::library::decode::{self, DecodeError, Size, decode_path, load_rgb};
use keepers::library::formats::Format;
use libsupport::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Expected colours of the displayed corners (TL, TR, BL, BR) for each EXIF orientation, from the
/// EXIF 2.3 definition of where the stored 0th row and column go, for the stored quadrants of `QUAD`
/// (TL red, TR green, BL blue, BR white).
const CORNERS: [[usize; 4]; 8] = [
    [0, 1, 2, 3], // 1: as stored
    [1, 0, 3, 2], // 2: mirrored left-right
    [3, 2, 1, 0], // 3: rotated 180
    [2, 3, 0, 1], // 4: mirrored top-bottom
    [0, 2, 1, 3], // 5: transposed
    [2, 0, 3, 1], // 6: rotated 90 clockwise
    [3, 1, 2, 0], // 7: transversed
    [1, 3, 0, 2], // 8: rotated 90 counter-clockwise
];

#[test]
fn exif_orientation_all_eight() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (96u32, 48u32);
    let base = encode_jpeg(&quadrants(w, h), 95);
    for o in 1..=8u16 {
        let exif = exif_block(&ExifSpec {
            make: "Canon",
            model: "EOS R6",
            orientation: Some(o),
            date_time_original: None,
            subsec: None,
            serial: None,
        });
        let p = write(dir.path(), &format!("o{o}.jpg"), &with_exif(&base, &exif));
        for size in [Size::Full, Size::Fit(24)] {
            let d = decode_path(&p, size).unwrap();
            assert_eq!(d.orientation, o as u8);
            let (ew, eh) = if o >= 5 { (h, w) } else { (w, h) };
            assert_eq!((d.full_width, d.full_height), (ew, eh), "orientation {o}");
            let img = &d.image;
            let s = match size {
                Size::Full => 1.0,
                Size::Fit(f) => f as f32 / w.max(h) as f32,
            };
            assert_eq!(
                (img.width(), img.height()),
                ((ew as f32 * s).round() as u32, (eh as f32 * s).round() as u32),
                "orientation {o} {size:?}"
            );
            let (iw, ih) = img.dimensions();
            let r = (iw.min(ih) / 8).max(1);
            let corners = [(r, r), (iw - 1 - r, r), (r, ih - 1 - r), (iw - 1 - r, ih - 1 - r)];
            for (k, &(x, y)) in corners.iter().enumerate() {
                let want = QUAD[CORNERS[o as usize - 1][k]];
                let got = mean_at(img, x, y, r);
                assert!(close(got, want, 40.0), "orientation {o} {size:?} corner {k}: got {got:?}, want {want:?}");
            }
        }
        // load_rgb (what training reads) is the full-size upright image.
        assert_eq!(load_rgb(&p).unwrap().dimensions(), if o >= 5 { (h, w) } else { (w, h) });
    }
}

#[test]
fn reduced_decode_matches_full_decode_and_resize() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(1600, 1200, 7);
    let smooth = image::imageops::blur(&img, 3.0);
    let p = write(dir.path(), "big.jpg", &encode_jpeg(&smooth, 92));
    let full = decode_path(&p, Size::Full).unwrap();
    assert_eq!(full.image.dimensions(), (1600, 1200));
    for fit in [100u32, 256, 400, 900] {
        let d = decode_path(&p, Size::Fit(fit)).unwrap();
        let (tw, th) = (fit, (fit as f64 * 0.75).round() as u32);
        assert_eq!(d.image.dimensions(), (tw, th), "fit {fit}");
        assert_eq!((d.full_width, d.full_height), (1600, 1200));
        let reference = image::imageops::resize(&full.image, tw, th, image::imageops::FilterType::Triangle);
        let diff: f64 = d.image.as_raw().iter().zip(reference.as_raw()).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>()
            / reference.as_raw().len() as f64;
        assert!(diff < 6.0, "fit {fit}: mean abs difference {diff:.2} from full decode + resize");
    }
    // Never enlarged.
    assert_eq!(decode_path(&p, Size::Fit(5000)).unwrap().image.dimensions(), (1600, 1200));
}

#[test]
fn png_tiff_webp_decode() {
    let dir = tempfile::tempdir().unwrap();
    let img = quadrants(64, 40);
    let cases = [
        ("q.png", image::ImageFormat::Png, Format::Png),
        ("q.tif", image::ImageFormat::Tiff, Format::Tiff),
        ("q.webp", image::ImageFormat::WebP, Format::WebP),
    ];
    for (name, ifmt, fmt) in cases {
        let p = dir.path().join(name);
        img.save_with_format(&p, ifmt).unwrap();
        let d = decode_path(&p, Size::Full).unwrap();
        assert_eq!(d.format, fmt);
        assert_eq!(d.image, img, "{name}: lossless formats decode exactly");
        let t = decode_path(&p, Size::Fit(32)).unwrap();
        assert_eq!(t.image.dimensions(), (32, 20), "{name}");
    }
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.jpg", b"");
    let e = decode_path(&p, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::Empty { .. }), "{e:?}");
    assert!(e.to_string().contains("empty.jpg") && e.to_string().contains("empty"), "{e}");
}

#[test]
fn truncated_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::imageops::blur(&pattern(640, 480, 3), 2.0);
    let full = encode_jpeg(&img, 90);
    // Cut in the middle of the image data: the top decodes, the rest is filled, a warning says why.
    let p = write(dir.path(), "half.jpg", &full[..full.len() / 2]);
    let d = decode_path(&p, Size::Full).unwrap();
    assert_eq!(d.image.dimensions(), (640, 480));
    let w = d.warning.expect("a truncated file is reported");
    assert!(w.contains("Premature end"), "{w}");
    let top = mean_at(&d.image, 100, 20, 10);
    let want = mean_at(&img, 100, 20, 10);
    assert!(top.iter().zip(want).all(|(a, b)| (a - b).abs() < 12.0), "top rows decoded: {top:?} vs {want:?}");
    let thumb = decode_path(&p, Size::Fit(64)).unwrap();
    assert!(thumb.warning.is_some());
    // What scoring and the command line read: the damaged file is an error naming it.
    for size in [Size::Full, Size::Fit(64)] {
        let e = decode::decode_intact(&p, size).unwrap_err();
        assert!(matches!(e, DecodeError::Damaged { .. }), "{e:?}");
        assert!(e.to_string().contains("half.jpg") && e.to_string().contains("damaged or truncated"), "{e}");
    }
    // Stray bytes just before the end-of-image marker (some cameras and editors leave them):
    // every pixel is there and no warning is raised, so the photo is whole (not refused).
    let mut padded = full[..full.len() - 2].to_vec();
    padded.extend_from_slice(&[0x00, 0x11, 0x22, 0xFF, 0xD9]);
    let p = write(dir.path(), "padded.jpg", &padded);
    let d = decode::decode_intact(&p, Size::Full).unwrap();
    assert_eq!(d.warning, None);
    assert_eq!(d.image, decode_path(&write(dir.path(), "whole.jpg", &full), Size::Full).unwrap().image);
    // Cut inside the headers (an interrupted card copy): nothing to show, an error naming the file
    // and saying it is truncated, the same whatever the decoder read before on this thread.
    let good = write(dir.path(), "good.jpg", &full);
    for cut in [3, 100, 120, 300] {
        let p = write(dir.path(), &format!("header{cut}.jpg"), &full[..cut]);
        for _ in 0..2 {
            let e = decode_path(&p, Size::Full).unwrap_err();
            assert!(matches!(e, DecodeError::Damaged { .. }), "{cut} bytes: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("header{cut}.jpg")) && msg.contains("truncated JPEG"), "{msg}");
            decode_path(&good, Size::Full).unwrap();
        }
    }
}

/// Files of a supported format that are cut short or use a variant the decoder lacks say which,
/// with the file's name: not "cannot open" (the file opened) nor "not a supported format".
#[test]
fn damaged_and_unsupported_variants_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("whole.png");
    pattern(64, 48, 1).save_with_format(&q, image::ImageFormat::Png).unwrap();
    let png = fs::read(&q).unwrap();
    let p = write(dir.path(), "cut.png", &png[..png.len() / 2]);
    let e = decode_path(&p, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::Damaged { .. }), "{e:?}");
    assert!(e.to_string().contains("cut.png") && e.to_string().contains("ends before"), "{e}");

    // An 8x8 RGB TIFF whose strip claims compression 34712 (JPEG 2000), which the decoder lacks.
    let mut b = TiffBuilder::new();
    let strip = b.blob(vec![128; 8 * 8 * 3]);
    let ifd = b.ifd(vec![
        (256, Val::Short(vec![8])),
        (257, Val::Short(vec![8])),
        (258, Val::Short(vec![8, 8, 8])),
        (259, Val::Short(vec![34712])),
        (262, Val::Short(vec![2])),
        (273, Val::BlobOffset(strip)),
        (277, Val::Short(vec![3])),
        (278, Val::Short(vec![8])),
        (279, Val::BlobLen(strip)),
    ]);
    b.chain = vec![ifd];
    let p = write(dir.path(), "jp2k.tif", &b.build());
    let e = decode_path(&p, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::UnsupportedVariant { .. }), "{e:?}");
    assert!(e.to_string().contains("jp2k.tif") && e.to_string().contains("34712"), "{e}");

    // A PNG whose image-data checksum is wrong: the chunk is named plainly (not a debug dump).
    let mut bad = png.clone();
    let idat = bad.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(bad[idat - 4..idat].try_into().unwrap()) as usize;
    bad[idat + 4 + len + 3] ^= 0xFF;
    let p = write(dir.path(), "badcrc.png", &bad);
    let e = decode_path(&p, Size::Full).unwrap_err().to_string();
    assert!(e.contains("badcrc.png") && e.contains("CRC") && e.contains("IDAT chunk") && !e.contains("ChunkType"), "{e}");

    // A valid PNG wider than the limit is refused with its size.
    let q = dir.path().join("wide.png");
    image::RgbImage::new(decode::MAX_SIDE + 1000, 1).save_with_format(&q, image::ImageFormat::Png).unwrap();
    let e = decode_path(&q, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("{}x1 pixels", decode::MAX_SIDE + 1000)), "{e}");
}

#[test]
fn wrong_extension() {
    let dir = tempfile::tempdir().unwrap();
    // A JPEG named .png and a PNG named .jpg: the bytes decide.
    let p = write(dir.path(), "really_a_jpeg.png", &jpeg(120, 80));
    let d = decode_path(&p, Size::Full).unwrap();
    assert_eq!((d.format, d.image.dimensions()), (Format::Jpeg, (120, 80)));
    let q = dir.path().join("really_a_png.jpg");
    quadrants(30, 20).save_with_format(&q, image::ImageFormat::Png).unwrap();
    let d = decode_path(&q, Size::Full).unwrap();
    assert_eq!((d.format, d.image.dimensions()), (Format::Png, (30, 20)));
}

#[test]
fn unsupported_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "anim.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    let e = decode_path(&p, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::UnsupportedKind { format: "GIF", .. }), "{e:?}");
    assert!(e.to_string().contains("anim.gif") && e.to_string().contains("GIF"), "{e}");
    let p = write(dir.path(), "notes.jpg", b"shopping list: coffee, film, batteries\n");
    let e = decode_path(&p, Size::Full).unwrap_err();
    assert!(matches!(e, DecodeError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("notes.jpg"), "{e}");
}

#[test]
fn header_of_30000_by_30000() {
    let dir = tempfile::tempdir().unwrap();
    // A small JPEG whose SOF claims 30000x30000: refused from the header, before any allocation.
    let mut j = jpeg(16, 16);
    let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    j[sof + 5..sof + 7].copy_from_slice(&30000u16.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&30000u16.to_be_bytes());
    let p = write(dir.path(), "bomb.jpg", &j);
    for size in [Size::Full, Size::Fit(256)] {
        let e = decode_path(&p, size).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains("bomb.jpg") && e.to_string().contains("30000x30000"), "{e}");
    }
    // The same for a PNG header (IHDR width and height; the CRC is not what stops it).
    let q = dir.path().join("bomb.png");
    quadrants(8, 8).save_with_format(&q, image::ImageFormat::Png).unwrap();
    let mut b = fs::read(&q).unwrap();
    b[16..20].copy_from_slice(&30000u32.to_be_bytes());
    b[20..24].copy_from_slice(&30000u32.to_be_bytes());
    fs::write(&q, &b).unwrap();
    let e = decode_path(&q, Size::Full).unwrap_err();
    assert!(e.to_string().contains("bomb.png"), "{e}");
    assert!(matches!(e, DecodeError::TooLarge { .. } | DecodeError::Corrupt { .. }), "{e:?}");
    const { assert!(decode::MAX_SIDE < 30000) };
}

const UNREADABLE_ENV: &str = "KEEPERS_TEST_UNREADABLE_FILE";

fn check_unreadable(p: &Path) {
    let e = decode_path(p, Size::Full).unwrap_err();
    assert!(matches!(&e, DecodeError::Open { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied), "{e:?}");
    assert!(e.to_string().contains("locked.jpg"), "{e}");
    assert_eq!(e.path(), p);
}

#[test]
#[ignore = "helper: run by unreadable_file as an unprivileged user"]
fn unreadable_file_child() {
    let Some(p) = std::env::var_os(UNREADABLE_ENV) else { return };
    check_unreadable(Path::new(&p));
}

#[cfg(unix)]
#[test]
fn unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    open_up(dir.path());
    let p = write(dir.path(), "locked.jpg", &jpeg(32, 32));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    if !run_unprivileged_if_root("unreadable_file_child", &[(UNREADABLE_ENV, &p)]) {
        check_unreadable(&p);
    }
}
