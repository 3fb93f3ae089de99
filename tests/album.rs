//! The album handle: events for a fresh album (items, issues, thumbnails), decisions to the database
//! and to every sidecar of an item, reopening (everything known at once, thumbnails from the cache,
//! changed files re-scored), an unwritable folder (decision kept, reported once, retried), cancellation.

mod libsupport;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use keepers::library::album::{AlbumConfig, AlbumEvent, AlbumHandle, DecisionChange};
use keepers::library::db::{Change, OpenNote};
use keepers::library::xmp::{self, Pick};
use libsupport::*;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cfg: AlbumConfig,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shoot");
    fs::create_dir_all(&root).unwrap();
    let cfg = AlbumConfig {
        root: root.clone(),
        db_path: dir.path().join("data/library.sqlite"),
        thumb_dir: dir.path().join("cache/thumbs"),
        thumb_max_bytes: 64 << 20,
        thumb_side: 96,
        thumbnails: true,
    };
    Setup { _dir: dir, root: fs::canonicalize(&root).unwrap(), cfg }
}

/// Events until `stop` says so (or a minute passes).
fn collect(h: &AlbumHandle, stop: impl Fn(&AlbumEvent) -> bool) -> Vec<AlbumEvent> {
    let mut v = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match h.events().recv_timeout(Duration::from_millis(100)) {
            Ok(e) => {
                let done = stop(&e);
                v.push(e);
                if done {
                    return v;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("album events stopped early: {v:#?}");
}

fn finished(e: &AlbumEvent) -> bool {
    matches!(e, AlbumEvent::Finished { .. })
}

fn decision_saved(e: &AlbumEvent) -> bool {
    matches!(e, AlbumEvent::DecisionSaved { .. })
}

const DARKTABLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="3"
   darktable:xmp_version="5">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"#;

#[test]
fn open_decide_reopen() {
    let s = setup();
    let r = &s.root;
    for i in 0..3 {
        fs::write(r.join(format!("p{i}.jpg")), encode_jpeg(&pattern(400, 300, i), 90)).unwrap();
    }
    fs::create_dir_all(r.join("raw")).unwrap();
    fs::write(r.join("raw/IMG_1.CR2"), minimal_cr2()).unwrap();
    fs::write(r.join("raw/IMG_1.JPG"), jpeg(320, 240)).unwrap();
    fs::write(r.join("p1.jpg.xmp"), DARKTABLE).unwrap();
    fs::write(r.join("empty.jpg"), b"").unwrap();
    let originals: Vec<(PathBuf, Vec<u8>)> = ["p0.jpg", "p1.jpg", "p2.jpg", "raw/IMG_1.CR2", "raw/IMG_1.JPG"]
        .iter()
        .map(|n| (r.join(n), fs::read(r.join(n)).unwrap()))
        .collect();

    let h = AlbumHandle::open(s.cfg.clone()).unwrap();
    let ev = collect(&h, finished);
    assert!(matches!(ev[0], AlbumEvent::Opened(OpenNote::Created)), "{:?}", ev[0]);
    assert!(matches!(&ev[1], AlbumEvent::Known(rows) if rows.is_empty()));
    let items: Vec<_> = ev
        .iter()
        .filter_map(|e| if let AlbumEvent::Item { item, change, decision, .. } = e { Some((item, *change, *decision)) } else { None })
        .collect();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|(_, c, _)| *c == Change::New));
    let p1 = items.iter().find(|(i, _, _)| i.path() == r.join("p1.jpg")).unwrap();
    assert_eq!(p1.2.and_then(|d| d.rating), Some(3), "the existing sidecar's rating is read");
    let issues: Vec<_> = ev.iter().filter_map(|e| if let AlbumEvent::Issue(i) = e { Some(i) } else { None }).collect();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].to_string().contains("empty.jpg"));
    let thumbs: Vec<_> = ev
        .iter()
        .filter_map(|e| if let AlbumEvent::Thumbnail { path, image, from_cache, .. } = e { Some((path, image, *from_cache)) } else { None })
        .collect();
    assert_eq!(thumbs.len(), 4);
    assert!(thumbs.iter().all(|(_, img, cached)| !cached && img.width().max(img.height()) == 96));
    assert!(matches!(ev.last(), Some(AlbumEvent::Finished { cancelled: false })));

    // Decisions: database, then the sidecar of every file of the item.
    let raw = r.join("raw/IMG_1.CR2");
    h.decide(&raw, DecisionChange::Stars(4));
    h.decide(&raw, DecisionChange::Reject);
    h.decide(&r.join("p1.jpg"), DecisionChange::Pick);
    let mut saved = Vec::new();
    while saved.len() < 3 {
        for e in collect(&h, decision_saved) {
            if let AlbumEvent::DecisionSaved { path, decision, sidecar_written } = e {
                assert!(sidecar_written);
                saved.push((path, decision));
            }
        }
    }
    assert_eq!(saved[1].1.pick, Some(Pick::Rejected));
    for f in ["raw/IMG_1.CR2", "raw/IMG_1.JPG"] {
        let d = xmp::read_sidecar(&r.join(format!("{f}.xmp"))).unwrap();
        assert_eq!((d.rating, d.pick), (Some(-1), Some(Pick::Rejected)), "{f}");
    }
    let text = fs::read_to_string(r.join("p1.jpg.xmp")).unwrap();
    assert!(text.contains("darktable:operation=\"exposure\"") && text.contains("xmp:Rating=\"3\""), "{text}");
    assert_eq!(xmp::read_sidecar(&r.join("p1.jpg.xmp")).unwrap().pick, Some(Pick::Picked));
    h.close();

    // Reopen: everything known before the scan, nothing re-decoded, unflag restores the stars.
    let h = AlbumHandle::open(s.cfg.clone()).unwrap();
    let ev = collect(&h, finished);
    let AlbumEvent::Known(rows) = &ev[1] else { panic!("{:?}", ev[1]) };
    assert_eq!(rows.len(), 4);
    let raw_row = rows.iter().find(|row| row.record.path == raw).unwrap();
    let sd = raw_row.decision.as_ref().unwrap();
    assert_eq!((sd.decision.pick, sd.prior_stars, sd.sidecar_pending), (Some(Pick::Rejected), Some(4), false));
    assert_eq!(raw_row.record.companion.as_deref(), Some(r.join("raw/IMG_1.JPG").as_path()));
    assert!(
        ev.iter()
            .filter_map(|e| if let AlbumEvent::Item { change, .. } = e { Some(*change) } else { None })
            .all(|c| c == Change::Unchanged)
    );
    let cached: Vec<bool> =
        ev.iter().filter_map(|e| if let AlbumEvent::Thumbnail { from_cache, .. } = e { Some(*from_cache) } else { None }).collect();
    assert_eq!(cached, vec![true; 4]);
    h.decide(&raw, DecisionChange::Unflag);
    let ev = collect(&h, decision_saved);
    let Some(AlbumEvent::DecisionSaved { decision, .. }) = ev.last() else { panic!() };
    assert_eq!((decision.rating, decision.pick), (Some(4), Some(Pick::Unflagged)));
    h.close();

    // An edited photo is re-scored; the others are not.
    fs::write(r.join("p2.jpg"), encode_jpeg(&pattern(400, 300, 9), 80)).unwrap();
    fs::File::options().write(true).open(r.join("p2.jpg")).unwrap().set_modified(SystemTime::now() + Duration::from_secs(3)).unwrap();
    let h = AlbumHandle::open(s.cfg.clone()).unwrap();
    let ev = collect(&h, finished);
    for e in &ev {
        if let AlbumEvent::Item { item, change, .. } = e {
            let want = if item.path() == r.join("p2.jpg") { Change::Modified } else { Change::Unchanged };
            assert_eq!(*change, want, "{}", item.path().display());
        }
    }
    drop(h);
    for (p, bytes) in originals.iter().filter(|(p, _)| !p.ends_with("p2.jpg")) {
        assert_eq!(&fs::read(p).unwrap(), bytes, "{} was written", p.display());
    }
}

