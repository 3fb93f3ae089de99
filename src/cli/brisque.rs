//! `keepers brisque IMG|DIR...`: the BRISQUE score of each photo (Mittal, Moorthy & Bovik 2012;
//! [`crate::model::brisque`], lower = better), and `keepers brisque --eval CSV`: SRCC and PLCC of
//! -BRISQUE against the CSV's scores (e.g. the LIVE Challenge MOS), the classical baseline for the
//! learned quality model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rayon::prelude::*;

use crate::library::decode::{Size, decode_intact};
use crate::model::brisque::Brisque;
use crate::train::cv::{fold_ids, mean_std};
use crate::train::metrics::{plcc, srcc};

/// Largest photo `keepers brisque` scores at full resolution: 150 megapixels (medium-format
/// cameras reach 100-150), about 5.6 GB at BRISQUE's 37 bytes per pixel.
const MAX_PIXELS: u64 = 150_000_000;

fn model(dir: Option<&Path>) -> anyhow::Result<Brisque> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(Brisque::default_dir);
    Brisque::load(&dir).with_context(|| format!("loading the BRISQUE model from {}", dir.display()))
}

/// Prints `score<TAB>path` per photo as it is scored, at full resolution as the package computes
/// it; a photo that cannot be read (or is damaged) is reported and the others go on. Photos go one
/// at a time (the filters run in parallel within a photo): at about 37 bytes per pixel
/// ([`crate::model::brisque`]), several large photos at once would not fit in memory.
pub fn score(paths: &[PathBuf], model_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let m = model(model_dir)?;
    let (files, folder_problems) = super::collect_files(paths)?;
    let mut failed = 0;
    for f in &files {
        match decode_intact(f, Size::Full) {
            Ok(d) if d.image.width() as u64 * d.image.height() as u64 > MAX_PIXELS => {
                failed += 1;
                let mp = d.image.width() as f64 * d.image.height() as f64 / 1e6;
                eprintln!(
                    "error: {}: {}x{} ({mp:.0} megapixels) is more than BRISQUE is run on here ({} megapixels, about {:.1} GB); \
                     `keepers predict` scores it at the app's size",
                    f.display(),
                    d.image.width(),
                    d.image.height(),
                    MAX_PIXELS / 1_000_000,
                    MAX_PIXELS as f64 * 37.0 / 1e9
                );
            }
            Ok(d) => {
                let s = m.score(&d.image);
                if s.is_finite() {
                    println!("{s:8.3}\t{}", f.display());
                } else {
                    println!("     n/a\t{}\t(no texture to fit: a flat or tiny image)", f.display());
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(super::photos_exit_code(failed, files.len(), folder_problems))
}

/// SRCC and PLCC of -BRISQUE against the score column of `csv` over every row with a score, then
/// per fold of the seeded split `keepers cv` and `keepers train-quality` use ([`fold_ids`] over
/// the rows with a score, in file order), so the figures compare with their held-out ones.
/// BRISQUE is not fitted to these folds; they only make the spread comparable. Photos are scored
/// in parallel (quality datasets are small photos: LIVE's are 500 x 500); a damaged one stops it.
pub fn eval(csv: &Path, images: Option<&Path>, model_dir: Option<&Path>, folds: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let m = model(model_dir)?;
    let ds = super::cv::load_dataset(csv, images)?;
    let rows: Vec<_> = ds.samples.iter().filter_map(|s| s.target.score.map(|y| (s, y))).collect();
    if rows.len() < 3 {
        bail!("{}: {} rows with a score; need at least 3", csv.display(), rows.len());
    }
    eprintln!("BRISQUE on {} photos from {}", rows.len(), csv.display());
    let scores = rows
        .par_iter()
        .map(|(s, _)| {
            decode_intact(&s.path, Size::Full).map(|d| m.score(&d.image)).with_context(|| format!("scoring {}", s.path.display()))
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for ((_, mos), s) in rows.iter().zip(&scores) {
        if s.is_finite() {
            x.push(-s);
            y.push(*mos);
        }
    }
    let skipped = rows.len() - x.len();
    if skipped > 0 {
        eprintln!("{skipped} photos have no BRISQUE score (no texture to fit) and are left out");
    }
    let (Some(rs), Some(rp)) = (srcc(&x, &y), plcc(&x, &y)) else { bail!("correlation undefined (constant scores)") };
    let finite: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
    println!("photos: {}", x.len());
    println!("SRCC(-BRISQUE, score): {rs:.4}");
    println!("PLCC(-BRISQUE, score): {rp:.4}");
    println!("BRISQUE mean {mean:.3}, min {lo:.3}, max {hi:.3}");
    if folds >= 2 && rows.len() >= 2 * folds {
        let ids = fold_ids(rows.len(), folds, seed);
        let (mut fs, mut fp) = (Vec::new(), Vec::new());
        for k in 0..folds {
            let (fx, fy): (Vec<f64>, Vec<f64>) =
                (0..rows.len()).filter(|&i| ids[i] == k && scores[i].is_finite()).map(|i| (-scores[i], rows[i].1)).unzip();
            let (Some(a), Some(b)) = (srcc(&fx, &fy), plcc(&fx, &fy)) else { bail!("fold {}: correlation undefined", k + 1) };
            println!("fold {}: {} photos, SRCC {a:.4}, PLCC {b:.4}", k + 1, fx.len());
            fs.push(a);
            fp.push(b);
        }
        let ((ms, ss), (mp, sp)) = (mean_std(&fs), mean_std(&fp));
        println!("{folds} folds (seed {seed}), mean ± sample std: SRCC {ms:.3} ± {ss:.3}, PLCC {mp:.3} ± {sp:.3}");
    }
    Ok(ExitCode::SUCCESS)
}
