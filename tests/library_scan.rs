//! Album scan: recursion, format from bytes, RAW+JPEG pairs, what is reported and what is ignored,
//! symlink loops, unreadable folders, files vanishing mid-scan, cancellation; the command line
//! and the album dataset reader list folders the same way.

mod libsupport;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use keepers::library::formats::{Format, RawKind};
use keepers::library::scan::{self, IssueKind, ScanEvent, ScanIssue, ScanItem, examine, scan_all};
use libsupport::*;

fn write(p: &Path, bytes: &[u8]) -> PathBuf {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
    p.to_owned()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().into_owned()
}

fn issues_by_name(root: &Path, issues: &[ScanIssue]) -> BTreeMap<String, IssueKind> {
    issues.iter().map(|i| (rel(root, &i.path), i.kind.clone())).collect()
}

#[test]
fn recursive_scan_pairs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let png = {
        let p = r.join("tmp.png");
        quadrants(8, 8).save_with_format(&p, image::ImageFormat::Png).unwrap();
        let b = fs::read(&p).unwrap();
        fs::remove_file(&p).unwrap();
        b
    };
    write(&r.join("a.jpg"), &jpeg(32, 24));
    write(&r.join("2024/day1/IMG_1.CR2"), &minimal_cr2());
    write(&r.join("2024/day1/IMG_1.JPG"), &jpeg(32, 24));
    write(&r.join("2024/day1/IMG_2.CR2"), &minimal_cr2()); // RAW alone
    write(&r.join("2024/day1/IMG_2.CR2.xmp"), b"<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"/>");
    write(&r.join("2024/day1/really_jpeg.png"), &jpeg(16, 16)); // wrong extension: the bytes win
    write(&r.join("2024/day2/no_extension"), &png); // no extension, PNG bytes
    write(&r.join("2024/day2/notes.txt"), b"not a photo, not reported");
    write(&r.join("2024/day2/empty.jpg"), b"");
    write(&r.join("2024/day2/anim.gif"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    write(&r.join("2024/day2/text.jpeg"), b"this is not a jpeg at all");
    write(&r.join("2024/day2/.hidden.jpg"), &jpeg(8, 8));
    write(&r.join(".thumbnails/x.jpg"), &jpeg(8, 8));
    let (items, issues, summary) = scan_all(r);
    let names: Vec<(String, Option<String>, Format)> =
        items.iter().map(|i: &ScanItem| (rel(r, i.path()), i.companion.as_ref().map(|c| rel(r, &c.path)), i.primary.format)).collect();
    assert_eq!(
        names,
        vec![
            ("a.jpg".to_string(), None, Format::Jpeg),
            ("2024/day1/IMG_1.CR2".into(), Some("2024/day1/IMG_1.JPG".into()), Format::Raw(RawKind::Cr2)),
            ("2024/day1/IMG_2.CR2".into(), None, Format::Raw(RawKind::Cr2)),
            ("2024/day1/really_jpeg.png".into(), None, Format::Jpeg),
            ("2024/day2/no_extension".into(), None, Format::Png),
        ]
    );
    // A pair shows the camera's JPEG; a lone RAW shows itself.
    assert_eq!(rel(r, &items[1].display().path), "2024/day1/IMG_1.JPG");
    assert_eq!(items[1].files().count(), 2);
    assert_eq!(rel(r, &items[2].display().path), "2024/day1/IMG_2.CR2");
    let want: BTreeMap<String, IssueKind> = [
        ("2024/day2/anim.gif".to_string(), IssueKind::Unsupported("GIF")),
        ("2024/day2/empty.jpg".into(), IssueKind::Empty),
        ("2024/day2/text.jpeg".into(), IssueKind::NotAnImage),
    ]
    .into_iter()
    .collect();
    assert_eq!(issues_by_name(r, &issues), want);
    for i in &issues {
        assert!(i.to_string().contains(&*i.path.to_string_lossy()), "{i}");
    }
    assert_eq!((summary.items, summary.files, summary.issues, summary.cancelled), (5, 6, 3, false));
    let a = &items[0].primary;
    assert_eq!(a.size, fs::metadata(r.join("a.jpg")).unwrap().len());
    assert!(a.mtime_ns > 0);
}

#[cfg(unix)]
#[test]
fn symlink_loop() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(&r.join("shoot/a.jpg"), &jpeg(16, 16));
    write(&r.join("shoot/deeper/b.jpg"), &jpeg(16, 16));
    symlink(r.join("shoot"), r.join("shoot/deeper/back_up")).unwrap(); // to an ancestor
    symlink(r.join("l2"), r.join("l1")).unwrap(); // l1 -> l2 -> l1: the OS reports the loop
    symlink(r.join("l1"), r.join("l2")).unwrap();
    symlink(r.join("nowhere"), r.join("dangling.jpg")).unwrap();
    write(&r.join("other/c.jpg"), &jpeg(16, 16));
    symlink(r.join("other"), r.join("shoot/other_again")).unwrap(); // second way into a folder: no duplicates
    let (items, issues, summary) = scan_all(r);
    let mut names: Vec<String> = items.iter().map(|i| rel(r, i.path())).collect();
    names.sort();
    // `other` is reached both directly and through `shoot/other_again`; whichever comes first wins.
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"shoot/a.jpg".to_string()) && names.contains(&"shoot/deeper/b.jpg".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("c.jpg")), "{names:?}");
    let got = issues_by_name(r, &issues);
    assert_eq!(got.get("shoot/deeper/back_up"), Some(&IssueKind::SymlinkLoop), "{got:?}");
    assert_eq!(got.get("l1"), Some(&IssueKind::SymlinkLoop), "{got:?}");
    assert_eq!(got.get("l2"), Some(&IssueKind::SymlinkLoop), "{got:?}");
    assert_eq!(got.get("dangling.jpg"), Some(&IssueKind::BrokenLink), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(!summary.cancelled);
}