const RO_ENV: &str = "KEEPERS_TEST_ALBUM_DIR";

fn config_in(base: &Path) -> AlbumConfig {
    AlbumConfig {
        root: base.join("shoot"),
        db_path: base.join("data/library.sqlite"),
        thumb_dir: base.join("cache"),
        thumb_max_bytes: 1 << 20,
        thumb_side: 64,
        thumbnails: false,
    }
}

/// Decides on two photos in a folder that cannot be written: both kept in the database, one report.
fn decide_in_read_only_folder(base: &Path) {
    let h = AlbumHandle::open(config_in(base)).unwrap();
    collect(&h, finished);
    let root = fs::canonicalize(base.join("shoot")).unwrap();
    h.decide(&root.join("a.jpg"), DecisionChange::Stars(5));
    h.decide(&root.join("b.jpg"), DecisionChange::Label(Some(xmp::ColorLabel::Red)));
    let mut ev = collect(&h, decision_saved);
    ev.extend(collect(&h, decision_saved));
    let reports: Vec<_> = ev.iter().filter(|e| matches!(e, AlbumEvent::SidecarsUnwritable { .. })).collect();
    assert_eq!(reports.len(), 1, "told once per folder: {ev:#?}");
    let AlbumEvent::SidecarsUnwritable { folder, error } = reports[0] else { unreachable!() };
    assert_eq!(folder, &root);
    assert!(error.contains("a.jpg.xmp"), "{error}");
    assert!(ev.iter().filter(|e| decision_saved(e)).all(|e| matches!(e, AlbumEvent::DecisionSaved { sidecar_written: false, .. })));
    h.close();
    assert!(!root.join("a.jpg.xmp").exists());
}

