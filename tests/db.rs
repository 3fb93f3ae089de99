//! Library database: everything back on reopen, re-scoring of changed files, embeddings and outputs by
//! model and weights version, decisions with their sidecar state, all-or-nothing batches, and corrupt,
//! locked and newer-version databases reported or rebuilt without a crash.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keepers::library::db::{Change, DbError, Library, OpenNote, Output, PhotoRecord, SCHEMA_VERSION};
use keepers::library::exif::ExifSummary;
use keepers::library::xmp::{ColorLabel, Decision, Pick};

fn rec(root: &Path, name: &str, size: u64, mtime_ns: i64) -> PhotoRecord {
    PhotoRecord {
        path: root.join(name),
        size,
        mtime_ns,
        format: Some("JPEG".into()),
        width: Some(6000),
        height: Some(4000),
        exif: Some(ExifSummary {
            date_time_original: Some("2024:06:01 10:15:42".into()),
            subsec: Some("25".into()),
            make: Some("Canon".into()),
            model: Some("EOS R6".into()),
            serial: Some("0123".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn out(head: &str, version: &str, json: &str) -> Output {
    Output { model_id: "lite0-quality".into(), weights_version: version.into(), head: head.into(), json: Some(json.into()), blob: None }
}

#[test]
fn reopen_shows_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("user/library.sqlite");
    let album = PathBuf::from("/photos/2024 trip");
    {
        let (mut lib, note) = Library::open(&db).unwrap();
        assert_eq!(note, OpenNote::Created);
        let recs: Vec<PhotoRecord> = (0..50).map(|i| rec(&album, &format!("IMG_{i:04}.JPG"), 1000 + i, 7_000 + i as i64)).collect();
        let ids = lib.upsert_photos(&recs).unwrap();
        assert!(ids.iter().all(|(_, c)| *c == Change::New));
        let id = ids[3].0;
        let mut d = Decision::default();
        d.set_rating(4);
        d.set_label(Some(ColorLabel::Green));
        lib.set_decision(id, &d, None).unwrap();
        lib.put_embedding(id, "lite0", "sha-aaa", &[0.5, -1.25, 3.0]).unwrap();
        lib.put_output(id, &out("quality", "v1", "{\"score\":61.5}")).unwrap();
        // A photo of another album is not part of this one.
        lib.upsert_photo(&rec(Path::new("/photos/2024 trip 2"), "x.jpg", 1, 1)).unwrap();
        lib.upsert_photo(&rec(Path::new("/photos"), "y.jpg", 1, 1)).unwrap();
    }
    let (lib, note) = Library::open(&db).unwrap();
    assert_eq!(note, OpenNote::Opened);
    let rows = lib.photos_under(&album).unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.windows(2).all(|w| w[0].record.path < w[1].record.path));
    let r = &rows[3];
    assert_eq!(r.record, rec(&album, "IMG_0003.JPG", 1003, 7003));
    assert_eq!(r.record.exif.as_ref().unwrap().capture_ms(), rec(&album, "a", 0, 0).exif.unwrap().capture_ms());
    let d = r.decision.as_ref().unwrap();
    assert_eq!((d.decision.rating, d.decision.label, d.sidecar_pending), (Some(4), Some(ColorLabel::Green), true));
    assert!(!r.needs_scoring, "scored photo");
    assert!(rows[4].needs_scoring && rows[4].decision.is_none());
    assert_eq!(lib.embedding(r.id, "lite0", "sha-aaa").unwrap(), Some(vec![0.5, -1.25, 3.0]));
    assert_eq!(lib.embedding(r.id, "lite0", "sha-bbb").unwrap(), None);
    assert_eq!(lib.outputs(r.id, "lite0-quality", "v1").unwrap(), vec![out("quality", "v1", "{\"score\":61.5}")]);
}

#[test]
fn changed_file_is_rescored_and_keeps_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lib, _) = Library::open(&dir.path().join("l.sqlite")).unwrap();
    let root = Path::new("/a");
    let (id, c) = lib.upsert_photo(&rec(root, "p.jpg", 100, 5)).unwrap();
    assert_eq!(c, Change::New);
    lib.put_embedding(id, "lite0", "w1", &[1.0; 8]).unwrap();
    lib.put_output(id, &out("quality", "v1", "1")).unwrap();
    lib.put_output(id, &out("quality", "v2", "2")).unwrap();
    lib.put_output(id, &out("aesthetic", "v2", "3")).unwrap();
    assert_eq!(lib.outputs(id, "lite0-quality", "v2").unwrap().len(), 2);
    let mut d = Decision::default();
    d.mark_rejected();
    lib.set_decision(id, &d, Some(3)).unwrap();
    // Same size and mtime: nothing to redo.
    assert_eq!(lib.upsert_photo(&rec(root, "p.jpg", 100, 5)).unwrap(), (id, Change::Unchanged));
    assert_eq!(lib.outputs(id, "lite0-quality", "v1").unwrap().len(), 1);
    // Edited: same id, scores gone, needs scoring, decision kept.
    assert_eq!(lib.upsert_photo(&rec(root, "p.jpg", 100, 6)).unwrap(), (id, Change::Modified));
    assert_eq!(lib.upsert_photo(&rec(root, "p.jpg", 120, 6)).unwrap(), (id, Change::Modified));
    assert!(lib.outputs(id, "lite0-quality", "v1").unwrap().is_empty());
    assert!(lib.outputs(id, "lite0-quality", "v2").unwrap().is_empty());
    assert_eq!(lib.embedding(id, "lite0", "w1").unwrap(), None);
    let row = lib.photos_under(root).unwrap().pop().unwrap();
    assert!(row.needs_scoring);
    let sd = row.decision.unwrap();
    assert_eq!((sd.decision.pick, sd.decision.rating, sd.prior_stars), (Some(Pick::Rejected), Some(-1), Some(3)));
    // Vanished files are forgotten.
    lib.upsert_photo(&rec(root, "q.jpg", 1, 1)).unwrap();
    let keep: HashSet<PathBuf> = [root.join("q.jpg")].into_iter().collect();
    assert_eq!(lib.forget_missing(root, &keep).unwrap(), 1);
    assert_eq!(lib.photos_under(root).unwrap().len(), 1);
    assert_eq!(lib.decision(id).unwrap(), None, "decisions of forgotten photos go with them");
}

#[test]
fn sidecar_state_and_imported_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lib, _) = Library::open(&dir.path().join("l.sqlite")).unwrap();
    let root = Path::new("/b");
    let (a, _) = lib.upsert_photo(&rec(root, "a.jpg", 1, 1)).unwrap();
    let (b, _) = lib.upsert_photo(&PhotoRecord { companion: Some(root.join("b.jpg")), ..rec(root, "b.cr2", 1, 1) }).unwrap();
    let mut d = Decision::default();
    d.set_rating(2);
    lib.set_decision(a, &d, None).unwrap();
    lib.set_decision(b, &d, None).unwrap();
    assert_eq!(lib.pending_sidecars().unwrap(), vec![(a, root.join("a.jpg"), None), (b, root.join("b.cr2"), Some(root.join("b.jpg")))]);
    lib.set_sidecar_state(a, None).unwrap();
    lib.set_sidecar_state(b, Some("read-only folder")).unwrap();
    assert_eq!(lib.pending_sidecars().unwrap().len(), 1);
    assert_eq!(lib.decision(b).unwrap().unwrap().sidecar_error.as_deref(), Some("read-only folder"));
    // What a sidecar said is imported only when Keepers has no decision of its own.
    let mut from_file = Decision::default();
    from_file.set_rating(5);
    assert!(!lib.import_decision(a, &from_file).unwrap());
    assert_eq!(lib.decision(a).unwrap().unwrap().decision.rating, Some(2));
    let (c, _) = lib.upsert_photo(&rec(root, "c.jpg", 1, 1)).unwrap();
    assert!(lib.import_decision(c, &from_file).unwrap());
    let sd = lib.decision(c).unwrap().unwrap();
    assert_eq!((sd.decision.rating, sd.sidecar_pending), (Some(5), false));
}

