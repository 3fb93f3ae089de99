//! An album's own culling decisions as a dataset (issue 4, item 3): picks, rejects and stars
//! from the library database (`crate::library::db::Library::photos_under`) or from the XMP
//! the photographer's tools wrote (sidecars first, then XMP embedded in the JPEG:
//! `crate::library::xmp`). No paper: this is the data of ADAPT's "small collection" (paper 002
//! sec. III-D) and of personal fine-tuning.
//!
//! Targets: a pick is `label = 1` ("keep"), a reject (pick flag or `xmp:Rating="-1"`) is
//! `label = 0`; stars 1..5 are the `score` (a picked or unflagged photo with stars has both or
//! only the score). Photos with none of these ("0 stars", unflagged) have no decision: they are
//! not samples, and the report lists them, as it lists sidecars that could not be read.
//!
//! **Stars as a score distribution** ([`with_star_histograms`], the distribution task): a photo's
//! rating is one vote by one person, so its distribution over [`STAR_BINS`] bins (1..5 stars) puts
//! all its mass on the rated bin, as one AVA vote would before its votes are counted and
//! normalised. Its mean is the star rating and its spread 0; what a model learns from many such
//! photos is where the person's ratings fall and how sure it can be of them.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Sample, Target};
use crate::library::db::Library;
use crate::library::xmp::{self, Decision};

/// Class names of the keep label (index 0 = reject, 1 = keep).
pub const KEEP_CLASSES: [&str; 2] = ["reject", "keep"];

/// What reading the decisions found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlbumReport {
    /// Photos looked at.
    pub photos: usize,
    /// Photos that became samples.
    pub with_decision: usize,
    pub picks: usize,
    pub rejects: usize,
    /// Samples with stars (1..5).
    pub starred: usize,
    /// Photos without a pick, reject or stars, by path.
    pub without_decision: Vec<PathBuf>,
    /// Decisions that could not be read (malformed or unreadable XMP), and files or folders the
    /// album scan could not take, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl std::fmt::Display for AlbumReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} photos have a decision ({} picks, {} rejects, {} with stars); {} without a decision",
            self.with_decision,
            self.photos,
            self.picks,
            self.rejects,
            self.starred,
            self.without_decision.len()
        )?;
        for (p, why) in &self.unreadable {
            write!(f, "\n  {}: {why}", p.display())?;
        }
        Ok(())
    }
}

/// The target of a decision (`None` when it says nothing: unflagged, no stars).
pub fn decision_target(d: &Decision) -> Option<Target> {
    let label = if d.is_rejected() {
        Some(0)
    } else if d.is_picked() {
        Some(1)
    } else {
        None
    };
    let stars = d.stars();
    let score = (!d.is_rejected() && stars > 0).then_some(stars as f64);
    (label.is_some() || score.is_some()).then(|| Target { label, score, ..Default::default() })
}

/// One album photo: the original that names it (the RAW of a RAW+JPEG pair), the file whose
/// pixels are read (the pair's JPEG, as the app scores it), and its decision.
struct AlbumPhoto {
    original: PathBuf,
    pixels: PathBuf,
    decision: Option<Decision>,
}

fn build(source: String, items: Vec<AlbumPhoto>, mut report: AlbumReport) -> (Dataset, AlbumReport) {
    let mut samples = Vec::new();
    for AlbumPhoto { original, pixels, decision } in items {
        report.photos += 1;
        match decision.as_ref().and_then(decision_target) {
            Some(t) => {
                report.with_decision += 1;
                report.picks += (t.label == Some(1)) as usize;
                report.rejects += (t.label == Some(0)) as usize;
                report.starred += t.score.is_some() as usize;
                let key = original.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                samples.push(Sample { path: pixels, key, target: t });
            }
            None => report.without_decision.push(original),
        }
    }
    let ds = Dataset {
        source,
        samples,
        class_names: KEEP_CLASSES.iter().map(|s| s.to_string()).collect(),
        style_names: Vec::new(),
        theme_names: Vec::new(),
    };
    (ds, report)
}

/// The decisions stored in the library database for the photos under `root`.
pub fn from_library(lib: &Library, root: &Path) -> Result<(Dataset, AlbumReport), DataError> {
    let rows = lib.photos_under(root).map_err(|e| DataError::invalid(root, e.to_string()))?;
    let items = rows
        .into_iter()
        .map(|r| AlbumPhoto {
            pixels: r.record.companion.clone().unwrap_or_else(|| r.record.path.clone()),
            original: r.record.path,
            decision: r.decision.map(|d| d.decision),
        })
        .collect();
    Ok(build(format!("library: {}", root.display()), items, AlbumReport::default()))
}

