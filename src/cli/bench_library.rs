//! `keepers bench library DIR`: album scan files/s, thumbnails/s (cold and warm cache), thumbnail
//! speed-up over full decode + resize, and full-decode MP/s beside libjpeg-turbo's `djpeg` on the same
//! JPEG files (when `djpeg` is on the PATH; `scripts/bench_library.sh` installs it).
//!
//! Everything is timed on one thread, one file after another. The thumbnail cache lives in a temporary
//! folder that is removed at the end; no file under DIR is written.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use super::bench::{Scratch, secs};
use crate::library::decode::{self, Size};
use crate::library::formats::Format;
use crate::library::scan;
use crate::library::thumbs::{ThumbCache, ThumbKey};

/// Seconds per file for `djpeg -outfile /dev/null`, minus process start-up measured on an 8x8 JPEG.
fn djpeg_seconds(files: &[PathBuf], tmp: &Path) -> Option<(f64, f64)> {
    let null = if cfg!(windows) { "NUL" } else { "/dev/null" };
    let run = |f: &Path| Command::new("djpeg").arg("-outfile").arg(null).arg(f).stdout(Stdio::null()).stderr(Stdio::null()).status();
    let tiny = tmp.join("tiny.jpg");
    let px = [128u8; 8 * 8 * 3];
    let jpeg = turbojpeg::compress(
        turbojpeg::Image { pixels: &px[..], width: 8, pitch: 24, height: 8, format: turbojpeg::PixelFormat::RGB },
        90,
        turbojpeg::Subsamp::Sub2x2,
    )
    .ok()?;
    std::fs::write(&tiny, &jpeg[..]).ok()?;
    run(&tiny).ok().filter(|s| s.success())?;
    let startup = (0..10).map(|_| secs(|| run(&tiny)).1).fold(f64::MAX, f64::min);
    let (ok, total) = secs(|| files.iter().all(|f| run(f).is_ok_and(|s| s.success())));
    ok.then_some((total, startup * files.len() as f64))
}

pub fn library(dir: &Path, max_files: usize, side: u32) -> anyhow::Result<ExitCode> {
    // 1. Scan.
    let ((items, issues, summary), scan_s) = secs(|| scan::scan_all(dir));
    println!(
        "scan: {} files ({} items, {} issues) in {} folders: {:.3} s = {:.0} files/s",
        summary.files,
        summary.items,
        issues.len(),
        summary.folders,
        scan_s,
        summary.files as f64 / scan_s.max(1e-9)
    );

    for i in &issues {
        println!("  scan issue: {i}");
    }
    // The decode set: JPEG files that decode whole (a damaged one is named and left out, since
    // the figures time every file the same way and a damaged file is never cached).
    let mut jpegs: Vec<PathBuf> = Vec::new();
    for f in items.iter().map(|i| i.display()).filter(|f| f.format == Format::Jpeg) {
        if jpegs.len() == max_files {
            break;
        }
        match decode::decode_intact(&f.path, Size::Fit(side)) {
            Ok(_) => jpegs.push(f.path.clone()),
            Err(e) => println!("  left out of the decode set: {e}"),
        }
    }
    if jpegs.is_empty() {
        println!("no decode figures ({})", if max_files == 0 { "--max-files 0" } else { "no JPEG files" });
        return Ok(ExitCode::SUCCESS);
    }
    let tmp = Scratch::new("library")?;
    decode_figures(&jpegs, side, &tmp.0)?;
    Ok(ExitCode::SUCCESS)
}