const UNREADABLE_ENV: &str = "KEEPERS_TEST_SCAN_ROOT";

fn check_unreadable(r: &Path) {
    let (items, issues, _) = scan_all(r);
    let names: Vec<String> = items.iter().map(|i| rel(r, i.path())).collect();
    assert_eq!(names, ["ok/a.jpg"], "the scan goes on past unreadable places");
    let got = issues_by_name(r, &issues);
    assert_eq!(got.get("locked"), Some(&IssueKind::PermissionDenied), "{got:?}");
    assert_eq!(got.get("ok/secret.jpg"), Some(&IssueKind::PermissionDenied), "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
#[ignore = "helper: run by unreadable_folder_and_file as an unprivileged user"]
fn unreadable_child() {
    let Some(p) = std::env::var_os(UNREADABLE_ENV) else { return };
    check_unreadable(Path::new(&p));
}

#[cfg(unix)]
#[test]
fn unreadable_folder_and_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    open_up(r);
    write(&r.join("ok/a.jpg"), &jpeg(16, 16));
    let secret = write(&r.join("ok/secret.jpg"), &jpeg(16, 16));
    write(&r.join("locked/b.jpg"), &jpeg(16, 16));
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    if !run_unprivileged_if_root("unreadable_child", &[(UNREADABLE_ENV, r)]) {
        check_unreadable(r);
    }
    fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn vanished_file() {
    let dir = tempfile::tempdir().unwrap();
    // The per-file step the scan runs after listing a folder, on a file that is gone by then.
    let gone = dir.path().join("IMG_9.JPG");
    let e = examine(&gone).unwrap_err();
    assert_eq!(e.kind, IssueKind::Vanished);
    assert!(e.to_string().contains("IMG_9.JPG") && e.to_string().contains("disappeared"), "{e}");
    let here = write(&dir.path().join("IMG_8.JPG"), &jpeg(8, 8));
    assert_eq!(examine(&here).unwrap().unwrap().format, Format::Jpeg);
    assert_eq!(examine(&write(&dir.path().join("x.txt"), b"hello")).unwrap(), None);
}

#[test]
fn files_deleted_during_a_scan() {
    // Another program deletes files while the scan runs: every file is either found or reported as
    // vanished (never an error of another kind, never a panic).
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().to_owned();
    let j = jpeg(8, 8);
    let mut files = Vec::new();
    for d in 0..20 {
        for f in 0..100 {
            files.push(write(&r.join(format!("d{d:02}/f{f:03}.jpg")), &j));
        }
    }
    let deleter = {
        let files = files.clone();
        std::thread::spawn(move || {
            for f in files.iter().rev() {
                let _ = fs::remove_file(f);
            }
        })
    };
    let (items, issues, _) = scan_all(&r);
    deleter.join().unwrap();
    for i in &issues {
        assert_eq!(i.kind, IssueKind::Vanished, "{i}");
    }
    assert!(items.len() + issues.len() <= files.len());
    for it in &items {
        assert!(files.contains(&it.primary.path));
    }
}

#[test]
fn cancel_stops_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..10 {
        write(&dir.path().join(format!("d{d}/a.jpg")), &jpeg(8, 8));
    }
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let summary = scan::scan(dir.path(), &cancel, |e| {
        if let ScanEvent::Item(_) = e {
            seen += 1;
            cancel.store(true, Ordering::Relaxed);
        }
    });
    assert!(summary.cancelled);
    assert_eq!(seen, 1);
    // A missing root is an issue, not a panic.
    let (items, issues, _) = scan_all(&dir.path().join("missing"));
    assert!(items.is_empty());
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].kind, IssueKind::Vanished);
}

