//! XMP sidecars: round trips through realistic darktable, Lightroom and digiKam sidecars (byte-for-byte
//! outside the edited spans), embedded JPEG XMP (read, never rewritten), sidecar naming, crashes during a
//! write, unwritable folders and malformed sidecars.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keepers::library::xmp::{
    self, ColorLabel, Decision, DecisionSource, Pick, WriteStep, XmpError, read_decision, update_decision, update_decision_stopping_at,
    write_decision,
};
use quick_xml::Reader;
use quick_xml::events::Event;

mod libsupport;
use libsupport::{jpeg, minimal_cr2, minimal_dng};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xmp").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A folder with a fake photo (its bytes are checked at the end) and optionally a sidecar.
struct Album {
    _dir: tempfile::TempDir,
    root: PathBuf,
    photo: PathBuf,
    photo_bytes: Vec<u8>,
}

impl Album {
    fn new(photo_name: &str, photo_bytes: &[u8]) -> Album {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let photo = root.join(photo_name);
        fs::write(&photo, photo_bytes).unwrap();
        Album { _dir: dir, root, photo, photo_bytes: photo_bytes.to_vec() }
    }

    fn with_sidecar(photo_name: &str, sidecar_name: &str, text: &str) -> (Album, PathBuf) {
        let a = Album::new(photo_name, b"II*\0 not really a raw file, but its bytes must never change");
        let s = a.root.join(sidecar_name);
        fs::write(&s, text).unwrap();
        (a, s)
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn temp_files(&self) -> Vec<String> {
        self.files().into_iter().filter(|f| f.ends_with(".tmp")).collect()
    }

    fn assert_photo_untouched(&self) {
        assert_eq!(fs::read(&self.photo).unwrap(), self.photo_bytes, "the photo itself was modified");
    }
}

fn read(a: &Album) -> Decision {
    read_decision(&a.photo).unwrap().0
}

fn update(a: &Album, f: impl FnOnce(&mut Decision)) -> String {
    let out = update_decision(&a.photo, f).unwrap();
    assert!(out.changed);
    assert!(a.temp_files().is_empty(), "temporary files left: {:?}", a.files());
    fs::read_to_string(&out.path).unwrap()
}

/// Replaces the single occurrence of `from` (panics if it is missing or ambiguous).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur exactly once");
    text.replacen(from, to, 1)
}

