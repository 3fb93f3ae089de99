//! Album and file handling: everything that reads the photographer's files.
//! Nothing here writes to an original.
//!
//! - [`xmp`]: ratings, labels and pick/reject in XMP sidecars (read, merge-write) and embedded JPEG XMP (read).

pub mod decode;
pub mod xmp;
