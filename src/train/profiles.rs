//! The store of named taste profiles (issue 8): one file per profile
//! ([`TasteProfile::save`]'s format) in the user's data folder (`<data>/keepers/profiles/`), listed,
//! renamed, deleted, exported and imported as single files.
//!
//! - Files are `<slug>.keepers-taste`; the name shown is the one inside the file, so renaming
//!   rewrites the file (atomically) and keeps its file name, which is the profile's identity in the
//!   settings ("active profile").
//! - A file that cannot be read is reported by name in [`Listing::problems`] and ignored; the other
//!   profiles are listed. Temporary files of an interrupted save (`.*.tmp`) are never listed.
//! - Import validates the file first (a corrupt file is refused with the reason), then copies it
//!   in under a name not yet taken ("Name (2)"). Export writes the profile's file as it is.
//! - Both kinds of profile live here and are handled alike: the quick grid-head profiles and the
//!   procedure profiles of the taste panel's advanced mode (a paper procedure's checkpoint in the
//!   file, [`super::taste::ProcedureCheckpoint`]). A procedure run's working folder (`.runs/`) is
//!   hidden and never listed.
//! - A run folder a crash left behind (`.runs/run-*`) is removed by
//!   [`ProfileStore::remove_stale_runs`] (the taste service calls it when it starts) once nothing in
//!   it has been written for [`STALE_RUN_AGE`]: a live run rewrites its checkpoints every epoch.
//!
//! Touches: only its own folder, and the file a user exports to or imports from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::taste::{TasteError, TasteProfile};

/// File extension of a profile.
pub const EXTENSION: &str = "keepers-taste";

/// The hidden folder of procedure runs inside the store.
pub const RUNS_DIR: &str = ".runs";

/// How long a run folder may go without a write before it counts as a crash's leftover.
pub const STALE_RUN_AGE: Duration = Duration::from_secs(6 * 3600);

/// The newest modification time of the files under `dir` (recursively, links not followed); the
/// folder's own when it holds no file.
fn newest_write(dir: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
            if m.is_dir() {
                walk(&e.path(), newest);
            } else if let Ok(t) = m.modified() {
                *newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    let mut newest = None;
    walk(dir, &mut newest);
    newest.or_else(|| std::fs::symlink_metadata(dir).and_then(|m| m.modified()).ok())
}

/// A profile found in the store.
#[derive(Debug, Clone)]
pub struct Stored {
    /// File name in the store (the profile's identity).
    pub file: String,
    pub profile: Arc<TasteProfile>,
}

/// What [`ProfileStore::list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// By creation time, oldest first.
    pub profiles: Vec<Stored>,
    /// Files that are not readable profiles, with the reason; they are ignored.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ProfileStore {
    dir: PathBuf,
}

/// A file-name stem from a profile name: letters and digits kept, the rest `-`.
fn slug(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    if s.is_empty() { "profile".into() } else { s.chars().take(60).collect() }
}

impl ProfileStore {
    pub fn new(dir: impl Into<PathBuf>) -> ProfileStore {
        ProfileStore { dir: dir.into() }
    }

    /// `<platform data folder>/profiles`.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "keepers").map(|d| d.data_dir().join("profiles"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Removes the procedure run folders (`.runs/run-*`) in which no file has been written for
    /// more than `max_age` (see [`STALE_RUN_AGE`]); returns the ones removed, and the problems
    /// (`folder: reason`) of those that could not be. Nothing outside `.runs/` is touched; a link
    /// there is not followed.
    pub fn remove_stale_runs(&self, max_age: Duration) -> (Vec<PathBuf>, Vec<String>) {
        let runs = self.dir.join(RUNS_DIR);
        let (mut removed, mut problems) = (Vec::new(), Vec::new());
        let Ok(entries) = std::fs::read_dir(&runs) else { return (removed, problems) };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let path = e.path();
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !is_dir || !e.file_name().to_string_lossy().starts_with("run-") {
                continue;
            }
            let stale = newest_write(&path).is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > max_age));
            if stale {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => removed.push(path),
                    Err(e) => problems.push(format!("{}: cannot remove a stale run folder: {e}", path.display())),
                }
            }
        }
        // `.runs` itself when nothing else is in it (fails, harmlessly, otherwise).
        let _ = std::fs::remove_dir(&runs);
        (removed, problems)
    }

    /// Every readable profile; unreadable files are named in `problems`. A missing folder is empty.
    pub fn list(&self) -> Listing {
        let mut out = Listing::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                out.problems.push(format!("{}: cannot list taste profiles: {e}", self.dir.display()));
                return out;
            }
        };
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n.ends_with(&format!(".{EXTENSION}")))
            .collect();
        files.sort();
        for file in files {
            match TasteProfile::load(&self.dir.join(&file)) {
                Ok(p) => out.profiles.push(Stored { file, profile: Arc::new(p) }),
                Err(e) => out.problems.push(format!("{e} (profile ignored)")),
            }
        }
        out.profiles.sort_by(|a, b| a.profile.created.cmp(&b.profile.created).then(a.file.cmp(&b.file)));
        out
    }

    /// `name`, or `name (2)`, `name (3)`... whichever no listed profile has.
    fn free_name(&self, name: &str) -> String {
        let taken: Vec<String> = self.list().profiles.iter().map(|s| s.profile.name.clone()).collect();
        let mut candidate = name.to_string();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{name} ({n})");
            n += 1;
        }
        candidate
    }

    /// Saves `profile` as a new file (its name made unique among the store's); returns the file
    /// name and the name it was saved under.
    pub fn save_new(&self, profile: &TasteProfile) -> Result<(String, String), TasteError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| TasteError::Io { path: self.dir.clone(), source })?;
        let name = self.free_name(&profile.name);
        let stem = slug(&name);
        let mut file = format!("{stem}.{EXTENSION}");
        let mut n = 2;
        while self.dir.join(&file).exists() {
            file = format!("{stem}-{n}.{EXTENSION}");
            n += 1;
        }
        let mut p = profile.clone();
        p.name = name.clone();
        p.save(&self.dir.join(&file))?;
        Ok((file, name))
    }

    /// Gives the profile in `file` a new name (made unique), rewriting its file atomically.
    pub fn rename(&self, file: &str, new_name: &str) -> Result<String, TasteError> {
        let path = self.dir.join(file);
        let mut p = TasteProfile::load(&path)?;
        let trimmed = new_name.trim();
        if trimmed.is_empty() {
            return Err(TasteError::Input("a profile needs a name".into()));
        }
        if p.name == trimmed {
            return Ok(p.name);
        }
        p.name = self.free_name(trimmed);
        p.save(&path)?;
        Ok(p.name)
    }

    pub fn delete(&self, file: &str) -> Result<(), TasteError> {
        let path = self.dir.join(file);
        std::fs::remove_file(&path).map_err(|source| TasteError::Io { path, source })
    }

    /// Writes the profile in `file` to `dest` (one file, the store's format).
    pub fn export(&self, file: &str, dest: &Path) -> Result<(), TasteError> {
        let p = TasteProfile::load(&self.dir.join(file))?;
        p.save(dest)
    }

    /// Adds the profile file at `src` to the store (validated first; its name made unique).
    /// Returns the new file name and the profile's name in the store.
    pub fn import(&self, src: &Path) -> Result<(String, String), TasteError> {
        let p = TasteProfile::load(src)?;
        self.save_new(&p)
    }
}
