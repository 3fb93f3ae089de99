//! The AVA dataset as published (Murray, Marchesotti & Perronnin, CVPR 2012), read from its own
//! files; the images themselves are the user's (`images/<id>.jpg`).
//!
//! Files and formats (the `AVA_dataset` folder):
//! - `AVA.txt`: one image per line, space-separated: index, image id, the vote counts for
//!   scores 1..10, semantic tag id 1, tag id 2 (0 = none), challenge id.
//! - `tags.txt`, `challenges.txt`, `style_image_lists/styles.txt`: `id name...` per line.
//! - `style_image_lists/train.jpgl` + `train.lab`: image ids and their single style (1..14);
//!   `test.jpgl` + `test.multilab`: image ids and 14 space-separated 0/1 flags.
//! - `aesthetics_image_lists/*.jpgl`: image ids of official subsets ([`read_jpgl`] +
//!   [`Dataset::restrict_to`](super::Dataset::restrict_to)).
//!
//! Targets ([`aesthetics`]): the normalised vote histogram, its mean (the score) and standard
//! deviation, the binary label with paper 002's margin `delta` (following [10] = Murray et al.:
//! high = 1 when `mean >= 5 + delta`, low = 0 when `mean < 5 - delta`, no label in between;
//! paper 002 reports `delta = 0` and `delta = 1`), the theme = the challenge (paper 003), and the
//! semantic tags (for content-based adaptation, paper 002's ADAPT).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Sample, Target, histogram_mean_std, read_text};

/// One line of `AVA.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvaRow {
    pub index: u64,
    pub image_id: u64,
    /// Votes for scores 1..10.
    pub votes: [u32; 10],
    /// Semantic tag ids (0 = none).
    pub tags: [u32; 2],
    pub challenge: u32,
}

fn parse_num<T: std::str::FromStr>(path: &Path, line: usize, what: &str, s: &str) -> Result<T, DataError> {
    s.parse().map_err(|_| DataError::parse(path, line, format!("{what} {s:?} is not a non-negative integer")))
}

/// Parses `AVA.txt` (blank lines ignored).
pub fn read_ava_txt(path: &Path) -> Result<Vec<AvaRow>, DataError> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let ln = i + 1;
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 15 {
            return Err(DataError::parse(
                path,
                ln,
                format!("expected 15 fields (index, id, 10 votes, 2 tags, challenge), found {}", f.len()),
            ));
        }
        let mut votes = [0u32; 10];
        for (k, v) in votes.iter_mut().enumerate() {
            *v = parse_num(path, ln, &format!("vote count for score {}", k + 1), f[2 + k])?;
        }
        rows.push(AvaRow {
            index: parse_num(path, ln, "index", f[0])?,
            image_id: parse_num(path, ln, "image id", f[1])?,
            votes,
            tags: [parse_num(path, ln, "tag id", f[12])?, parse_num(path, ln, "tag id", f[13])?],
            challenge: parse_num(path, ln, "challenge id", f[14])?,
        });
    }
    Ok(rows)
}

/// Parses an `id name...` list (`tags.txt`, `challenges.txt`, `styles.txt`), in file order.
pub fn read_id_names(path: &Path) -> Result<Vec<(u32, String)>, DataError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let (id, name) = l.split_once(char::is_whitespace).ok_or_else(|| DataError::parse(path, i + 1, "expected `id name`"))?;
        out.push((parse_num(path, i + 1, "id", id)?, name.trim().to_string()));
    }
    Ok(out)
}

/// Parses a `.jpgl` list of image ids.
pub fn read_jpgl(path: &Path) -> Result<Vec<u64>, DataError> {
    let text = read_text(path)?;
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| parse_num(path, i + 1, "image id", l.trim())).collect()
}

/// `train.jpgl` + `train.lab`: `(image id, style index 0..14)`.
pub fn read_style_train(jpgl: &Path, lab: &Path) -> Result<Vec<(u64, usize)>, DataError> {
    let ids = read_jpgl(jpgl)?;
    let labs = read_jpgl(lab)?;
    if ids.len() != labs.len() {
        return Err(DataError::invalid(lab, format!("{} labels for {} images in {}", labs.len(), ids.len(), jpgl.display())));
    }
    ids.into_iter()
        .zip(labs)
        .enumerate()
        .map(|(i, (id, s))| {
            if (1..=14).contains(&s) {
                Ok((id, s as usize - 1))
            } else {
                Err(DataError::parse(lab, i + 1, format!("style {s} is outside 1..14")))
            }
        })
        .collect()
}

/// `test.jpgl` + `test.multilab`: `(image id, 14 style flags)`.
pub fn read_style_test(jpgl: &Path, multilab: &Path) -> Result<Vec<(u64, Vec<bool>)>, DataError> {
    let ids = read_jpgl(jpgl)?;
    let text = read_text(multilab)?;
    let mut flags = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<bool> = l
            .split_whitespace()
            .map(|x| match x {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(DataError::parse(multilab, i + 1, format!("style flag {x:?} is not 0 or 1"))),
            })
            .collect::<Result<_, _>>()?;
        if f.len() != 14 {
            return Err(DataError::parse(multilab, i + 1, format!("expected 14 style flags, found {}", f.len())));
        }
        flags.push(f);
    }
    if ids.len() != flags.len() {
        return Err(DataError::invalid(multilab, format!("{} label lines for {} images in {}", flags.len(), ids.len(), jpgl.display())));
    }
    Ok(ids.into_iter().zip(flags).collect())
}

/// Paper 002's binary label with margin `delta`: 1 if `mean >= 5 + delta`, 0 if `mean < 5 - delta`.
pub fn binary_label(mean: f64, delta: f64) -> Option<usize> {
    if mean >= 5.0 + delta {
        Some(1)
    } else if mean < 5.0 - delta {
        Some(0)
    } else {
        None
    }
}