/// The document as a list of items (element paths, attributes with values, non-blank texts), in order.
fn xml_items(text: &str) -> Vec<String> {
    let mut r = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut items = Vec::new();
    loop {
        match r.read_event().unwrap() {
            Event::Eof => break,
            ev @ (Event::Start(_) | Event::Empty(_)) => {
                let (e, empty) = match ev {
                    Event::Start(e) => (e, false),
                    Event::Empty(e) => (e, true),
                    _ => unreachable!(),
                };
                path.push(e.name().as_ref().to_owned());
                let p = path.join("/");
                items.push(format!("elem {p}"));
                for a in e.attributes() {
                    let a = a.unwrap();
                    items.push(format!("attr {p} @{}={}", a.key.as_ref(), a.value));
                }
                if empty {
                    path.pop();
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if !t.trim().is_empty() => items.push(format!("text {} {}", path.join("/"), t.trim())),
            Event::GeneralRef(g) => items.push(format!("ref {} {}", path.join("/"), &*g)),
            _ => {}
        }
    }
    items
}

/// Every element, attribute and text of `orig` is in `new` in the same order, and nothing else, except
/// items whose description mentions one of `changed` (the properties the write was allowed to edit).
fn assert_items_kept(orig: &str, new: &str, changed: &[&str]) {
    let keep = |items: Vec<String>| -> Vec<String> { items.into_iter().filter(|i| !changed.iter().any(|c| i.contains(c))).collect() };
    let (a, b) = (keep(xml_items(orig)), keep(xml_items(new)));
    assert_eq!(a.len(), b.len(), "element/attribute count changed");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
}

/// The bytes before the first and after the last difference are the original's, and the differing middle
/// is small: the edit was a splice, not a re-serialisation.
fn assert_spliced(orig: &str, new: &str, max_changed: usize) {
    let p = orig.bytes().zip(new.bytes()).take_while(|(a, b)| a == b).count();
    let s = orig.bytes().rev().zip(new.bytes().rev()).take_while(|(a, b)| a == b).count().min(orig.len().min(new.len()) - p);
    assert_eq!(&orig[..p], &new[..p]);
    assert_eq!(&orig[orig.len() - s..], &new[new.len() - s..]);
    let changed = (orig.len() - p - s).max(new.len() - p - s);
    assert!(changed <= max_changed, "{changed} bytes changed in the middle (allowed {max_changed})");
}

const DT_CHANGED: &[&str] = &["xmp:Rating", "xmp:Label", "digiKam:PickLabel", "xmlns:digiKam", "darktable:colorlabels"];

// ---------------------------------------------------------------------------------------------

#[test]
fn darktable_sidecar_round_trip() {
    let orig = fixture("darktable.CR2.xmp");
    let (a, sidecar) = Album::with_sidecar("IMG_2041.CR2", "IMG_2041.CR2.xmp", &orig);

    let (d, src) = read_decision(&a.photo).unwrap();
    assert_eq!(src, DecisionSource::Sidecar(sidecar.clone()));
    assert_eq!(d, Decision { rating: Some(2), label: Some(ColorLabel::Green), pick: None });

    // Stars: only the value of xmp:Rating changes.
    let t1 = update(&a, |d| d.set_rating(4));
    assert_eq!(t1, replace_once(&orig, r#"xmp:Rating="2""#, r#"xmp:Rating="4""#));
    assert_spliced(&orig, &t1, 1);
    assert_eq!(read(&a), Decision { rating: Some(4), label: Some(ColorLabel::Green), pick: None });

    // Label: darktable's own colour labels are rewritten, no xmp:Label is added next to them.
    let t2 = update(&a, |d| d.set_label(Some(ColorLabel::Red)));
    let dt_green = "<darktable:colorlabels>\n    <rdf:Seq>\n     <rdf:li>2</rdf:li>";
    let dt_red = "<darktable:colorlabels>\n    <rdf:Seq>\n     <rdf:li>0</rdf:li>";
    assert_eq!(t2, replace_once(&t1, dt_green, dt_red));
    assert!(!t2.contains("xmp:Label"));
    assert_eq!(read(&a), Decision { rating: Some(4), label: Some(ColorLabel::Red), pick: None });

    // Reject: rating -1 and digiKam's PickLabel 1, with the namespace declared after the others.
    let t3 = update(&a, |d| d.mark_rejected());
    let mut want = replace_once(&t2, r#"xmp:Rating="4""#, r#"xmp:Rating="-1""#);
    want = replace_once(
        &want,
        "    xmlns:darktable=\"http://darktable.sf.net/\"\n",
        "    xmlns:darktable=\"http://darktable.sf.net/\"\n    xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\"\n",
    );
    want = replace_once(
        &want,
        "darktable:history_current_hash=\"f4c2e9a0b16d5384ac7f02e91db63a08\">",
        "darktable:history_current_hash=\"f4c2e9a0b16d5384ac7f02e91db63a08\"\n   digiKam:PickLabel=\"1\">",
    );
    assert_eq!(t3, want);
    let d = read(&a);
    assert_eq!(d, Decision { rating: Some(-1), label: Some(ColorLabel::Red), pick: Some(Pick::Rejected) });
    assert!(d.is_rejected());

    // Unflag with the stars the database remembers: back to t2 (the namespace declaration stays).
    let t4 = update(&a, |d| d.unflag(Some(4)));
    let t2_with_ns = replace_once(
        &t2,
        "    xmlns:darktable=\"http://darktable.sf.net/\"\n",
        "    xmlns:darktable=\"http://darktable.sf.net/\"\n    xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\"\n",
    );
    assert_eq!(t4, t2_with_ns);
    assert_eq!(read(&a), Decision { rating: Some(4), label: Some(ColorLabel::Red), pick: None });

    // No label: an empty darktable sequence.
    let t5 = update(&a, |d| d.set_label(None));
    assert_eq!(
        t5,
        replace_once(
            &t4,
            "<rdf:Seq>\n     <rdf:li>0</rdf:li>\n    </rdf:Seq>\n   </darktable:colorlabels>",
            "<rdf:Seq/>\n   </darktable:colorlabels>"
        )
    );
    assert_eq!(read(&a).label, None);
    // A label again: the sequence is rebuilt with the file's own indentation.
    let t6 = update(&a, |d| d.set_label(Some(ColorLabel::Blue)));
    assert_eq!(t6, replace_once(&t4, "<rdf:li>0</rdf:li>", "<rdf:li>3</rdf:li>"));
    update(&a, |d| d.set_label(None));

    // Every element, attribute, keyword and history entry of the original is still there.
    for t in [&t1, &t2, &t3, &t4, &t5] {
        assert_items_kept(&orig, t, DT_CHANGED);
    }
    let items = xml_items(&t5);
    assert_eq!(items.iter().filter(|i| i.starts_with("elem") && i.ends_with("darktable:history/rdf:Seq/rdf:li")).count(), 5);
    assert!(
        items.iter().any(|i| i.starts_with("ref ") && i.ends_with("dc:subject/rdf:Bag/rdf:li amp")),
        "the escaped keyword is kept escaped"
    );
    assert!(t5.contains("<rdf:li>waterfall &amp; rainbow</rdf:li>") && t5.contains("places|Iceland|Skógafoss"));

    // Writing what the file already says touches nothing.
    let before = fs::metadata(&sidecar).unwrap().modified().unwrap();
    let out = update_decision(&a.photo, |d| d.set_label(None)).unwrap();
    assert!(!out.changed);
    assert_eq!(fs::metadata(&sidecar).unwrap().modified().unwrap(), before);
    assert_eq!(a.files(), ["IMG_2041.CR2", "IMG_2041.CR2.xmp"]);
    a.assert_photo_untouched();
}

#[test]
fn lightroom_sidecar_round_trip() {
    let orig = fixture("lightroom.xmp");
    // Lightroom names the sidecar of a RAW after its stem.
    let (a, sidecar) = Album::with_sidecar("DSC_0412.NEF", "DSC_0412.xmp", &orig);
    let (d, src) = read_decision(&a.photo).unwrap();
    assert_eq!(src, DecisionSource::Sidecar(sidecar.clone()));
    assert_eq!(d, Decision { rating: None, label: Some(ColorLabel::Yellow), pick: None });

    // No rating yet: the attribute is added after the last one, on its own line like the others.
    let t1 = update(&a, |d| d.set_rating(3));
    assert_eq!(t1, replace_once(&orig, "   crs:HasSettings=\"True\">", "   crs:HasSettings=\"True\"\n   xmp:Rating=\"3\">"));
    assert_eq!(read(&a), Decision { rating: Some(3), label: Some(ColorLabel::Yellow), pick: None });
    // Merged into Lightroom's file: no second sidecar.
    assert_eq!(a.files(), ["DSC_0412.NEF", "DSC_0412.xmp"]);

    let t2 = update(&a, |d| d.set_label(Some(ColorLabel::Red)));
    assert_eq!(t2, replace_once(&t1, r#"xmp:Label="Yellow""#, r#"xmp:Label="Red""#));
    assert_spliced(&t1, &t2, 6);
    assert_eq!(read(&a).label, Some(ColorLabel::Red));

    let t3 = update(&a, |d| d.mark_rejected());
    let mut want = replace_once(&t2, "xmp:Rating=\"3\">", "xmp:Rating=\"-1\"\n   digiKam:PickLabel=\"1\">");
    want = replace_once(
        &want,
        "xmlns:crs=\"http://ns.adobe.com/camera-raw-settings/1.0/\"\n",
        "xmlns:crs=\"http://ns.adobe.com/camera-raw-settings/1.0/\"\n    xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\"\n",
    );
    assert_eq!(t3, want);
    assert_eq!(read(&a), Decision { rating: Some(-1), label: Some(ColorLabel::Red), pick: Some(Pick::Rejected) });

    let t4 = update(&a, |d| d.unflag(Some(3)));
    assert_eq!(
        t4,
        replace_once(
            &t2,
            "xmlns:crs=\"http://ns.adobe.com/camera-raw-settings/1.0/\"\n",
            "xmlns:crs=\"http://ns.adobe.com/camera-raw-settings/1.0/\"\n    xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\"\n",
        )
    );
    assert_eq!(read(&a), Decision { rating: Some(3), label: Some(ColorLabel::Red), pick: None });

    // Unflag without known stars: 0 stars.
    update(&a, |d| d.mark_rejected());
    update(&a, |d| d.unflag(None));
    assert_eq!(read(&a), Decision { rating: Some(0), label: Some(ColorLabel::Red), pick: None });

    // Removing the label removes only that attribute line.
    let t5 = update(&a, |d| d.set_label(None));
    assert!(!t5.contains("xmp:Label"));
    assert_items_kept(&orig, &t5, DT_CHANGED);

    for t in [&t1, &t2, &t3, &t4, &t5] {
        assert_items_kept(&orig, t, DT_CHANGED);
        // Develop settings, tone curves, keywords and the nested crs:Look description, byte for byte.
        for keep in [
            "   crs:Exposure2012=\"+0.35\"\n",
            "   <crs:ToneCurvePV2012>\n    <rdf:Seq>\n     <rdf:li>0, 0</rdf:li>\n     <rdf:li>64, 58</rdf:li>",
            "     <rdf:li>Places|Portugal|Lisboa|Alfama</rdf:li>\n",
            "     <rdf:li>tram</rdf:li>\n",
            "   photoshop:City=\"Lisboa\"\n",
        ] {
            assert!(t.contains(keep), "{keep:?} lost");
        }
        let look = &orig[orig.find("   <crs:Look>").unwrap()..];
        assert!(t.ends_with(look), "the crs:Look block and everything after it must be untouched");
    }
    a.assert_photo_untouched();
}

#[test]
fn element_form_properties_in_several_descriptions() {
    let orig = fixture("digikam.JPG.xmp");
    let (a, _) = Album::with_sidecar("P1000123.JPG", "P1000123.JPG.xmp", &orig);
    assert_eq!(read(&a), Decision { rating: Some(4), label: Some(ColorLabel::Blue), pick: Some(Pick::Picked) });

    let t1 = update(&a, |d| d.mark_rejected());
    let want = replace_once(&orig, "<xmp:Rating>4</xmp:Rating>", "<xmp:Rating>-1</xmp:Rating>");
    assert_eq!(t1, replace_once(&want, "<digiKam:PickLabel>3</digiKam:PickLabel>", "<digiKam:PickLabel>1</digiKam:PickLabel>"));

    let t2 = update(&a, |d| d.set_label(None));
    assert_eq!(t2, replace_once(&t1, "\n   <xmp:Label>Blue</xmp:Label>", ""));

    let t3 = update(&a, |d| d.unflag(None));
    let want = replace_once(&t2, "<xmp:Rating>-1</xmp:Rating>", "<xmp:Rating>0</xmp:Rating>");
    assert_eq!(t3, replace_once(&want, "\n   <digiKam:PickLabel>1</digiKam:PickLabel>", ""));
    assert_eq!(read(&a), Decision { rating: Some(0), label: None, pick: None });

    // A new pick flag goes to the description that declares digiKam's namespace; a new label next to
    // the existing xmp properties.
    let t4 = update(&a, |d| {
        d.mark_picked();
        d.set_label(Some(ColorLabel::Purple));
    });
    let want = replace_once(
        &t3,
        "xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\">",
        "xmlns:digiKam=\"http://www.digikam.org/ns/1.0/\"\n    digiKam:PickLabel=\"3\">",
    );
    assert_eq!(
        t4,
        replace_once(
            &want,
            "xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">",
            "xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n    xmp:Label=\"Purple\">"
        )
    );
    assert_eq!(read(&a), Decision { rating: Some(0), label: Some(ColorLabel::Purple), pick: Some(Pick::Picked) });
    for t in [&t1, &t2, &t3, &t4] {
        assert_items_kept(&orig, t, DT_CHANGED);
        assert!(t.starts_with("<?xpacket begin=\"\u{feff}\"") && t.ends_with("<?xpacket end=\"w\"?>\n"));
    }
    a.assert_photo_untouched();
}

#[test]
fn new_sidecar_is_a_minimal_valid_packet() {
    let a = Album::new("IMG_0001.CR3", b"....ftypcrx not a real CR3");
    assert_eq!(read_decision(&a.photo).unwrap(), (Decision::default(), DecisionSource::None));

    // Nothing to say: no file.
    let out = write_decision(&a.photo, &Decision::default()).unwrap();
    assert!(!out.changed);
    assert_eq!(a.files(), ["IMG_0001.CR3"]);

    let out = update_decision(&a.photo, |d| {
        d.set_rating(5);
        d.set_label(Some(ColorLabel::Purple));
        d.mark_picked();
    })
    .unwrap();
    assert!(out.changed);
    assert_eq!(out.path, a.root.join("IMG_0001.CR3.xmp"));
    assert_eq!(a.files(), ["IMG_0001.CR3", "IMG_0001.CR3.xmp"]);
    let text = fs::read_to_string(&out.path).unwrap();
    let items = xml_items(&text);
    assert_eq!(items[0], "elem x:xmpmeta");
    assert!(items.contains(&"elem x:xmpmeta/rdf:RDF/rdf:Description".to_owned()));
    for a in [
        "@xmlns:rdf=http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "@xmlns:xmp=http://ns.adobe.com/xap/1.0/",
        "@xmlns:digiKam=http://www.digikam.org/ns/1.0/",
        "@xmp:Rating=5",
        "@xmp:Label=Purple",
        "@digiKam:PickLabel=3",
    ] {
        assert!(items.iter().any(|i| i.ends_with(a)), "{a} missing in\n{text}");
    }
    let want = Decision { rating: Some(5), label: Some(ColorLabel::Purple), pick: Some(Pick::Picked) };
    assert_eq!(out.decision, want);
    assert_eq!(read_decision(&a.photo).unwrap(), (want, DecisionSource::Sidecar(out.path.clone())));

    // write_decision sets the whole decision.
    write_decision(&a.photo, &Decision { rating: Some(1), label: None, pick: None }).unwrap();
    assert_eq!(read(&a), Decision { rating: Some(1), label: None, pick: None });
    a.assert_photo_untouched();
}

#[test]
fn sidecar_names() {
    let p = Path::new("/photos/2024/IMG_1.CR2");
    let c: Vec<String> = xmp::sidecar_candidates(p).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(c, ["/photos/2024/IMG_1.CR2.xmp", "/photos/2024/IMG_1.CR2.XMP", "/photos/2024/IMG_1.xmp", "/photos/2024/IMG_1.XMP"]);

    // Only Lightroom's <stem>.xmp: read and merged into, no second sidecar.
    let (a, lr) = Album::with_sidecar("IMG_1.CR2", "IMG_1.xmp", &fixture("lightroom.xmp"));
    assert_eq!(xmp::find_sidecar(&a.photo), Some(lr.clone()));
    assert_eq!(update_decision(&a.photo, |d| d.set_rating(1)).unwrap().path, lr);
    assert_eq!(a.files(), ["IMG_1.CR2", "IMG_1.xmp"]);

    // Both: <name>.<ext>.xmp wins, Lightroom's is left alone.
    let lr_before = fs::read(&lr).unwrap();
    let dt = a.root.join("IMG_1.CR2.xmp");
    fs::write(&dt, fixture("darktable.CR2.xmp")).unwrap();
    assert_eq!(read(&a).rating, Some(2));
    assert_eq!(update_decision(&a.photo, |d| d.set_rating(5)).unwrap().path, dt);
    assert_eq!(fs::read(&lr).unwrap(), lr_before);
    assert_eq!(read(&a).rating, Some(5));

    // Upper-case extension (Windows tools).
    let (b, up) = Album::with_sidecar("DSCF7.RAF", "DSCF7.RAF.XMP", &fixture("digikam.JPG.xmp"));
    assert_eq!(read_decision(&b.photo).unwrap().1, DecisionSource::Sidecar(up));
}

/// A Lightroom-style `<stem>.xmp` belongs to one album item when other files share its stem: the
/// files are classified as the album scan classifies them (format from the bytes, RAW+JPEG
/// pairing), and the sidecar is the only item's, else the only non-DNG RAW's, else nobody's; the
/// others read and write only `<name>.<ext>.xmp`, so that a decision on one never changes another
/// (a reject on `IMG_1.jpg` must not reject `IMG_1.png` in Lightroom). Adding a file later is seen.
#[test]
fn a_stem_sidecar_belongs_to_one_album_item() {
    let lr_text = fixture("lightroom.xmp");
    let lr_label = xmp::parse_decision(&lr_text).unwrap().label;
    assert_eq!(lr_label, Some(ColorLabel::Yellow), "the fixture's decision");
    let png_bytes = {
        let mut v = Vec::new();
        image::RgbImage::new(8, 8).write_to(&mut Cursor::new(&mut v), image::ImageFormat::Png).unwrap();
        v
    };
    let folder = |photo: (&str, Vec<u8>), others: &[(&str, Vec<u8>)]| {
        let a = Album::new(photo.0, &photo.1);
        for (name, bytes) in others {
            fs::write(a.root.join(name), bytes).unwrap();
        }
        let stem = Path::new(photo.0).file_stem().unwrap().to_string_lossy().into_owned();
        let lr = a.root.join(format!("{stem}.xmp"));
        fs::write(&lr, &lr_text).unwrap();
        (a, lr)
    };

    // Two photos, no RAW: the stem sidecar is nobody's; each gets its own.
    let (a, lr) = folder(("IMG_1.jpg", jpeg(24, 16)), &[("IMG_1.png", png_bytes.clone())]);
    let png = a.root.join("IMG_1.png");
    assert_eq!(xmp::find_sidecar(&a.photo), None);
    assert_eq!(read_decision(&a.photo).unwrap().0, Decision::default());
    assert_eq!(update_decision(&a.photo, |d| d.pick = Some(Pick::Rejected)).unwrap().path, a.root.join("IMG_1.jpg.xmp"));
    assert_eq!(fs::read_to_string(&lr).unwrap(), lr_text, "the shared sidecar is left alone");
    assert_eq!(read_decision(&png).unwrap().0, Decision::default(), "the PNG is not rejected");
    a.assert_photo_untouched();

    // A CR2 with a DNG and a JPEG of the same stem: no pair (two RAWs); the CR2 owns the stem sidecar.
    let (b, lr) = folder(("IMG_2.CR2", minimal_cr2()), &[("IMG_2.DNG", minimal_dng()), ("IMG_2.JPG", jpeg(24, 16))]);
    assert_eq!(xmp::find_sidecar(&b.photo), Some(lr.clone()));
    assert_eq!(read_decision(&b.photo).unwrap().0.label, lr_label);
    for other in ["IMG_2.DNG", "IMG_2.JPG"] {
        let p = b.root.join(other);
        assert_eq!(xmp::find_sidecar(&p), None, "{other}");
        assert_eq!(update_decision(&p, |d| d.set_rating(1)).unwrap().path, b.root.join(format!("{other}.xmp")));
    }
    assert_eq!(fs::read_to_string(&lr).unwrap(), lr_text);

    // The pair (one RAW, one JPEG) shares it; a PNG beside them does not. The RAW is told by its
    // bytes: Panasonic's `.RAW` extension is not a RAW extension, but the album pairs it.
    let (c, lr) = folder(("IMG_3.RAW", minimal_cr2()), &[("IMG_3.JPG", jpeg(24, 16)), ("IMG_3.png", png_bytes.clone())]);
    assert_eq!(xmp::find_sidecar(&c.photo), Some(lr.clone()));
    assert_eq!(xmp::find_sidecar(&c.root.join("IMG_3.JPG")), Some(lr.clone()));
    assert_eq!(xmp::find_sidecar(&c.root.join("IMG_3.png")), None);

    // An exiftool backup of the CR2 makes two RAW items: nobody owns the stem sidecar.
    let (d, _) = folder(("IMG_4.CR2", minimal_cr2()), &[("IMG_4.CR2_original", minimal_cr2()), ("IMG_4.JPG", jpeg(24, 16))]);
    assert_eq!(xmp::find_sidecar(&d.photo), None);
    assert_eq!(xmp::find_sidecar(&d.root.join("IMG_4.JPG")), None);

    // A phone's HEIC beside its JPEG: Keepers cannot read the HEIC, whose sidecar it may be.
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    let (e, _) = folder(("IMG_5.JPG", jpeg(24, 16)), &[("IMG_5.HEIC", heic)]);
    assert_eq!(xmp::find_sidecar(&e.photo), None);

    // Alone, a photo owns its stem sidecar (a folder of that name beside it changes nothing); once a
    // second photo of that stem appears, it no longer does.
    let (f, lr) = folder(("IMG_6.jpg", jpeg(24, 16)), &[]);
    fs::create_dir(f.root.join("IMG_6")).unwrap();
    assert_eq!(xmp::find_sidecar(&f.photo), Some(lr.clone()));
    fs::write(f.root.join("IMG_6.tif"), &png_bytes).unwrap();
    assert_eq!(xmp::find_sidecar(&f.photo), None);
}

/// A small real JPEG with an APP1 XMP segment right after SOI.
fn jpeg_with_xmp(packet: Option<&str>) -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([(x * 10) as u8, (y * 15) as u8, 128]));
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
    let Some(packet) = packet else { return jpeg };
    let mut payload = xmp::JPEG_XMP_HEADER.to_vec();
    payload.extend_from_slice(packet.as_bytes());
    let len = u16::try_from(payload.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

const EMBEDDED: &str = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"Adobe XMP Core 9.1-c002\">\n\
 <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n\
  <rdf:Description rdf:about=\"\"\n\
    xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n\
    xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n\
   xmp:Rating=\"3\"\n\
   xmp:Label=\"Purple\">\n\
   <dc:subject><rdf:Bag><rdf:li>harbour</rdf:li></rdf:Bag></dc:subject>\n\
  </rdf:Description>\n\
 </rdf:RDF>\n\
</x:xmpmeta>\n\
                                                                \n\
<?xpacket end=\"w\"?>";

#[test]
fn jpeg_embedded_xmp_is_read_and_never_rewritten() {
    let bytes = jpeg_with_xmp(Some(EMBEDDED));
    let a = Album::new("harbour.jpg", &bytes);
    assert!(image::load_from_memory(&bytes).is_ok(), "the test JPEG must be a real JPEG");
    assert_eq!(xmp::read_embedded_xmp(&a.photo).unwrap().as_deref(), Some(EMBEDDED));
    let (d, src) = read_decision(&a.photo).unwrap();
    assert_eq!(src, DecisionSource::Embedded);
    assert_eq!(d, Decision { rating: Some(3), label: Some(ColorLabel::Purple), pick: None });

    // A decision goes to a new sidecar that starts from the embedded one; the JPEG is untouched.
    let mtime = fs::metadata(&a.photo).unwrap().modified().unwrap();
    let out = update_decision(&a.photo, |d| d.set_label(Some(ColorLabel::Red))).unwrap();
    assert_eq!(out.path, a.root.join("harbour.jpg.xmp"));
    a.assert_photo_untouched();
    assert_eq!(fs::metadata(&a.photo).unwrap().modified().unwrap(), mtime);
    let (d, src) = read_decision(&a.photo).unwrap();
    assert_eq!(src, DecisionSource::Sidecar(out.path.clone()));
    assert_eq!(d, Decision { rating: Some(3), label: Some(ColorLabel::Red), pick: None });

    update_decision(&a.photo, |d| d.mark_rejected()).unwrap();
    a.assert_photo_untouched();
    assert!(read(&a).is_rejected());
    assert_eq!(
        xmp::read_embedded_decision(&a.photo).unwrap(),
        Some(Decision { rating: Some(3), label: Some(ColorLabel::Purple), pick: None })
    );
    assert_eq!(a.files(), ["harbour.jpg", "harbour.jpg.xmp"]);
}

#[test]
fn jpeg_without_xmp_and_other_files() {
    let a = Album::new("plain.jpg", &jpeg_with_xmp(None));
    assert_eq!(xmp::read_embedded_xmp(&a.photo).unwrap(), None);
    assert_eq!(read_decision(&a.photo).unwrap(), (Decision::default(), DecisionSource::None));
    let png = a.root.join("x.png");
    fs::write(&png, b"\x89PNG\r\n\x1a\n").unwrap();
    assert_eq!(xmp::read_embedded_xmp(&png).unwrap(), None);
    let empty = a.root.join("empty.jpg");
    fs::write(&empty, b"").unwrap();
    assert_eq!(xmp::read_embedded_xmp(&empty).unwrap(), None);

    // An XMP segment cut short by the end of the file: an error naming the JPEG.
    let full = jpeg_with_xmp(Some(EMBEDDED));
    let cut = a.root.join("cut.jpg");
    fs::write(&cut, &full[..200]).unwrap();
    let e = xmp::read_embedded_xmp(&cut).unwrap_err();
    assert!(matches!(e, XmpError::Malformed { .. }) && e.to_string().contains(&*cut.to_string_lossy()), "{e}");
    // A broken embedded packet does not stop a decision from being saved in a sidecar.
    let broken = a.root.join("broken.jpg");
    let bytes = jpeg_with_xmp(Some("<x:xmpmeta><rdf:RDF"));
    fs::write(&broken, &bytes).unwrap();
    assert!(matches!(read_decision(&broken), Err(XmpError::Malformed { .. })));
    update_decision(&broken, |d| d.set_rating(2)).unwrap();
    assert_eq!(read_decision(&broken).unwrap().0.rating, Some(2));
    assert_eq!(fs::read(&broken).unwrap(), bytes);
}

#[test]
fn reading_variants() {
    let p = |s: &str| xmp::parse_decision(s).unwrap();
    let wrap = |body: &str| {
        format!(
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">{body}</rdf:RDF></x:xmpmeta>"
        )
    };
    // Real-valued rating, case-insensitive label, pending pick label, another prefix for xmp.
    let d = p(&wrap(
        r#"<rdf:Description rdf:about="" xmlns:xap="http://ns.adobe.com/xap/1.0/" xmlns:digiKam="http://www.digikam.org/ns/1.0/" xap:Rating="3.0" xap:Label="red" digiKam:PickLabel="2"/>"#,
    ));
    assert_eq!(d, Decision { rating: Some(3), label: Some(ColorLabel::Red), pick: Some(Pick::Unflagged) });
    // xmp:Label wins over darktable's labels, as in darktable; entities and CDATA in element values.
    let d = p(&wrap(
        r#"<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:darktable="http://darktable.sf.net/"><xmp:Label><![CDATA[Blue]]></xmp:Label><xmp:Rating>&#53;</xmp:Rating><darktable:colorlabels><rdf:Seq><rdf:li>0</rdf:li></rdf:Seq></darktable:colorlabels></rdf:Description>"#,
    ));
    assert_eq!(d, Decision { rating: Some(5), label: Some(ColorLabel::Blue), pick: None });
    // Lightroom-style reject (rating only); unknown label names and out-of-range values read as unknown.
    let d = p(&wrap(r#"<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="-1" xmp:Label="Rot"/>"#));
    assert_eq!(d, Decision { rating: Some(-1), label: None, pick: None });
    assert!(d.is_rejected());
    assert_eq!(p(&wrap(r#"<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="42"/>"#)).rating, None);
    // A nested description (a struct value) is not the photo's rating.
    let d = p(&wrap(
        r#"<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:a="urn:a"><a:Struct><rdf:Description xmp:Rating="5"/></a:Struct></rdf:Description>"#,
    ));
    assert_eq!(d.rating, None);

    // Writing reuses the file's own prefix for the xmp namespace.
    let text = wrap(r#"<rdf:Description rdf:about="" xmlns:xap="http://ns.adobe.com/xap/1.0/" xap:Rating="1"/>"#);
    let (a, s) = Album::with_sidecar("a.dng", "a.dng.xmp", &text);
    update(&a, |d| d.set_label(Some(ColorLabel::Green)));
    assert_eq!(fs::read_to_string(&s).unwrap(), text.replace(r#"xap:Rating="1""#, r#"xap:Rating="1" xap:Label="Green""#));
    // An rdf:RDF with no description gets one.
    let text = wrap("");
    let (b, s) = Album::with_sidecar("b.dng", "b.dng.xmp", &text);
    update(&b, |d| d.set_rating(2));
    let t = fs::read_to_string(&s).unwrap();
    assert!(t.contains(r#"<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2"/>"#), "{t}");
    assert_eq!(read(&b).rating, Some(2));
}

#[test]
fn decision_rules() {
    let mut d = Decision { rating: Some(3), label: None, pick: None };
    d.mark_rejected();
    assert_eq!((d.rating, d.pick), (Some(-1), Some(Pick::Rejected)));
    d.unflag(Some(3));
    assert_eq!((d.rating, d.pick), (Some(3), Some(Pick::Unflagged)));
    d.mark_rejected();
    d.set_rating(2); // stars on a rejected photo un-reject it
    assert_eq!((d.rating, d.pick), (Some(2), Some(Pick::Unflagged)));
    d.mark_picked();
    assert_eq!((d.rating, d.pick, d.stars()), (Some(2), Some(Pick::Picked), 2));
    d.set_rating(9);
    assert_eq!(d.rating, Some(5));
    for l in ColorLabel::ALL {
        assert_eq!(ColorLabel::from_xmp_name(l.xmp_name()), Some(l));
        assert_eq!(ColorLabel::from_darktable_index(l.darktable_index() as i64), Some(l));
    }
}

// ---------------------------------------------------------------------------------------------
// Crashes during a write

#[test]
fn kill_at_each_write_step_leaves_old_or_new_file() {
    let steps = [WriteStep::TempCreated, WriteStep::TempHalfWritten, WriteStep::TempSynced, WriteStep::Renamed];
    for existing in [true, false] {
        for step in steps {
            let orig = fixture("darktable.CR2.xmp");
            let (a, sidecar) = if existing {
                Album::with_sidecar("IMG_2041.CR2", "IMG_2041.CR2.xmp", &orig)
            } else {
                let a = Album::new("IMG_2041.CR2", b"raw");
                let s = a.root.join("IMG_2041.CR2.xmp");
                (a, s)
            };
            let before = read(&a);
            update_decision_stopping_at(&a.photo, |d| d.set_rating(5), step).unwrap();
            // After the "crash": the sidecar is the old file (or still absent) before the rename, the
            // complete new one after it; never a partial file.
            if step == WriteStep::Renamed {
                let t = fs::read_to_string(&sidecar).unwrap();
                assert_eq!(xmp::parse_decision(&t).unwrap().rating, Some(5));
                if existing {
                    assert_eq!(t, replace_once(&orig, r#"xmp:Rating="2""#, r#"xmp:Rating="5""#));
                }
                assert!(a.temp_files().is_empty());
            } else {
                if existing {
                    assert_eq!(fs::read_to_string(&sidecar).unwrap(), orig, "{step:?}");
                } else {
                    assert!(!sidecar.exists(), "{step:?}");
                }
                assert_eq!(a.temp_files().len(), 1, "{step:?}: {:?}", a.files());
                // The stray temporary file is never read.
                assert_eq!(read(&a), before, "{step:?}");
            }
            // The next write succeeds and cleans up.
            let out = update_decision(&a.photo, |d| d.set_label(Some(ColorLabel::Blue))).unwrap();
            assert_eq!(out.path, sidecar);
            assert!(a.temp_files().is_empty(), "{step:?}: {:?}", a.files());
            let d = read(&a);
            assert_eq!(d.label, Some(ColorLabel::Blue));
            assert_eq!(d.rating, if step == WriteStep::Renamed { Some(5) } else { before.rating });
            if existing {
                assert_items_kept(&orig, &fs::read_to_string(&sidecar).unwrap(), DT_CHANGED);
            }
            a.assert_photo_untouched();
        }
    }
}

const CHILD_ENV: &str = "KEEPERS_XMP_CHILD_PHOTO";

/// Run by `kill_during_write_in_a_real_process` in a child process: writes the sidecar until killed.
#[test]
#[ignore = "helper: runs only as the child of kill_during_write_in_a_real_process"]
fn child_writes_sidecar_until_killed() {
    let Some(photo) = std::env::var_os(CHILD_ENV) else { return };
    let photo = PathBuf::from(photo);
    for i in 0u32.. {
        update_decision(&photo, |d| {
            d.set_rating((i % 5 + 1) as u8);
            d.set_label(if i % 2 == 0 { Some(ColorLabel::Purple) } else { None });
        })
        .unwrap();
    }
}

#[test]
fn kill_during_write_in_a_real_process() {
    let orig = fixture("darktable.CR2.xmp");
    let (a, sidecar) = Album::with_sidecar("IMG_2041.CR2", "IMG_2041.CR2.xmp", &orig);
    let exe = std::env::current_exe().unwrap();
    let mut kills = 0;
    for round in 0..12u64 {
        let before = fs::read(&sidecar).unwrap();
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writes_sidecar_until_killed", "--ignored", "--test-threads=1"])
            .env(CHILD_ENV, &a.photo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child is writing, then kill it (SIGKILL) at a varying moment.
        let start = Instant::now();
        while fs::read(&sidecar).unwrap() == before && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(300 + round * 1700));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        // Whatever moment it died at, the sidecar is one complete version.
        let t = fs::read_to_string(&sidecar).unwrap();
        let d = xmp::parse_decision(&t).unwrap_or_else(|e| panic!("round {round}: sidecar broken by a kill: {e}\n{t}"));
        assert!(matches!(d.rating, Some(1..=5)), "round {round}: {d:?}");
        assert_items_kept(&orig, &t, DT_CHANGED);
        assert!(a.temp_files().len() <= 1, "{:?}", a.files());
    }
    assert_eq!(kills, 12);
    assert_ne!(fs::read_to_string(&sidecar).unwrap(), orig, "the child never wrote");
    update(&a, |d| d.set_rating(0)); // the child writes 1..=5 stars
    assert!(a.temp_files().is_empty());
    a.assert_photo_untouched();
}

// ---------------------------------------------------------------------------------------------
// Unwritable places and malformed sidecars

#[cfg(unix)]
#[test]
fn read_only_folder_is_an_error_naming_the_sidecar() {
    use std::os::unix::fs::PermissionsExt;
    let orig = fixture("darktable.CR2.xmp");
    let (a, sidecar) = Album::with_sidecar("IMG_2041.CR2", "IMG_2041.CR2.xmp", &orig);
    fs::set_permissions(&a.root, fs::Permissions::from_mode(0o555)).unwrap();
    // root writes into 0o555 folders anyway; find out.
    let probe = a.root.join("probe");
    let can_still_write = fs::write(&probe, b"").is_ok();
    let _ = fs::remove_file(&probe);
    if !can_still_write {
        let e = update_decision(&a.photo, |d| d.set_rating(5)).unwrap_err();
        assert!(matches!(e, XmpError::Write { .. }), "{e}");
        assert_eq!(e.path(), sidecar);
        assert!(e.to_string().contains(&*sidecar.to_string_lossy()), "{e}");
        assert_eq!(fs::read_to_string(&sidecar).unwrap(), orig);
        // Reading still works.
        assert_eq!(read(&a).rating, Some(2));
    }
    fs::set_permissions(&a.root, fs::Permissions::from_mode(0o755)).unwrap();

    // A folder that cannot be written by anyone, root included: its "parent" is a regular file.
    let not_a_dir = a.root.join("not_a_folder");
    fs::write(&not_a_dir, b"a regular file").unwrap();
    let photo = not_a_dir.join("IMG_9.CR2");
    assert_eq!(read_decision(&photo).unwrap(), (Decision::default(), DecisionSource::None));
    let e = update_decision(&photo, |d| d.mark_rejected()).unwrap_err();
    let want = not_a_dir.join("IMG_9.CR2.xmp");
    assert!(matches!(&e, XmpError::Write { path, .. } if *path == want), "{e:?}");
    assert!(e.to_string().contains(&*want.to_string_lossy()), "{e}");
    assert_eq!(fs::read(&not_a_dir).unwrap(), b"a regular file");
    a.assert_photo_untouched();
}

#[cfg(unix)]
#[test]
fn read_only_sidecar_is_not_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let orig = fixture("lightroom.xmp");
    let (a, sidecar) = Album::with_sidecar("DSC_0412.NEF", "DSC_0412.xmp", &orig);
    fs::set_permissions(&sidecar, fs::Permissions::from_mode(0o444)).unwrap();
    let e = update_decision(&a.photo, |d| d.set_rating(5)).unwrap_err();
    assert!(matches!(e, XmpError::Write { .. }) && e.to_string().contains(&*sidecar.to_string_lossy()), "{e}");
    assert_eq!(fs::read_to_string(&sidecar).unwrap(), orig);
    assert!(a.temp_files().is_empty());
    // Permissions of a writable sidecar are kept by the rename.
    fs::set_permissions(&sidecar, fs::Permissions::from_mode(0o640)).unwrap();
    update(&a, |d| d.set_rating(5));
    assert_eq!(fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777, 0o640);
}

#[cfg(unix)]
#[test]
fn symlinked_sidecar_is_written_through() {
    let orig = fixture("lightroom.xmp");
    let (a, real) = Album::with_sidecar("DSC_0412.NEF", "shared.xmp", &orig);
    let link = a.root.join("DSC_0412.NEF.xmp");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    update(&a, |d| d.set_rating(4));
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(
        fs::read_to_string(&real).unwrap(),
        replace_once(&orig, "   crs:HasSettings=\"True\">", "   crs:HasSettings=\"True\"\n   xmp:Rating=\"4\">")
    );
}

#[test]
fn malformed_sidecars_are_reported_and_left_intact() {
    let dt = fixture("darktable.CR2.xmp");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not XML", b"Lightroom catalog export notes: keep IMG_2041, reject the rest".to_vec()),
        ("truncated", dt.as_bytes()[..dt.len() * 3 / 5].to_vec()),
        ("truncated inside a tag", dt.as_bytes()[..dt.find("darktable:params=\"0000").unwrap() + 20].to_vec()),
        ("empty", Vec::new()),
        ("binary", vec![0x00, 0xFF, 0xFE, 0x3C, 0x80, 0x81, 0x00, 0x10]),
        ("not XMP", b"<?xml version=\"1.0\"?>\n<settings><rating>5</rating></settings>\n".to_vec()),
        ("mismatched tags", dt.replacen("</darktable:history>", "</darktable:histroy>", 1).into_bytes()),
        ("duplicate attribute", dt.replacen("xmp:Rating=\"2\"", "xmp:Rating=\"2\" xmp:Rating=\"3\"", 1).into_bytes()),
    ];
    for (what, bytes) in cases {
        let a = Album::new("IMG_2041.CR2", b"raw bytes");
        let sidecar = a.root.join("IMG_2041.CR2.xmp");
        fs::write(&sidecar, &bytes).unwrap();
        let e = read_decision(&a.photo).unwrap_err();
        assert!(matches!(e, XmpError::Malformed { .. }), "{what}: {e:?}");
        assert_eq!(e.path(), sidecar, "{what}");
        let msg = e.to_string();
        assert!(msg.contains(&*sidecar.to_string_lossy()) && msg.contains("malformed XMP"), "{what}: {msg}");
        let e = update_decision(&a.photo, |d| d.set_rating(5)).unwrap_err();
        assert!(matches!(e, XmpError::Malformed { .. }) && e.path() == sidecar, "{what}: {e:?}");
        assert_eq!(fs::read(&sidecar).unwrap(), bytes, "{what}: the user's file was changed");
        assert_eq!(a.files(), ["IMG_2041.CR2", "IMG_2041.CR2.xmp"], "{what}");
        a.assert_photo_untouched();
    }
}

#[test]
fn keywords_are_read_from_lightroom_darktable_and_digikam_sidecars() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xmp");
    let kw = |f: &str| keepers::library::xmp::parse_keywords(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
    assert_eq!(kw("darktable.CR2.xmp"), vec!["Iceland", "landscape", "waterfall & rainbow"]);
    assert_eq!(kw("digikam.JPG.xmp"), vec!["Family", "Birthday 2022"]);
    let lr = kw("lightroom.xmp");
    assert!(!lr.is_empty(), "{lr:?}");
    // Any prefix bound to Dublin Core; other namespaces' "subject" is not a keyword; duplicates once.
    let x = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
      <rdf:Description xmlns:d="http://purl.org/dc/elements/1.1/" xmlns:o="urn:other">
        <d:subject><rdf:Bag><rdf:li> wedding </rdf:li><rdf:li>b&amp;w</rdf:li><rdf:li>wedding</rdf:li></rdf:Bag></d:subject>
        <o:subject><rdf:Bag><rdf:li>not a keyword</rdf:li></rdf:Bag></o:subject>
      </rdf:Description></rdf:RDF></x:xmpmeta>"#;
    assert_eq!(keepers::library::xmp::parse_keywords(x).unwrap(), vec!["wedding", "b&w"]);
    assert!(keepers::library::xmp::parse_keywords("<a><b></a>").is_err(), "malformed XML is an error");
    // A photo with a sidecar reads its keywords; one without any XMP has none.
    let tmp = tempfile::tempdir().unwrap();
    let photo = tmp.path().join("IMG_1.JPG");
    std::fs::write(&photo, b"not really a jpeg").unwrap();
    assert!(keepers::library::xmp::read_keywords(&photo).unwrap().is_empty());
    std::fs::copy(dir.join("digikam.JPG.xmp"), tmp.path().join("IMG_1.JPG.xmp")).unwrap();
    assert_eq!(keepers::library::xmp::read_keywords(&photo).unwrap(), vec!["Family", "Birthday 2022"]);
}