#[test]
fn batch_writes_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let (mut lib, _) = Library::open(&path).unwrap();
    // Another connection installs a trigger that refuses one path, as a full disk or crash would mid-batch.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON photos WHEN NEW.path LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let root = Path::new("/c");
    let batch = vec![rec(root, "1.jpg", 1, 1), rec(root, "2.jpg", 1, 1), rec(root, "poison.jpg", 1, 1), rec(root, "4.jpg", 1, 1)];
    let e = lib.upsert_photos(&batch).unwrap_err();
    assert!(e.to_string().contains("l.sqlite") && e.to_string().contains("refused"), "{e}");
    assert!(lib.photos_under(root).unwrap().is_empty(), "a failed batch left rows behind");
    other.execute_batch("DROP TRIGGER refuse;").unwrap();
    assert_eq!(lib.upsert_photos(&batch).unwrap().len(), 4);
}

#[test]
fn corrupt_database_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    // 1. Not a database at all.
    let path = dir.path().join("garbage.sqlite");
    let junk: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&path, &junk).unwrap();
    let (mut lib, note) = Library::open(&path).unwrap();
    let OpenNote::Rebuilt { moved_to, reason } = note else { panic!("{note:?}") };
    assert!(!reason.is_empty());
    assert_eq!(fs::read(&moved_to).unwrap(), junk, "the damaged file is kept for the user");
    assert!(moved_to.file_name().unwrap().to_string_lossy().starts_with("garbage.sqlite.corrupt-"));
    lib.upsert_photo(&rec(Path::new("/d"), "a.jpg", 1, 1)).unwrap();
    drop(lib);
    assert_eq!(Library::open(&path).unwrap().1, OpenNote::Opened);

    // 2. A real library cut short (a disk that filled up, a bad copy).
    let path = dir.path().join("cut.sqlite");
    {
        let (mut lib, _) = Library::open(&path).unwrap();
        let recs: Vec<PhotoRecord> = (0..2000).map(|i| rec(Path::new("/e"), &format!("{i:05}.jpg"), i, i as i64)).collect();
        lib.upsert_photos(&recs).unwrap();
        drop(lib);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;").unwrap();
    }
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 64 << 10);
    let _ = fs::remove_file(dir.path().join("cut.sqlite-wal"));
    let _ = fs::remove_file(dir.path().join("cut.sqlite-shm"));
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (lib, note) = Library::open(&path).unwrap();
    assert!(matches!(note, OpenNote::Rebuilt { .. }), "{note:?}");
    assert!(lib.photos_under(Path::new("/e")).unwrap().is_empty());

    // 3. An SQLite file that is not a Keepers library.
    let path = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
    assert!(matches!(Library::open(&path).unwrap().1, OpenNote::Rebuilt { .. }));
}