/// Where the AVA files are. [`AvaFiles::in_dir`] gives the published layout; optional files
/// that are absent are `None`.
#[derive(Debug, Clone)]
pub struct AvaFiles {
    pub ava_txt: PathBuf,
    pub challenges: Option<PathBuf>,
    pub tags: Option<PathBuf>,
    pub style_dir: Option<PathBuf>,
    /// Folder of `<id>.jpg`.
    pub image_dir: PathBuf,
}

impl AvaFiles {
    /// The published layout under `root`: `AVA.txt`, `challenges.txt`, `tags.txt`,
    /// `style_image_lists/`, and the images in `root/images` (override `image_dir` if elsewhere).
    pub fn in_dir(root: &Path) -> Self {
        let opt = |p: PathBuf| p.exists().then_some(p);
        AvaFiles {
            ava_txt: root.join("AVA.txt"),
            challenges: opt(root.join("challenges.txt")),
            tags: opt(root.join("tags.txt")),
            style_dir: opt(root.join("style_image_lists")),
            image_dir: root.join("images"),
        }
    }

    fn image(&self, id: u64) -> PathBuf {
        self.image_dir.join(format!("{id}.jpg"))
    }

    /// Theme names (challenges, sorted by id) and id -> index.
    fn themes(&self, rows: &[AvaRow]) -> Result<(Vec<String>, BTreeMap<u32, usize>), DataError> {
        let list: Vec<(u32, String)> = match &self.challenges {
            Some(p) => {
                let mut l = read_id_names(p)?;
                l.sort_by_key(|x| x.0);
                l
            }
            None => {
                let ids: std::collections::BTreeSet<u32> = rows.iter().map(|r| r.challenge).collect();
                ids.into_iter().map(|i| (i, i.to_string())).collect()
            }
        };
        let index = list.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        Ok((list.into_iter().map(|x| x.1).collect(), index))
    }
}

/// The aesthetics dataset: every row of `AVA.txt` with histogram, score, std, binary label
/// (margin `delta`), theme (challenge) and tags. Rows without votes are an error.
pub fn aesthetics(files: &AvaFiles, delta: f64) -> Result<Dataset, DataError> {
    let rows = read_ava_txt(&files.ava_txt)?;
    let (theme_names, theme_index) = files.themes(&rows)?;
    if let Some(t) = &files.tags {
        let known: std::collections::BTreeSet<u32> = read_id_names(t)?.into_iter().map(|x| x.0).collect();
        if let Some(r) = rows.iter().find(|r| r.tags.iter().any(|&t| t != 0 && !known.contains(&t))) {
            return Err(DataError::invalid(&files.ava_txt, format!("image {} has a tag id missing from {}", r.image_id, t.display())));
        }
    }
    let mut samples = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let counts: Vec<f64> = r.votes.iter().map(|&v| v as f64).collect();
        let n: f64 = counts.iter().sum();
        let (mean, std) = histogram_mean_std(&counts)
            .ok_or_else(|| DataError::parse(&files.ava_txt, i + 1, format!("image {} has no votes", r.image_id)))?;
        let theme = *theme_index.get(&r.challenge).ok_or_else(|| {
            DataError::parse(&files.ava_txt, i + 1, format!("challenge {} of image {} is not in challenges.txt", r.challenge, r.image_id))
        })?;
        samples.push(Sample {
            path: files.image(r.image_id),
            key: r.image_id.to_string(),
            target: Target {
                label: binary_label(mean, delta),
                score: Some(mean),
                histogram: Some(counts.iter().map(|c| c / n).collect()),
                std: Some(std),
                theme: Some(theme),
                tags: Some(r.tags.iter().copied().filter(|&t| t != 0).collect()),
                styles: None,
            },
        });
    }
    Ok(Dataset {
        source: files.ava_txt.display().to_string(),
        samples,
        class_names: vec!["low".into(), "high".into()],
        style_names: Vec::new(),
        theme_names,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StyleSplit {
    /// `train.jpgl` + `train.lab`: one style per image (label and one-hot styles).
    Train,
    /// `test.jpgl` + `test.multilab`: multi-hot styles (label = the first style, for accuracy).
    Test,
}

/// The AVA style dataset (14 photographic styles; paper 002's Style-SCNN).
pub fn styles(files: &AvaFiles, split: StyleSplit) -> Result<Dataset, DataError> {
    let dir = files.style_dir.as_ref().ok_or_else(|| DataError::invalid(&files.ava_txt, "no style_image_lists folder beside it"))?;
    let style_names: Vec<String> = read_id_names(&dir.join("styles.txt"))?.into_iter().map(|x| x.1).collect();
    if style_names.len() != 14 {
        return Err(DataError::invalid(&dir.join("styles.txt"), format!("expected 14 styles, found {}", style_names.len())));
    }
    let rows: Vec<(u64, Vec<bool>)> = match split {
        StyleSplit::Train => read_style_train(&dir.join("train.jpgl"), &dir.join("train.lab"))?
            .into_iter()
            .map(|(id, s)| (id, (0..14).map(|k| k == s).collect()))
            .collect(),
        StyleSplit::Test => read_style_test(&dir.join("test.jpgl"), &dir.join("test.multilab"))?,
    };
    let samples = rows
        .into_iter()
        .map(|(id, flags)| Sample {
            path: files.image(id),
            key: id.to_string(),
            target: Target { label: flags.iter().position(|&f| f), styles: Some(flags), ..Default::default() },
        })
        .collect();
    Ok(Dataset { source: dir.display().to_string(), samples, class_names: style_names.clone(), style_names, theme_names: Vec::new() })
}
