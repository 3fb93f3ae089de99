//! Album and file handling: everything that reads the photographer's files.
//! Nothing here writes to an original.

pub mod decode;