#[test]
fn locked_database_is_reported_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let (mut lib, _) = Library::open_with_timeout(&path, Duration::from_millis(100)).unwrap();
    let (id, _) = lib.upsert_photo(&rec(Path::new("/f"), "a.jpg", 1, 1)).unwrap();
    // Another program holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; INSERT INTO photos (path, size, mtime_ns, seen_at) VALUES ('/f/z.jpg', 1, 1, 0);").unwrap();
    let mut d = Decision::default();
    d.set_rating(3);
    let e = lib.set_decision(id, &d, None).unwrap_err();
    assert!(matches!(e, DbError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("l.sqlite") && e.to_string().contains("locked"), "{e}");
    // Reads still work (WAL), and once the other program lets go the write goes through.
    assert_eq!(lib.photos_under(Path::new("/f")).unwrap().len(), 1);
    other.execute_batch("ROLLBACK;").unwrap();
    lib.set_decision(id, &d, None).unwrap();

    // A rollback-journal database locked exclusively by another program: opening reports it.
    let path = dir.path().join("excl.sqlite");
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("PRAGMA locking_mode=EXCLUSIVE; CREATE TABLE t(x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);").unwrap();
    let e = Library::open_with_timeout(&path, Duration::from_millis(100)).err().expect("a locked database cannot be opened");
    assert!(matches!(e, DbError::Locked { .. }), "{e:?}");
    assert!(
        !dir.path().read_dir().unwrap().any(|f| f.unwrap().file_name().to_string_lossy().contains("corrupt")),
        "a locked file is not corrupt"
    );
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    drop(Library::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1)).unwrap();
    let before = fs::read(&path).unwrap();
    let e = Library::open(&path).err().unwrap();
    assert!(matches!(e, DbError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{e:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
}