/// The decision in a photo's XMP: its sidecar if there is one, else the XMP embedded in the JPEG.
pub fn read_xmp_decision(photo: &Path) -> Result<Option<Decision>, String> {
    if let Some(sidecar) = xmp::find_sidecar(photo) {
        return xmp::read_sidecar(&sidecar).map(Some).map_err(|e| e.to_string());
    }
    xmp::read_embedded_decision(photo).map_err(|e| e.to_string())
}

/// The decisions in the XMP (sidecars, then embedded XMP) of `(original, pixels)` photos: the
/// decision is read from the original's XMP, the pixels from the other file.
fn from_xmp_pairs(photos: Vec<(PathBuf, PathBuf)>, mut report: AlbumReport) -> (Dataset, AlbumReport) {
    let n = photos.len();
    let mut items = Vec::with_capacity(n);
    for (original, pixels) in photos {
        let decision = match read_xmp_decision(&original) {
            Ok(d) => d,
            Err(why) => {
                report.unreadable.push((original.clone(), why));
                None
            }
        };
        items.push(AlbumPhoto { original, pixels, decision });
    }
    build(format!("xmp: {n} photos"), items, report)
}

/// The decisions in the XMP of the photos in `dir` (recursively).
pub fn from_xmp_dir(dir: &Path) -> Result<(Dataset, AlbumReport), DataError> {
    if let Err(source) = std::fs::read_dir(dir) {
        return Err(DataError::Io { path: dir.to_owned(), source });
    }
    // One sample per album item, named by its original (the RAW of a RAW+JPEG pair) as the
    // library names it, with the decision read from it as the app reads it, and the pixels of the
    // file the app scores (the pair's JPEG).
    let (items, issues, _) = crate::library::scan::scan_all(dir);
    let photos = items.iter().map(|i| (i.primary.path.clone(), i.display().path.clone())).collect();
    let report = AlbumReport { unreadable: issues.into_iter().map(|i| (i.path.clone(), i.reason())).collect(), ..Default::default() };
    Ok(from_xmp_pairs(photos, report))
}

/// Bins of an album's star distribution (1..5 stars).
pub const STAR_BINS: usize = 5;

/// A star rating (1..5) as a [`STAR_BINS`]-bin distribution: all mass on the rated bin. `None`
/// for 0 stars or a value out of range.
pub fn star_histogram(stars: f64) -> Option<Vec<f64>> {
    let s = stars.round();
    if !(1.0..=STAR_BINS as f64).contains(&s) {
        return None;
    }
    let mut h = vec![0.0; STAR_BINS];
    h[s as usize - 1] = 1.0;
    Some(h)
}

/// `ds` with each starred sample's distribution ([`star_histogram`]) and spread (0) set.
pub fn with_star_histograms(ds: &Dataset) -> Dataset {
    let mut out = ds.clone();
    for s in &mut out.samples {
        if let Some(h) = s.target.score.and_then(star_histogram) {
            s.target.histogram = Some(h);
            s.target.std = Some(0.0);
        }
    }
    out
}

/// `ds` with style targets from the photos' keywords (the user's own tags, multi-label; e.g. XMP
/// `dc:subject`): among the samples with keywords, each keyword that at least `min` of them have
/// and `min` lack becomes a style (the `max` most frequent, ties by name); those samples get their
/// flags, samples without keywords get none. Also returns a note per keyword left out.
pub fn with_keyword_styles(
    ds: &Dataset,
    keywords: &std::collections::HashMap<PathBuf, Vec<String>>,
    min: usize,
    max: usize,
) -> (Dataset, Vec<String>) {
    let with: Vec<&Vec<String>> = ds.samples.iter().filter_map(|s| keywords.get(&s.path)).filter(|k| !k.is_empty()).collect();
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for k in &with {
        let mut seen: Vec<&str> = k.iter().map(String::as_str).collect();
        seen.sort();
        seen.dedup();
        for t in seen {
            *counts.entry(t).or_default() += 1;
        }
    }
    let n = with.len();
    let mut eligible: Vec<(&str, usize)> = counts.iter().map(|(t, c)| (*t, *c)).filter(|&(_, c)| c >= min && n - c >= min).collect();
    eligible.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    eligible.truncate(max);
    let names: Vec<String> = eligible.iter().map(|(t, _)| t.to_string()).collect();
    let notes: Vec<String> = counts
        .iter()
        .filter(|(t, _)| !names.iter().any(|n| n == *t))
        .map(|(t, c)| format!("keyword {t:?} not learned: {c} of {n} photos with keywords have it (a tag needs {min} with it and {min} without; at most {max} tags)"))
        .collect();
    let mut out = ds.clone();
    out.style_names = names.clone();
    for s in &mut out.samples {
        s.target.styles =
            keywords.get(&s.path).filter(|k| !k.is_empty() && !names.is_empty()).map(|k| names.iter().map(|n| k.contains(n)).collect());
    }
    (out, notes)
}
