//! The library database: one SQLite file per user (`rusqlite`, SQLite compiled in) holding, per photo,
//! its file identity (path, size, mtime), EXIF summary, embeddings, model outputs keyed by model and
//! weights version, and the photographer's decisions with their sidecar state.
//!
//! - Location: [`Library::default_path`] (the platform data folder, e.g. `~/.local/share/keepers/
//!   library.sqlite`), or any path the caller gives (tests, portable installs).
//! - WAL journal, foreign keys on, every multi-row change in one transaction.
//! - A changed file (size or mtime differ from the stored ones) loses its embeddings and outputs and is
//!   marked for re-scoring ([`Change::Modified`]); its decision is kept.
//! - A corrupt database (open fails with "not a database" / "malformed", or `PRAGMA quick_check` is
//!   not `ok`) is moved aside to `<file>.corrupt-<unix seconds>` and a fresh one is created; the
//!   caller is told ([`OpenNote::Rebuilt`]) and the photos' decisions come back from their sidecars
//!   on the next scan. A database locked by another process is reported ([`DbError::Locked`]),
//!   never rebuilt. Nothing here panics on a bad file.
//!
//! Touches only the database file and its `-wal` / `-shm` companions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::exif::ExifSummary;
use super::xmp::{ColorLabel, Decision, Pick};

pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE photos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT,
    format TEXT,
    companion TEXT,
    width INTEGER,
    height INTEGER,
    capture_ms INTEGER,
    camera TEXT,
    exif_json TEXT,
    needs_scoring INTEGER NOT NULL DEFAULT 1,
    seen_at INTEGER NOT NULL
);
CREATE TABLE decisions (
    photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    rating INTEGER,
    label TEXT,
    pick TEXT,
    prior_stars INTEGER,
    updated_at INTEGER NOT NULL,
    sidecar_pending INTEGER NOT NULL DEFAULT 0,
    sidecar_error TEXT
);
CREATE TABLE embeddings (
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    weights_sha TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (photo_id, model_id, weights_sha)
);
CREATE TABLE outputs (
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    weights_version TEXT NOT NULL,
    head TEXT NOT NULL,
    value_json TEXT,
    value_blob BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (photo_id, model_id, weights_version, head)
);
CREATE INDEX decisions_pending ON decisions(sidecar_pending) WHERE sidecar_pending = 1;
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("library database {path}: locked by another program (is Keepers open twice?): {message}")]
    Locked { path: PathBuf, message: String },
    #[error("library database {path}: written by a newer Keepers (schema {found}, this one knows {SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("library database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("library database {path}: cannot move the corrupt file aside: {source}")]
    MoveAside { path: PathBuf, source: std::io::Error },
    #[error("library database {path}: cannot create its folder: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
}

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenNote {
    Created,
    Opened,
    /// The old file was corrupt: it is now at `moved_to`, and the database is new and empty.
    Rebuilt {
        moved_to: PathBuf,
        reason: String,
    },
}

/// What [`Library::upsert_photo`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Unchanged,
    /// Size or mtime changed: stored embeddings and outputs were dropped; needs scoring again.
    Modified,
}

/// A photo as the scanner and decoder describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoRecord {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub content_hash: Option<String>,
    pub format: Option<String>,
    /// The JPEG twin of a RAW+JPEG pair.
    pub companion: Option<PathBuf>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub exif: Option<ExifSummary>,
}

/// A stored photo with its decision.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoRow {
    pub id: i64,
    pub record: PhotoRecord,
    pub needs_scoring: bool,
    pub decision: Option<StoredDecision>,
}

/// A decision as stored: the XMP decision, the stars a reject replaced, and whether the sidecar still
/// has to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDecision {
    pub decision: Decision,
    pub prior_stars: Option<u8>,
    pub sidecar_pending: bool,
    pub sidecar_error: Option<String>,
}

/// One model output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub model_id: String,
    pub weights_version: String,
    pub head: String,
    pub json: Option<String>,
    pub blob: Option<Vec<u8>>,
}

