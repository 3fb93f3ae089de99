//! `keepers bench scoring [DIR]`: how long the app takes to score a shoot, end to end and by stage.
//!
//! - **End to end.** The worker's scoring service ([`crate::worker::Scoring`]) with the app's own
//!   configuration ([`ScoringConfig::app`]: decode to 1024 px, the centre view through the backbone
//!   for classes and embedding, the shipped quality model with its grid-patch features, BRISQUE,
//!   one database transaction per photo, batches of 8) scores an album of N photos: hard links (or
//!   copies, where links fail) of DIR's photos under distinct names, in a temporary folder with its
//!   own temporary library database, so every photo is decoded and computed. Printed: model
//!   loading (time to the first result), then photos per second and ms per photo from the end of
//!   the first batch to the last result, and the minutes a 1,000-photo shoot takes at that rate.
//! - **By stage.** DIR's photos once more (at most N), batch by batch as the worker runs them, one stage at a
//!   time on the same device: decode (parallel over the batch), backbone centre view, quality model,
//!   BRISQUE (parallel over the batch). The stages sum to less than the end-to-end figure by the
//!   database writes and the hand-over between threads.
//!
//! The device is the one the app uses ([`crate::device::best_device`]): the GPU in a `cuda` build
//! with a GPU present, the CPU otherwise. Nothing under DIR is written; the temporary folder is
//! removed at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use image::RgbImage;
use rayon::prelude::*;

use super::bench::{Scratch, secs};
use crate::library::db::{Library, PhotoRecord};
use crate::library::decode::{Size, decode_intact};
use crate::model::brisque::Brisque;
use crate::model::imagenet::{Classifier, class_names};
use crate::model::quality::{self, QualityModel};
use crate::model::weights::WeightsFile;
use crate::worker::scoring::backbone_outputs;
use crate::worker::{ScoreEvent, ScoreRequest, Scoring, ScoringConfig};

pub fn scoring(dir: &Path, photos: usize) -> anyhow::Result<ExitCode> {
    let (sources, issues) = crate::library::scan::list_photos(dir);
    for i in &issues {
        eprintln!("skipped: {i}");
    }
    if sources.is_empty() {
        bail!("{}: no photos (JPEG, PNG, TIFF, WebP or camera RAW)", dir.display());
    }
    let photos = photos.max(1);
    let (device, desc) = crate::device::best_device();
    println!("scoring as the app does (decode to {} px, batches of {}), {desc}", ScoringConfig::DEFAULT_MAX_SIDE, ScoringConfig::APP_BATCH);

    let tmp = Scratch::new("scoring")?;
    let album = tmp.0.join("album");
    std::fs::create_dir_all(&album).with_context(|| format!("creating {}", album.display()))?;
    // Each source photo is linked (or, across file systems, copied) once; its repeats are hard
    // links to that first file, so N photos never take N copies' space.
    let mut files: Vec<PathBuf> = Vec::with_capacity(photos);
    for i in 0..photos {
        let k = i % sources.len();
        let src = if i < sources.len() { &sources[k] } else { &files[k] };
        let dst = album.join(format!("{i:05}_{}", sources[k].file_name().and_then(|n| n.to_str()).unwrap_or("photo")));
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
        files.push(dst);
    }
    let db = tmp.0.join("library.sqlite");
    let (mut lib, _) = Library::open(&db)?;
    let recs: Vec<PhotoRecord> = files
        .iter()
        .map(|p| PhotoRecord {
            path: p.clone(),
            size: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            mtime_ns: 1,
            ..Default::default()
        })
        .collect();
    let ids = lib.upsert_photos(&recs)?;
    drop(lib);

    end_to_end(&db, ids.into_iter().map(|(id, _)| id).zip(files).map(|(id, path)| ScoreRequest { id, path }).collect())?;
    stages(&sources[..sources.len().min(photos)], &device)?;
    Ok(ExitCode::SUCCESS)
}