fn decode_figures(jpegs: &[PathBuf], side: u32, tmp: &Path) -> anyhow::Result<()> {
    let n = jpegs.len() as f64;
    // Megapixels of the set (from the headers).
    let mut mp = 0.0;
    for f in jpegs {
        let d = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let (w, h, _) = crate::library::raw::jpeg_dimensions(&d).with_context(|| format!("{}: no JPEG header", f.display()))?;
        mp += w as f64 * h as f64 / 1e6;
    }
    println!("decode set: {} JPEG files, {:.1} MP in all ({:.1} MP each on average), thumbnail side {side}", jpegs.len(), mp, mp / n);
    // Warm the OS file cache so every figure below reads from memory.
    for f in jpegs {
        let _ = std::fs::read(f)?;
    }

    // 2. Thumbnails, cold then warm cache.
    let cache = ThumbCache::open(&tmp.join("thumbs"), u64::MAX)?;
    let keys: Vec<ThumbKey> = jpegs.iter().map(|f| ThumbKey::for_file(f, side)).collect::<Result<_, _>>()?;
    let (r, cold) = secs(|| keys.iter().try_for_each(|k| cache.get_or_make(k).map(|_| ())));
    r?;
    let (r, warm) = secs(|| keys.iter().try_for_each(|k| cache.get_or_make(k).map(|t| assert!(t.from_cache))));
    r?;
    let (r, reduced) = secs(|| jpegs.iter().try_for_each(|f| decode::decode_path(f, Size::Fit(side)).map(|_| ())));
    r?;
    // Baseline: full decode, then the same resize filter.
    let (r, full_resize) = secs(|| {
        jpegs.iter().try_for_each(|f| {
            decode::decode_path(f, Size::Full).map(|d| {
                let (w, h) = (d.image.width(), d.image.height());
                let s = side as f64 / w.max(h) as f64;
                let _ = image::imageops::resize(
                    &d.image,
                    ((w as f64 * s).round() as u32).max(1),
                    ((h as f64 * s).round() as u32).max(1),
                    image::imageops::FilterType::Triangle,
                );
            })
        })
    });
    r?;
    println!("thumbnails cold cache: {:.1} /s ({:.1} ms each, DCT-scaled decode + resize + cache write)", n / cold, cold / n * 1e3);
    println!("thumbnails warm cache: {:.1} /s ({:.2} ms each)", n / warm, warm / n * 1e3);
    println!(
        "thumbnail decode {:.1} ms vs full decode + resize {:.1} ms: {:.1}x faster",
        reduced / n * 1e3,
        full_resize / n * 1e3,
        full_resize / reduced
    );

    // 3. Full decode: Keepers (libjpeg-turbo in-process), the pure-Rust decoder, djpeg.
    let (r, ours) = secs(|| jpegs.iter().try_for_each(|f| decode::decode_path(f, Size::Full).map(|_| ())));
    r?;
    let (r, pure) = secs(|| {
        jpegs.iter().try_for_each(|f| -> anyhow::Result<()> {
            let d = std::fs::read(f)?;
            image::load_from_memory_with_format(&d, image::ImageFormat::Jpeg)?;
            Ok(())
        })
    });
    r?;
    println!("full decode keepers:   {:.1} MP/s ({:.1} ms each)", mp / ours, ours / n * 1e3);
    println!("full decode image/zune-jpeg (pure Rust, for reference): {:.1} MP/s", mp / pure);
    match djpeg_seconds(jpegs, tmp) {
        Some((total, startup)) => {
            let dj = (total - startup).max(1e-9);
            println!(
                "full decode djpeg:     {:.1} MP/s ({:.1} ms each; {:.1} ms process start-up per file subtracted)",
                mp / dj,
                dj / n * 1e3,
                startup / n * 1e3
            );
            println!(
                "result thumbs_cold_per_s={:.1} thumbs_warm_per_s={:.1} thumb_speedup={:.2} keepers_mp_s={:.1} djpeg_mp_s={:.1} keepers_over_djpeg_time={:.2}",
                n / cold,
                n / warm,
                full_resize / reduced,
                mp / ours,
                mp / dj,
                ours / dj
            );
        }
        None => println!(
            "full decode djpeg:     not measured (djpeg not found or failed; run scripts/bench_library.sh, which installs libjpeg-turbo-progs)"
        ),
    }
    Ok(())
}
