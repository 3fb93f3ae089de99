//! What the app remembers between runs (saved settings), kept apart from runtime state: recent
//! albums, culling preferences, the grid's sort and filter, panel toggles.
//!
//! Stored as JSON in the platform config folder (`settings.json`); the window's size and position are
//! kept by eframe in the same folder. A settings file that cannot be read is reported and replaced by
//! defaults, never fatal; writes go to a temporary file first and are renamed into place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{Filter, SortKey};

pub const MAX_RECENT: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Most recent first.
    pub recent: Vec<PathBuf>,
    /// Move to the next photo after pick / reject / stars.
    pub auto_advance: bool,
    /// Grid cell size in points.
    pub thumb_size: f32,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: Filter,
    pub collapse_bursts: bool,
    pub show_heatmap: bool,
    pub show_side_panel: bool,
    pub show_filmstrip: bool,
    /// How many covers "pick covers" suggests.
    pub covers: usize,
    /// File (in the profile store) of the active taste profile.
    pub taste_profile: Option<String>,
    /// The taste panel's training preferences.
    pub taste: super::taste::TastePrefs,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recent: Vec::new(),
            auto_advance: false,
            thumb_size: 180.0,
            sort: SortKey::CaptureTime,
            descending: false,
            filter: Filter::default(),
            collapse_bursts: true,
            show_heatmap: false,
            show_side_panel: true,
            show_filmstrip: true,
            covers: 3,
            taste_profile: None,
            taste: Default::default(),
        }
    }
}

impl Settings {
    /// The platform config folder (e.g. `~/.config/keepers`).
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "keepers").map(|d| d.config_dir().to_owned())
    }

    /// Reads `path`; a missing file gives defaults, an unreadable one gives defaults and the reason.
    pub fn load(path: &Path) -> (Settings, Option<String>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(s) => (s, None),
                Err(e) => (Settings::default(), Some(format!("{}: settings not readable ({e}); using defaults", path.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (Settings::default(), Some(format!("{}: {e}; using default settings", path.display()))),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("plain data serialises"))?;
        std::fs::rename(&tmp, path)
    }

    /// Puts `album` first in the recent list (no duplicates, at most [`MAX_RECENT`]).
    pub fn remember(&mut self, album: &Path) {
        self.recent.retain(|p| p != album);
        self.recent.insert(0, album.to_owned());
        self.recent.truncate(MAX_RECENT);
    }
}