fn end_to_end(db: &Path, reqs: Vec<ScoreRequest>) -> anyhow::Result<()> {
    let n = reqs.len();
    super::bench::reset_peak_rss();
    let start = Instant::now();
    let s = Scoring::start(ScoringConfig::app(db.to_owned()), None);
    s.submit(reqs);
    // When each photo's result arrived.
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    let (mut failed, mut with_quality) = (0usize, 0usize);
    while times.len() + failed < n {
        match s.events().recv_timeout(Duration::from_secs(600)) {
            Ok(ScoreEvent::Scored { scores, .. }) => {
                times.push(start.elapsed());
                with_quality += scores.quality.is_some() as usize;
            }
            Ok(ScoreEvent::Failed { error, .. }) => {
                failed += 1;
                eprintln!("failed: {error}");
            }
            Ok(ScoreEvent::ModelUnavailable { what, error }) => eprintln!("{what} unavailable: {error}"),
            Ok(ScoreEvent::StoreFailed { error }) => eprintln!("database: {error}"),
            Ok(ScoreEvent::Idle) => {}
            Err(RecvTimeoutError::Timeout) => bail!("no scoring event for 10 minutes ({} of {n} scored)", times.len()),
            Err(RecvTimeoutError::Disconnected) => bail!("the scoring thread stopped ({} of {n} scored)", times.len()),
        }
    }
    drop(s);
    let scored = times.len();
    let Some(&first) = times.first() else { bail!("no photo was scored") };
    println!(
        "end to end: {n} photos ({scored} scored, {with_quality} with a quality score, {failed} failed); first result after {:.2} s (model loading + first batch)",
        first.as_secs_f64()
    );
    // Results come a batch at a time: the steady rate counts the photos after the first batch over
    // the time from the end of the first batch to the last result (model loading left out).
    let batch = ScoringConfig::APP_BATCH;
    if scored > batch && times[scored - 1] > times[batch - 1] {
        let rate = (scored - batch) as f64 / (times[scored - 1] - times[batch - 1]).as_secs_f64();
        println!(
            "  steady state: {rate:.2} photos/s = {:.0} ms per photo; a 1,000-photo shoot in {:.1} min; peak RSS {}",
            1e3 / rate,
            1000.0 / rate / 60.0,
            super::bench::peak_rss_mib().map_or("?".into(), |m| format!("{m:.0} MiB"))
        );
    } else {
        println!("  (too few photos for a steady rate: use --photos {})", 4 * batch);
    }
    Ok(())
}

fn stages(sources: &[PathBuf], device: &candle_core::Device) -> anyhow::Result<()> {
    let classifier = Classifier::load(&WeightsFile::EfficientNetLite0.path(), device)?;
    let names = class_names();
    let (config, lite0) = quality::default_paths();
    let quality = QualityModel::load(&config, &lite0, device).map_err(|e| eprintln!("quality model unavailable: {e}")).ok();
    let brisque = Brisque::load(&Brisque::default_dir()).map_err(|e| eprintln!("BRISQUE unavailable: {e}")).ok();
    let max_side = ScoringConfig::DEFAULT_MAX_SIDE;
    // Warm-up: thread pools, allocator, the GPU's kernels.
    if let Ok(d) = decode_intact(&sources[0], Size::Fit(max_side)) {
        backbone_outputs(&classifier, &names, &[&d.image], device)?;
        if let Some(q) = &quality {
            q.score_and_features(&[&d.image])?;
        }
    }
    let mut t = [0f64; 4];
    let mut n = 0usize;
    for chunk in sources.chunks(ScoringConfig::APP_BATCH) {
        let (decoded, s) = secs(|| chunk.par_iter().map(|p| decode_intact(p, Size::Fit(max_side))).collect::<Vec<_>>());
        t[0] += s;
        let images: Vec<&RgbImage> = decoded.iter().filter_map(|d| d.as_ref().ok().map(|d| &d.image)).collect();
        n += images.len();
        let (r, s) = secs(|| backbone_outputs(&classifier, &names, &images, device));
        r?;
        t[1] += s;
        if let Some(q) = &quality {
            let (r, s) = secs(|| q.score_and_features(&images));
            r?;
            t[2] += s;
        }
        if let Some(b) = &brisque {
            t[3] += secs(|| images.par_iter().map(|i| b.score(i)).sum::<f64>()).1;
        }
    }
    if n == 0 {
        bail!("none of the photos could be decoded");
    }
    let ms = |s: f64| s * 1e3 / n as f64;
    println!("by stage, ms per photo over {n} photos (batches of {}):", ScoringConfig::APP_BATCH);
    println!(
        "  decode {:.0} | backbone centre view {:.0} | quality model {} | BRISQUE {} | sum {:.0}",
        ms(t[0]),
        ms(t[1]),
        if quality.is_some() { format!("{:.0}", ms(t[2])) } else { "-".into() },
        if brisque.is_some() { format!("{:.0}", ms(t[3])) } else { "-".into() },
        ms(t.iter().sum()),
    );
    Ok(())
}
