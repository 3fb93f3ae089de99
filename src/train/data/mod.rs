//! Datasets for training and evaluation: a list of [`Sample`]s (image path + [`Target`]) with
//! the names of their classes, styles and themes, and a fingerprint of the rows.
//!
//! Sources: [`ava`] (the AVA files as published: `AVA.txt`, the style lists, `challenges.txt`,
//! `tags.txt`; Murray et al., CVPR 2012, with paper 002's delta margin for binary labels) and
//! [`csv`] (any CSV with a path column and some of label / score / histogram / std / styles /
//! theme; e.g. the LIVE Challenge MOS file in `../shared/data/livec/labels.csv`) and [`album`]
//! (an album's own picks, rejects and stars, from the library database or XMP).
//!
//! Images are not opened here: a missing, unreadable or corrupt image is found by the input
//! pipeline (`train::pipeline`), skipped, and named in its `SkipReport`.

pub mod album;
pub mod ava;
pub mod csv;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors reading a dataset: each names the file (and the line where there is one).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {problem}")]
    Parse { path: PathBuf, line: usize, problem: String },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl DataError {
    pub(crate) fn parse(path: &Path, line: usize, problem: impl Into<String>) -> Self {
        DataError::Parse { path: path.to_owned(), line, problem: problem.into() }
    }

    pub(crate) fn invalid(path: &Path, problem: impl Into<String>) -> Self {
        DataError::Invalid { path: path.to_owned(), problem: problem.into() }
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_owned(), source })
}

/// What is known about one image. Every field is optional: a dataset carries what its source has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Class index: 0 = low / 1 = high aesthetics for AVA's binary task (`None` inside the delta
    /// margin), or an index into [`Dataset::class_names`].
    pub label: Option<usize>,
    /// Mean score (AVA: 1-10 mean of the votes; LIVE Challenge: MOS 0-100).
    pub score: Option<f64>,
    /// Normalised K-bin score distribution (sums to 1; AVA: K = 10, bins = scores 1..10).
    pub histogram: Option<Vec<f64>>,
    /// Standard deviation of the ratings (given, or of the histogram).
    pub std: Option<f64>,
    /// Multi-hot over [`Dataset::style_names`].
    pub styles: Option<Vec<bool>>,
    /// Index into [`Dataset::theme_names`] (AVA: the challenge).
    pub theme: Option<usize>,
    /// AVA semantic tag ids (from `tags.txt`; 0 = none is dropped).
    pub tags: Option<Vec<u32>>,
}

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Where the image is expected (resolved against the dataset's image folder).
    pub path: PathBuf,
    /// The row's identity as the source writes it (AVA image id, the CSV's path cell); this,
    /// not the resolved path, enters the fingerprint.
    pub key: String,
    pub target: Target,
}

/// A list of samples with the names their indices refer to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Where it came from (file or folder), for messages.
    pub source: String,
    pub samples: Vec<Sample>,
    pub class_names: Vec<String>,
    pub style_names: Vec<String>,
    pub theme_names: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// sha256 (hex) of the rows: each sample's key and target as JSON, one per line, in order,
    /// followed by the name lists. Independent of where the images are on disk, so a
    /// checkpoint can tell whether it was trained on the same rows.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.samples {
            h.update(serde_json::to_string(&(&s.key, &s.target)).expect("targets serialise").as_bytes());
            h.update(b"\n");
        }
        h.update(serde_json::to_string(&(&self.class_names, &self.style_names, &self.theme_names)).expect("names serialise").as_bytes());
        format!("{:x}", h.finalize())
    }

    /// The samples for which `keep` holds (names unchanged).
    pub fn filter(&self, keep: impl Fn(&Sample) -> bool) -> Dataset {
        Dataset { samples: self.samples.iter().filter(|s| keep(s)).cloned().collect(), ..self.clone_names() }
    }

    /// The samples whose key is in `keys` (e.g. an official split list), in this dataset's order.
    pub fn restrict_to(&self, keys: &[String]) -> Dataset {
        let set: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
        self.filter(|s| set.contains(s.key.as_str()))
    }

    /// Deterministic split into `(train, validation)`: a seeded shuffle, then the first
    /// `round(len * val_fraction)` go to validation. Both keep this dataset's order.
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let n = self.samples.len();
        let n_val = ((n as f64) * val_fraction.clamp(0.0, 1.0)).round() as usize;
        let perm = crate::train::pipeline::permutation(n, &mut crate::rng::SeededRng::new(seed));
        let mut is_val = vec![false; n];
        for &i in &perm[..n_val] {
            is_val[i] = true;
        }
        let pick = |v: bool| Dataset {
            samples: self.samples.iter().zip(&is_val).filter(|(_, x)| **x == v).map(|(s, _)| s.clone()).collect(),
            ..self.clone_names()
        };
        (pick(false), pick(true))
    }

    fn clone_names(&self) -> Dataset {
        Dataset {
            source: self.source.clone(),
            samples: Vec::new(),
            class_names: self.class_names.clone(),
            style_names: self.style_names.clone(),
            theme_names: self.theme_names.clone(),
        }
    }
}

/// Mean of scores `1..=K` under the (unnormalised) histogram `h`; `None` if it has no votes.
pub fn histogram_mean_std(h: &[f64]) -> Option<(f64, f64)> {
    let n: f64 = h.iter().sum();
    if n <= 0.0 {
        return None;
    }
    let mean = h.iter().enumerate().map(|(k, c)| (k + 1) as f64 * c).sum::<f64>() / n;
    let var = h.iter().enumerate().map(|(k, c)| ((k + 1) as f64 - mean).powi(2) * c).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}
