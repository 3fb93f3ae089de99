//! Album and file handling: everything that reads the photographer's files.
//! Nothing here writes to an original.
//!
//! - [`formats`]: format from a file's first bytes; [`scan`]: recursive album scan, RAW+JPEG pairs.
//! - [`decode`]: upright RGB, size limits, DCT-scaled JPEG for thumbnails; [`raw`]: RAW embedded previews;
//!   [`tiff`]: the IFD reader both use.
//! - [`exif`]: capture time, camera serial, lens and exposure summary.
//! - [`thumbs`]: on-disk thumbnail cache with a size limit.
//! - [`db`]: the library database (SQLite): photos, decisions, embeddings, model outputs.
//! - [`xmp`]: ratings, labels and pick/reject in XMP sidecars (read, merge-write) and embedded JPEG XMP (read).
//! - [`burst`]: bursts and near-duplicates, best frame per group.
//! - [`album`]: the album handle the app and trainer use (channels, cancellation).

pub mod album;
pub mod burst;
pub mod db;
pub mod decode;
pub mod exif;
pub mod formats;
pub mod raw;
pub mod scan;
pub mod thumbs;
pub mod tiff;
pub mod xmp;