#[test]
#[ignore = "helper: run by unwritable_folder_keeps_decisions_and_retries as an unprivileged user"]
fn unwritable_child() {
    let Some(p) = std::env::var_os(RO_ENV) else { return };
    decide_in_read_only_folder(Path::new(&p));
}

#[cfg(unix)]
#[test]
fn unwritable_folder_keeps_decisions_and_retries() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    fs::set_permissions(base, fs::Permissions::from_mode(0o777)).unwrap();
    let shoot = base.join("shoot");
    fs::create_dir_all(&shoot).unwrap();
    fs::write(shoot.join("a.jpg"), jpeg(64, 48)).unwrap();
    fs::write(shoot.join("b.jpg"), jpeg(64, 48)).unwrap();
    for d in ["data", "cache"] {
        fs::create_dir_all(base.join(d)).unwrap();
        fs::set_permissions(base.join(d), fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::set_permissions(&shoot, fs::Permissions::from_mode(0o555)).unwrap();
    if !run_unprivileged_if_root("unwritable_child", &[(RO_ENV, base)]) {
        decide_in_read_only_folder(base);
    }
    // The folder becomes writable; the next open writes the pending sidecars.
    fs::set_permissions(&shoot, fs::Permissions::from_mode(0o755)).unwrap();
    let h = AlbumHandle::open(config_in(base)).unwrap();
    let mut ev = collect(&h, decision_saved);
    ev.extend(collect(&h, decision_saved));
    assert!(
        ev.iter().filter(|e| decision_saved(e)).all(|e| matches!(e, AlbumEvent::DecisionSaved { sidecar_written: true, .. })),
        "{ev:#?}"
    );
    let root = fs::canonicalize(&shoot).unwrap();
    assert_eq!(xmp::read_sidecar(&root.join("a.jpg.xmp")).unwrap().rating, Some(5));
    assert_eq!(xmp::read_sidecar(&root.join("b.jpg.xmp")).unwrap().label, Some(xmp::ColorLabel::Red));
    h.close();
}

#[test]
fn cancel_stops_thumbnails() {
    let s = setup();
    let img = encode_jpeg(&pattern(1200, 900, 3), 90);
    for i in 0..150 {
        fs::write(s.root.join(format!("f{i:03}.jpg")), &img).unwrap();
    }
    let h = AlbumHandle::open(s.cfg.clone()).unwrap();
    let ev = collect(&h, |e| matches!(e, AlbumEvent::Thumbnail { .. }));
    assert!(ev.iter().any(|e| matches!(e, AlbumEvent::ScanDone(_))));
    h.cancel();
    let rest = collect(&h, finished);
    assert!(matches!(rest.last(), Some(AlbumEvent::Finished { cancelled: true })));
    let thumbs = ev.iter().chain(&rest).filter(|e| matches!(e, AlbumEvent::Thumbnail { .. })).count();
    assert!(thumbs < 150, "cancel did not stop the thumbnails ({thumbs})");
    h.close();
}

#[test]
fn thumbnails_of_prioritised_photos_come_first() {
    let s = setup();
    let img = encode_jpeg(&pattern(1200, 900, 5), 90);
    for i in 0..60 {
        fs::write(s.root.join(format!("f{i:03}.jpg")), &img).unwrap();
    }
    let h = AlbumHandle::open(s.cfg.clone()).unwrap();
    // The photos at the end of the scan order are the ones "on screen".
    let wanted: Vec<PathBuf> = (57..60).map(|i| s.root.join(format!("f{i:03}.jpg"))).collect();
    let mut ids = Vec::new();
    let ev = collect(&h, |e| {
        if let AlbumEvent::Item { item, id, .. } = e
            && wanted.contains(&item.primary.path)
        {
            h.prioritise(&[*id]);
        }
        matches!(e, AlbumEvent::Item { item, .. } if item.primary.path == wanted[2])
    });
    for e in &ev {
        if let AlbumEvent::Item { item, id, .. } = e
            && wanted.contains(&item.primary.path)
        {
            ids.push(*id);
        }
    }
    assert_eq!(ids.len(), 3);
    h.prioritise(&ids);
    let rest = collect(&h, finished);
    let order: Vec<i64> =
        ev.iter().chain(&rest).filter_map(|e| if let AlbumEvent::Thumbnail { id, .. } = e { Some(*id) } else { None }).collect();
    assert_eq!(order.len(), 60);
    // Thumbnails already being made when the list arrived may come first (one per core).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for id in &ids {
        let pos = order.iter().position(|x| x == id).unwrap();
        assert!(pos < 3 + 2 * cores, "photo {id} was thumbnail number {pos} of 60 despite its priority");
    }
    h.close();
}
