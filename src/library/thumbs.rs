//! Thumbnail cache on disk: reduced-size decodes ([`decode::Size::Fit`], DCT-scaled for JPEG) stored as
//! JPEG files under the platform cache directory (`directories`: e.g. `~/.cache/keepers/thumbnails` on
//! Linux), or any folder the caller gives (tests, portable installs).
//!
//! - Key: SHA-256 of the photo's path, byte size, modification time (ns) and the thumbnail side, so an
//!   edited or replaced photo gets a fresh thumbnail; file `<2 hex>/<64 hex>.jpg`.
//! - Size limit: [`DEFAULT_MAX_BYTES`] (512 MiB) unless told otherwise. When the cache grows past it, the
//!   least recently used thumbnails (file modification time, refreshed on every hit) are deleted until
//!   it is under 80 % of the limit.
//! - Writes are temp file + rename, so a reader never sees half a thumbnail; a failure to write the
//!   cache is reported in [`Thumb::cache_error`] and the thumbnail is still returned.
//!
//! Touches only files inside its own cache folder; reads photos.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use image::RgbImage;
use sha2::{Digest, Sha256};

use super::decode::{self, DecodeError, Size};

/// Default cache size limit in bytes.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;
/// Default thumbnail long side in pixels.
pub const DEFAULT_SIDE: u32 = 320;
/// JPEG quality of cached thumbnails.
const QUALITY: i32 = 88;
/// Bumped when the thumbnail recipe changes, so old entries are never reused.
const RECIPE: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("thumbnail cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}

/// Which version of which photo a thumbnail is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbKey {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub side: u32,
}

impl ThumbKey {
    /// Key for `path` as it is on disk now.
    pub fn for_file(path: &Path, side: u32) -> std::io::Result<ThumbKey> {
        let m = std::fs::metadata(path)?;
        let mtime_ns = m.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64);
        Ok(ThumbKey { path: path.to_owned(), size: m.len(), mtime_ns, side })
    }

    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(RECIPE.to_le_bytes());
        h.update(self.path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(self.size.to_le_bytes());
        h.update(self.mtime_ns.to_le_bytes());
        h.update(self.side.to_le_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Thumb {
    pub image: RgbImage,
    /// Served from the disk cache (no decode of the photo).
    pub from_cache: bool,
    /// Set when the thumbnail could not be stored (the thumbnail itself is fine).
    pub cache_error: Option<String>,
    /// A damaged photo that only partly decoded.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictReport {
    pub removed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

pub struct ThumbCache {
    dir: PathBuf,
    max_bytes: u64,
    total: AtomicU64,
    evicting: Mutex<()>,
    tmp_seq: AtomicU64,
}

impl ThumbCache {
    /// The platform cache folder for thumbnails, if the platform has one.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "keepers").map(|d| d.cache_dir().join("thumbnails"))
    }

    /// Opens (creating it) a cache in `dir` limited to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<ThumbCache, ThumbError> {
        std::fs::create_dir_all(dir).map_err(|source| ThumbError::Cache { path: dir.to_owned(), source })?;
        let c =
            ThumbCache { dir: dir.to_owned(), max_bytes, total: AtomicU64::new(0), evicting: Mutex::new(()), tmp_seq: AtomicU64::new(0) };
        let total = c.entries().iter().map(|e| e.2).sum();
        c.total.store(total, Ordering::Relaxed);
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of thumbnails on disk, as this handle counts them.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn file_for(&self, key: &ThumbKey) -> PathBuf {
        let h = key.hash();
        self.dir.join(&h[..2]).join(format!("{h}.jpg"))
    }

    /// (path, mtime, size) of every cached thumbnail.
    fn entries(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return v };
        for sub in rd.flatten() {
            let Ok(files) = std::fs::read_dir(sub.path()) else { continue };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "jpg")
                    && let Ok(m) = f.metadata()
                {
                    v.push((p, m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
                }
            }
        }
        v
    }

    /// The cached thumbnail for `key`, if present and readable (a damaged entry is deleted).
    pub fn get(&self, key: &ThumbKey) -> Option<RgbImage> {
        let file = self.file_for(key);
        let data = std::fs::read(&file).ok()?;
        match decode::decode_jpeg(&file, &data, Size::Full, None) {
            Ok(d) if d.warning.is_none() => {
                // Refresh the LRU clock.
                if let Ok(f) = std::fs::File::options().write(true).open(&file) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Some(d.image)
            }
            _ => {
                let _ = std::fs::remove_file(&file);
                None
            }
        }
    }

    /// The thumbnail of `key.path` with long side `key.side`: from the cache, or decoded (reduced-size)
    /// and stored.
    pub fn get_or_make(&self, key: &ThumbKey) -> Result<Thumb, ThumbError> {
        if let Some(image) = self.get(key) {
            return Ok(Thumb { image, from_cache: true, cache_error: None, warning: None });
        }
        let d = decode::decode_path(&key.path, Size::Fit(key.side))?;
        let cache_error = if d.warning.is_none() { self.put(key, &d.image).err().map(|e| e.to_string()) } else { None };
        Ok(Thumb { image: d.image, from_cache: false, cache_error, warning: d.warning })
    }

    /// Stores a thumbnail (temp file + rename), then evicts if over the limit.
    pub fn put(&self, key: &ThumbKey, image: &RgbImage) -> Result<(), ThumbError> {
        let file = self.file_for(key);
        let err = |source| ThumbError::Cache { path: file.clone(), source };
        let jpeg = turbojpeg::compress(
            turbojpeg::Image {
                pixels: image.as_raw().as_slice(),
                width: image.width() as usize,
                pitch: image.width() as usize * 3,
                height: image.height() as usize,
                format: turbojpeg::PixelFormat::RGB,
            },
            QUALITY,
            turbojpeg::Subsamp::Sub2x2,
        )
        .map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let parent = file.parent().expect("cache files live in a sub-folder");
        std::fs::create_dir_all(parent).map_err(err)?;
        let tmp = parent.join(format!(".{}-{}.tmp", std::process::id(), self.tmp_seq.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&tmp, &jpeg[..]).map_err(err)?;
        // The LRU clock: the same precise clock as `get` uses (new files get the kernel's coarse one).
        if let Ok(f) = std::fs::File::options().write(true).open(&tmp) {
            let _ = f.set_modified(SystemTime::now());
        }
        if let Err(e) = std::fs::rename(&tmp, &file) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        let total = self.total.fetch_add(jpeg.len() as u64, Ordering::Relaxed) + jpeg.len() as u64;
        if total > self.max_bytes {
            self.evict();
        }
        Ok(())
    }

    /// Deletes least recently used thumbnails until the cache is under 80 % of its limit (no-op when
    /// already under the limit).
    pub fn evict(&self) -> EvictReport {
        let _guard = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries();
        let before: u64 = entries.iter().map(|e| e.2).sum();
        let mut total = before;
        let mut removed = 0;
        if before > self.max_bytes {
            entries.sort_by_key(|e| e.1);
            let target = self.max_bytes / 10 * 8;
            for (p, _, len) in entries {
                if total <= target {
                    break;
                }
                if std::fs::remove_file(&p).is_ok() {
                    total -= len;
                    removed += 1;
                }
            }
        }
        self.total.store(total, Ordering::Relaxed);
        EvictReport { removed, bytes_before: before, bytes_after: total }
    }
}
