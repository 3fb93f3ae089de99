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
//!
//! Touches: only its own folder, and the file a user exports to or imports from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::taste::{TasteError, TasteProfile};

/// File extension of a profile.
pub const EXTENSION: &str = "keepers-taste";

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