/// File names that are not valid Unicode (Latin-1 names copied from an old disk) pair by their
/// bytes: `\xe9t\xe9.CR2` pairs with `\xe9t\xe9.jpg` and not with `\xe8t\xe8.jpg`, which a
/// comparison through the replacement character would merge.
#[cfg(unix)]
#[test]
fn names_that_are_not_unicode_pair_by_their_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let name = |b: &[u8]| r.join(OsStr::from_bytes(b));
    write(&name(b"\xe9t\xe9.CR2"), &minimal_cr2());
    write(&name(b"\xe9t\xe9.jpg"), &jpeg(64, 48));
    write(&name(b"\xe8t\xe8.jpg"), &jpeg(64, 48));
    let (items, issues, _) = scan_all(r);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(items.len(), 2, "{items:?}");
    let pair = items.iter().find(|i| i.companion.is_some()).expect("the CR2 and its JPEG are one item");
    assert_eq!(pair.primary.path, name(b"\xe9t\xe9.CR2"));
    assert_eq!(pair.companion.as_ref().unwrap().path, name(b"\xe9t\xe9.jpg"));
    assert!(items.iter().any(|i| i.primary.path == name(b"\xe8t\xe8.jpg") && i.companion.is_none()));
}

/// The command line lists a folder as the app's album does (`scan::list_photos`): recursively,
/// hidden files (macOS `._` resource forks included) skipped, format from the bytes (`.jpe` is a
/// JPEG; a folder named `folder.jpg` is a folder); a truncated JPEG is refused by name rather
/// than scored from grey padding; a folder with no photo is an error in every command.
#[test]
fn cli_lists_folders_as_the_album_does_and_refuses_damaged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    std::fs::create_dir_all(dir.join("day1")).unwrap();
    std::fs::create_dir_all(dir.join("folder.jpg")).unwrap();
    std::fs::copy(samples.join("coffee.png"), dir.join("day1/nested.png")).unwrap();
    std::fs::copy(samples.join("coffee.png"), dir.join("folder.jpg/inside.png")).unwrap();
    let china = std::fs::read(samples.join("china.jpg")).unwrap();
    std::fs::write(dir.join("photo.jpe"), &china).unwrap();
    std::fs::write(dir.join(".hidden.jpg"), &china).unwrap();
    std::fs::write(dir.join("._photo.jpe"), b"\x00\x05\x16\x07 AppleDouble resource fork").unwrap();
    std::fs::write(dir.join("cut.jpg"), &china[..china.len() / 3]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepers")).arg("brisque").arg(dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for listed in ["day1/nested.png", "folder.jpg/inside.png", "photo.jpe"] {
        assert!(stdout.contains(listed), "{listed} scored:\n{stdout}\n{stderr}");
    }
    assert!(!stdout.contains("hidden") && !stderr.contains("hidden") && !stderr.contains("._photo"), "{stdout}\n{stderr}");
    assert!(stderr.contains("cut.jpg") && stderr.contains("damaged or truncated") && stderr.contains("1 of 4"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));

    let empty_dir = tempfile::tempdir().unwrap();
    let empty = empty_dir.path();
    std::fs::write(empty.join("notes.txt"), b"no photos here").unwrap();
    for cmd in ["brisque", "classify", "predict"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepers")).arg(cmd).arg(empty).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("no photos found"), "{cmd}: {stderr}");
    }
}

/// `keepers train --album DIR` without a library (`train::data::album::from_xmp_dir`) reads the
/// album as the app does: sub-folders included, one sample per RAW+JPEG pair named by its RAW
/// (as the library names it) with the decision the app reads from the RAW's sidecar and the
/// pixels of its JPEG (the file the app scores), hidden files
/// skipped, and the files the scan could not take listed once each, without repeating the path.
#[test]
fn the_album_dataset_reader_sees_the_album_the_app_sees() {
    use keepers::library::xmp::{Decision, Pick, write_decision};
    use keepers::train::data::album::from_xmp_dir;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let raw = write(&r.join("day1/IMG_1.CR2"), &minimal_cr2());
    write(&r.join("day1/IMG_1.JPG"), &jpeg(64, 48));
    let single = write(&r.join("day2/b.jpg"), &jpeg(64, 48));
    write(&r.join(".hidden.jpg"), &jpeg(64, 48));
    let empty = write(&r.join("empty.jpg"), b"");
    // darktable-style sidecar on the RAW only: the pair's decision.
    write_decision(&raw, &Decision { pick: Some(Pick::Picked), ..Default::default() }).unwrap();
    assert!(r.join("day1/IMG_1.CR2.xmp").exists() && !r.join("day1/IMG_1.JPG.xmp").exists());
    write_decision(&single, &Decision { rating: Some(-1), ..Default::default() }).unwrap();
    let (ds, report) = from_xmp_dir(r).unwrap();
    assert_eq!((report.photos, report.with_decision, report.picks, report.rejects), (2, 2, 1, 1), "{report}");
    let mut keys: Vec<(String, Option<usize>)> = ds.samples.iter().map(|s| (s.key.clone(), s.target.label)).collect();
    keys.sort();
    assert_eq!(keys, [("IMG_1.CR2".to_string(), Some(1)), ("b.jpg".to_string(), Some(0))]);
    // The pair's pixels are its JPEG's (the app scores that file, not the RAW's preview).
    assert!(ds.samples.iter().any(|s| s.key == "IMG_1.CR2" && s.path == r.join("day1/IMG_1.JPG")));
    assert_eq!(report.unreadable, vec![(empty, "file is empty".to_string())]);
}