/// One embedding as [`Library::put_outputs`] stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub model_id: String,
    pub weights_sha: String,
    pub vector: Vec<f32>,
}

pub struct Library {
    conn: Connection,
    path: PathBuf,
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt))
}

fn is_lock(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn pick_text(p: Option<Pick>) -> Option<&'static str> {
    p.map(|p| match p {
        Pick::Picked => "picked",
        Pick::Rejected => "rejected",
        Pick::Unflagged => "unflagged",
    })
}

fn pick_from(s: Option<String>) -> Option<Pick> {
    match s.as_deref() {
        Some("picked") => Some(Pick::Picked),
        Some("rejected") => Some(Pick::Rejected),
        Some("unflagged") => Some(Pick::Unflagged),
        _ => None,
    }
}

impl Library {
    /// The per-user database path in the platform data folder.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "keepers").map(|d| d.data_dir().join("library.sqlite"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        classify(&self.path, source)
    }

    /// Opens or creates the database at `path` (waiting up to 5 s for another writer).
    pub fn open(path: &Path) -> Result<(Library, OpenNote), DbError> {
        Library::open_with_timeout(path, Duration::from_secs(5))
    }

    /// [`Library::open`] with the time to wait for a lock held by another connection.
    pub fn open_with_timeout(path: &Path, busy: Duration) -> Result<(Library, OpenNote), DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Folder { path: path.to_owned(), source })?;
        }
        let existed = path.exists();
        match Library::try_open(path, busy) {
            Ok(lib) => Ok((lib, if existed { OpenNote::Opened } else { OpenNote::Created })),
            Err(Failure::Corrupt(reason)) => {
                let moved_to = move_aside(path)?;
                let lib = Library::try_open(path, busy).map_err(|f| match f {
                    Failure::Corrupt(reason) => {
                        DbError::Sqlite { path: path.to_owned(), source: rusqlite::Error::InvalidParameterName(reason) }
                    }
                    Failure::Other(e) => e,
                })?;
                Ok((lib, OpenNote::Rebuilt { moved_to, reason }))
            }
            Err(Failure::Other(e)) => Err(e),
        }
    }

    fn try_open(path: &Path, busy: Duration) -> Result<Library, Failure> {
        let fail = |e: rusqlite::Error| if is_corruption(&e) { Failure::Corrupt(e.to_string()) } else { Failure::Other(classify(path, e)) };
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(busy).map_err(fail)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(fail)?;
        if check != "ok" {
            return Err(Failure::Corrupt(format!("quick_check: {check}")));
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(Failure::Other(DbError::NewerSchema { path: path.to_owned(), found: version }));
        }
        if version == 0 {
            let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(fail)?;
            if tables != 0 {
                return Err(Failure::Corrupt("tables without a schema version: not a Keepers library".into()));
            }
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")).map_err(fail)?;
        }
        Ok(Library { conn, path: path.to_owned() })
    }

    /// Adds or updates a photo. Same size and mtime: only `seen_at` (and a missing EXIF summary) change.
    /// Different: the record replaces the old one, embeddings and outputs are dropped.
    pub fn upsert_photo(&mut self, rec: &PhotoRecord) -> Result<(i64, Change), DbError> {
        let tx = self.conn.transaction().map_err(|e| classify(&self.path, e))?;
        let r = upsert_in(&tx, rec).and_then(|r| tx.commit().map(|_| r));
        r.map_err(|e| self.err(e))
    }

    /// [`Library::upsert_photo`] for many photos in one transaction.
    pub fn upsert_photos(&mut self, recs: &[PhotoRecord]) -> Result<Vec<(i64, Change)>, DbError> {
        let tx = self.conn.transaction().map_err(|e| classify(&self.path, e))?;
        let r = recs.iter().map(|rec| upsert_in(&tx, rec)).collect::<Result<Vec<_>, _>>().and_then(|r| tx.commit().map(|_| r));
        r.map_err(|e| self.err(e))
    }

    pub fn photo_id(&self, path: &Path) -> Result<Option<i64>, DbError> {
        self.conn.query_row("SELECT id FROM photos WHERE path = ?1", [path_text(path)], |r| r.get(0)).optional().map_err(|e| self.err(e))
    }

    /// The JPEG twin stored with photo `id` (RAW+JPEG pairs).
    pub fn companion(&self, id: i64) -> Result<Option<PathBuf>, DbError> {
        let c: Option<Option<String>> =
            self.conn.query_row("SELECT companion FROM photos WHERE id = ?1", [id], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
        Ok(c.flatten().map(PathBuf::from))
    }

    /// Every stored photo under folder `root` (recursively), in path order, with decisions.
    pub fn photos_under(&self, root: &Path) -> Result<Vec<PhotoRow>, DbError> {
        let mut lo = path_text(root);
        if !lo.ends_with(std::path::MAIN_SEPARATOR) {
            lo.push(std::path::MAIN_SEPARATOR);
        }
        // Every path starting with `lo` sorts below `lo` with its separator bumped by one.
        let mut hi = lo.clone();
        hi.pop();
        hi.push((std::path::MAIN_SEPARATOR as u8 + 1) as char);
        let mut st = self
            .conn
            .prepare(
                "SELECT p.id, p.path, p.size, p.mtime_ns, p.content_hash, p.format, p.companion, p.width, p.height, p.exif_json,
                        p.needs_scoring, d.rating, d.label, d.pick, d.prior_stars, d.sidecar_pending, d.sidecar_error, d.photo_id
                 FROM photos p LEFT JOIN decisions d ON d.photo_id = p.id
                 WHERE p.path >= ?1 AND p.path < ?2 ORDER BY p.path",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![lo, hi], |r| {
                let exif: Option<String> = r.get(9)?;
                let decision = match r.get::<_, Option<i64>>(17)? {
                    None => None,
                    Some(_) => Some(StoredDecision {
                        decision: Decision {
                            rating: r.get::<_, Option<i64>>(11)?.map(|v| v as i8),
                            label: r.get::<_, Option<String>>(12)?.and_then(|s| ColorLabel::from_xmp_name(&s)),
                            pick: pick_from(r.get(13)?),
                        },
                        prior_stars: r.get::<_, Option<i64>>(14)?.map(|v| v as u8),
                        sidecar_pending: r.get::<_, i64>(15)? != 0,
                        sidecar_error: r.get(16)?,
                    }),
                };
                Ok(PhotoRow {
                    id: r.get(0)?,
                    record: PhotoRecord {
                        path: PathBuf::from(r.get::<_, String>(1)?),
                        size: r.get::<_, i64>(2)? as u64,
                        mtime_ns: r.get(3)?,
                        content_hash: r.get(4)?,
                        format: r.get(5)?,
                        companion: r.get::<_, Option<String>>(6)?.map(PathBuf::from),
                        width: r.get::<_, Option<i64>>(7)?.map(|v| v as u32),
                        height: r.get::<_, Option<i64>>(8)?.map(|v| v as u32),
                        exif: exif.and_then(|j| serde_json::from_str(&j).ok()),
                    },
                    needs_scoring: r.get::<_, i64>(10)? != 0,
                    decision,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Removes photos under `root` that are not in `keep` (files deleted outside Keepers); returns how many.
    pub fn forget_missing(&mut self, root: &Path, keep: &std::collections::HashSet<PathBuf>) -> Result<usize, DbError> {
        let gone: Vec<i64> = self.photos_under(root)?.into_iter().filter(|p| !keep.contains(&p.record.path)).map(|p| p.id).collect();
        let tx = self.conn.transaction().map_err(|e| classify(&self.path, e))?;
        for id in &gone {
            tx.execute("DELETE FROM photos WHERE id = ?1", [id]).map_err(|e| classify(&self.path, e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(gone.len())
    }

    /// Stores the decision for photo `id`, marking its sidecar as pending.
    pub fn set_decision(&mut self, id: i64, decision: &Decision, prior_stars: Option<u8>) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO decisions (photo_id, rating, label, pick, prior_stars, updated_at, sidecar_pending, sidecar_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, NULL)
                 ON CONFLICT(photo_id) DO UPDATE SET rating = ?2, label = ?3, pick = ?4, prior_stars = ?5, updated_at = ?6,
                     sidecar_pending = 1, sidecar_error = NULL",
                params![id, decision.rating, decision.label.map(|l| l.xmp_name()), pick_text(decision.pick), prior_stars, now_s()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a decision read from the photo's own XMP (sidecar or embedded) unless Keepers already has
    /// one for it; nothing to write back. Returns whether it was stored.
    pub fn import_decision(&mut self, id: i64, decision: &Decision) -> Result<bool, DbError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO decisions (photo_id, rating, label, pick, prior_stars, updated_at, sidecar_pending)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, 0)",
                params![id, decision.rating, decision.label.map(|l| l.xmp_name()), pick_text(decision.pick), now_s()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Records the outcome of writing photo `id`'s sidecar: written (`None`) or still pending with an error.
    pub fn set_sidecar_state(&mut self, id: i64, error: Option<&str>) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE decisions SET sidecar_pending = ?2, sidecar_error = ?3 WHERE photo_id = ?1",
                params![id, error.is_some(), error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn decision(&self, id: i64) -> Result<Option<StoredDecision>, DbError> {
        self.conn
            .query_row(
                "SELECT rating, label, pick, prior_stars, sidecar_pending, sidecar_error FROM decisions WHERE photo_id = ?1",
                [id],
                |r| {
                    Ok(StoredDecision {
                        decision: Decision {
                            rating: r.get::<_, Option<i64>>(0)?.map(|v| v as i8),
                            label: r.get::<_, Option<String>>(1)?.and_then(|s| ColorLabel::from_xmp_name(&s)),
                            pick: pick_from(r.get(2)?),
                        },
                        prior_stars: r.get::<_, Option<i64>>(3)?.map(|v| v as u8),
                        sidecar_pending: r.get::<_, i64>(4)? != 0,
                        sidecar_error: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// (photo id, path, companion) of every decision whose sidecar is still to be written.
    pub fn pending_sidecars(&self) -> Result<Vec<(i64, PathBuf, Option<PathBuf>)>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT p.id, p.path, p.companion FROM decisions d JOIN photos p ON p.id = d.photo_id WHERE d.sidecar_pending = 1 ORDER BY p.path")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, PathBuf::from(r.get::<_, String>(1)?), r.get::<_, Option<String>>(2)?.map(PathBuf::from))))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stores an embedding (f32, little-endian) for photo `id` under a model id and weights sha256.
    pub fn put_embedding(&mut self, id: i64, model_id: &str, weights_sha: &str, v: &[f32]) -> Result<(), DbError> {
        let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO embeddings (photo_id, model_id, weights_sha, dim, vector) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, model_id, weights_sha, v.len() as i64, blob],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn embedding(&self, id: i64, model_id: &str, weights_sha: &str) -> Result<Option<Vec<f32>>, DbError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT vector FROM embeddings WHERE photo_id = ?1 AND model_id = ?2 AND weights_sha = ?3",
                params![id, model_id, weights_sha],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(blob.map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
    }

    /// Stores a model output and clears the photo's needs-scoring mark.
    pub fn put_output(&mut self, id: i64, out: &Output) -> Result<(), DbError> {
        let tx = self.conn.transaction().map_err(|e| classify(&self.path, e))?;
        let r = tx
            .execute(
                "INSERT OR REPLACE INTO outputs (photo_id, model_id, weights_version, head, value_json, value_blob, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, out.model_id, out.weights_version, out.head, out.json, out.blob, now_s()],
            )
            .and_then(|_| tx.execute("UPDATE photos SET needs_scoring = 0 WHERE id = ?1", [id]))
            .and_then(|_| tx.commit());
        r.map_err(|e| self.err(e))
    }

    /// Stores all of photo `id`'s outputs and embeddings and clears its needs-scoring mark, in one
    /// transaction: afterwards either all of them are stored, or none are and the mark is unchanged.
    pub fn put_outputs(&mut self, id: i64, outputs: &[Output], embeddings: &[Embedding]) -> Result<(), DbError> {
        let tx = self.conn.transaction().map_err(|e| classify(&self.path, e))?;
        let r = (|| {
            let now = now_s();
            let mut out_st = tx.prepare_cached(
                "INSERT OR REPLACE INTO outputs (photo_id, model_id, weights_version, head, value_json, value_blob, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for o in outputs {
                out_st.execute(params![id, o.model_id, o.weights_version, o.head, o.json, o.blob, now])?;
            }
            drop(out_st);
            let mut emb_st = tx.prepare_cached(
                "INSERT OR REPLACE INTO embeddings (photo_id, model_id, weights_sha, dim, vector) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in embeddings {
                let blob: Vec<u8> = e.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                emb_st.execute(params![id, e.model_id, e.weights_sha, e.vector.len() as i64, blob])?;
            }
            drop(emb_st);
            let n = tx.execute("UPDATE photos SET needs_scoring = 0 WHERE id = ?1", [id])?;
            if n == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            Ok(())
        })()
        .and_then(|_| tx.commit());
        r.map_err(|e| self.err(e))
    }

    /// Whether photo `id` still needs scoring; `None` when there is no such photo.
    pub fn needs_scoring(&self, id: i64) -> Result<Option<bool>, DbError> {
        self.conn
            .query_row("SELECT needs_scoring FROM photos WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
            .optional()
            .map(|v| v.map(|v| v != 0))
            .map_err(|e| self.err(e))
    }

    /// [`Library::outputs`] for many photos: photo id -> its outputs (photos without any are absent).
    pub fn outputs_of(&self, ids: &[i64], model_id: &str, weights_version: &str) -> Result<HashMap<i64, Vec<Output>>, DbError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT model_id, weights_version, head, value_json, value_blob FROM outputs
                 WHERE photo_id = ?1 AND model_id = ?2 AND weights_version = ?3 ORDER BY head",
            )
            .map_err(|e| self.err(e))?;
        let mut all = HashMap::new();
        for &id in ids {
            let rows = st
                .query_map(params![id, model_id, weights_version], |r| {
                    Ok(Output { model_id: r.get(0)?, weights_version: r.get(1)?, head: r.get(2)?, json: r.get(3)?, blob: r.get(4)? })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            if !rows.is_empty() {
                all.insert(id, rows);
            }
        }
        Ok(all)
    }

    /// [`Library::embedding`] for many photos: photo id -> vector (photos without one are absent).
    pub fn embeddings_of(&self, ids: &[i64], model_id: &str, weights_sha: &str) -> Result<HashMap<i64, Vec<f32>>, DbError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT vector FROM embeddings WHERE photo_id = ?1 AND model_id = ?2 AND weights_sha = ?3")
            .map_err(|e| self.err(e))?;
        let mut all = HashMap::new();
        for &id in ids {
            let blob: Option<Vec<u8>> =
                st.query_row(params![id, model_id, weights_sha], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
            if let Some(b) = blob {
                all.insert(id, b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect());
            }
        }
        Ok(all)
    }

    /// Which of `ids` have an embedding under this model id and weights sha (without reading them).
    pub fn have_embeddings(&self, ids: &[i64], model_id: &str, weights_sha: &str) -> Result<std::collections::HashSet<i64>, DbError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM embeddings WHERE photo_id = ?1 AND model_id = ?2 AND weights_sha = ?3")
            .map_err(|e| self.err(e))?;
        let mut have = std::collections::HashSet::new();
        for &id in ids {
            if st.exists(params![id, model_id, weights_sha]).map_err(|e| self.err(e))? {
                have.insert(id);
            }
        }
        Ok(have)
    }

    /// Outputs of photo `id` for one model and weights version (all heads).
    pub fn outputs(&self, id: i64, model_id: &str, weights_version: &str) -> Result<Vec<Output>, DbError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT model_id, weights_version, head, value_json, value_blob FROM outputs
                 WHERE photo_id = ?1 AND model_id = ?2 AND weights_version = ?3 ORDER BY head",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![id, model_id, weights_version], |r| {
                Ok(Output { model_id: r.get(0)?, weights_version: r.get(1)?, head: r.get(2)?, json: r.get(3)?, blob: r.get(4)? })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

enum Failure {
    Corrupt(String),
    Other(DbError),
}

fn classify(path: &Path, e: rusqlite::Error) -> DbError {
    if is_lock(&e) {
        DbError::Locked { path: path.to_owned(), message: e.to_string() }
    } else {
        DbError::Sqlite { path: path.to_owned(), source: e }
    }
}

fn move_aside(path: &Path) -> Result<PathBuf, DbError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{}", now_s()));
    let mut to = path.with_file_name(&name);
    let mut n = 1;
    while to.exists() {
        to = path.with_file_name(format!("{}-{n}", name.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(path, &to).map_err(|source| DbError::MoveAside { path: path.to_owned(), source })?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut dest = to.as_os_str().to_os_string();
            dest.push(suffix);
            let _ = std::fs::rename(&side, PathBuf::from(dest));
        }
    }
    Ok(to)
}

fn upsert_in(tx: &rusqlite::Transaction, rec: &PhotoRecord) -> rusqlite::Result<(i64, Change)> {
    let path = path_text(&rec.path);
    let exif_json = rec.exif.as_ref().map(|e| serde_json::to_string(e).expect("plain data serialises"));
    let capture_ms = rec.exif.as_ref().and_then(|e| e.capture_ms());
    let camera = rec.exif.as_ref().and_then(|e| e.camera_id());
    let companion = rec.companion.as_deref().map(path_text);
    let old: Option<(i64, i64, i64)> = tx
        .query_row("SELECT id, size, mtime_ns FROM photos WHERE path = ?1", [&path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match old {
        None => {
            tx.execute(
                "INSERT INTO photos (path, size, mtime_ns, content_hash, format, companion, width, height, capture_ms, camera, exif_json, needs_scoring, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12)",
                params![path, rec.size as i64, rec.mtime_ns, rec.content_hash, rec.format, companion, rec.width, rec.height, capture_ms, camera, exif_json, now_s()],
            )?;
            Ok((tx.last_insert_rowid(), Change::New))
        }
        Some((id, size, mtime)) if size == rec.size as i64 && mtime == rec.mtime_ns => {
            tx.execute(
                "UPDATE photos SET seen_at = ?2, companion = ?3,
                     exif_json = COALESCE(exif_json, ?4), capture_ms = COALESCE(capture_ms, ?5), camera = COALESCE(camera, ?6),
                     width = COALESCE(?7, width), height = COALESCE(?8, height)
                 WHERE id = ?1",
                params![id, now_s(), companion, exif_json, capture_ms, camera, rec.width, rec.height],
            )?;
            Ok((id, Change::Unchanged))
        }
        Some((id, _, _)) => {
            tx.execute(
                "UPDATE photos SET size = ?2, mtime_ns = ?3, content_hash = ?4, format = ?5, companion = ?6, width = ?7, height = ?8,
                     capture_ms = ?9, camera = ?10, exif_json = ?11, needs_scoring = 1, seen_at = ?12 WHERE id = ?1",
                params![
                    id,
                    rec.size as i64,
                    rec.mtime_ns,
                    rec.content_hash,
                    rec.format,
                    companion,
                    rec.width,
                    rec.height,
                    capture_ms,
                    camera,
                    exif_json,
                    now_s()
                ],
            )?;
            tx.execute("DELETE FROM embeddings WHERE photo_id = ?1", [id])?;
            tx.execute("DELETE FROM outputs WHERE photo_id = ?1", [id])?;
            Ok((id, Change::Modified))
        }
    }
}
