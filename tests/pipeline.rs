//! The input pipeline on real photos (LIVE Challenge JPEGs): skipped files named in one
//! report, determinism independent of threads and batch size, resume mid-epoch, bounded
//! read-ahead, errors and panics in the transform.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keepers::model::views::random_patches;
use keepers::train::data::csv::{CsvOptions, load};
use keepers::train::data::{Sample, Target};
use keepers::train::pipeline::{Pipeline, PipelineConfig, check_jpeg_complete, epoch_order, verify_images};

fn livec_images() -> PathBuf {
    let p = common::livec_dir().join("images");
    assert!(p.exists(), "the LIVE Challenge photos are expected at {}", p.display());
    p
}

/// The first `n` real photos (by name) as samples (no files copied).
fn real_samples(n: usize) -> Vec<Sample> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(livec_images()).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .into_iter()
        .take(n)
        .map(|p| Sample { key: p.file_name().unwrap().to_string_lossy().into(), path: p, target: Target::default() })
        .collect()
}

/// What an item turned into: its patches' rectangles and a checksum of their pixels.
fn patch_summary(s: &Sample, img: image::RgbImage, rng: &mut keepers::rng::SeededRng) -> anyhow::Result<Summary> {
    let patches = random_patches(&img, 64, 3, rng);
    let rects = patches.iter().map(|p| (p.rect.x as u64, p.rect.y as u64)).collect();
    let sum = patches.iter().flat_map(|p| p.image.as_raw().iter()).fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
    Ok((s.key.clone(), rects, sum))
}

type Summary = (String, Vec<(u64, u64)>, u64);

fn run(samples: &[Sample], cfg: &PipelineConfig) -> Vec<(usize, usize, Summary)> {
    let p = Pipeline::start(Arc::new(samples.to_vec()), cfg, patch_summary).unwrap();
    p.flat_map(|b| b.items.into_iter().map(move |it| (b.number, it.index, it.data))).collect()
}

#[test]
fn truncated_missing_and_empty_files_are_named_in_one_report_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("images");
    std::fs::create_dir(&imgs).unwrap();
    let good = real_samples(4);
    let mut rows = String::from("image,mos\n");
    for (i, s) in good.iter().enumerate() {
        std::fs::copy(&s.path, imgs.join(&s.key)).unwrap();
        rows += &format!("{},{}\n", s.key, 50 + i);
    }
    let bytes = std::fs::read(&good[0].path).unwrap();
    std::fs::write(imgs.join("truncated.jpg"), &bytes[..bytes.len() * 2 / 5]).unwrap();
    std::fs::write(imgs.join("empty.jpg"), b"").unwrap();
    rows += "truncated.jpg,10\nempty.jpg,20\nmissing.jpg,30\n";
    std::fs::write(dir.path().join("labels.csv"), rows).unwrap();
    let d = load(&dir.path().join("labels.csv"), &CsvOptions { image_root: Some(imgs.clone()), ..Default::default() }).unwrap();
    assert_eq!(d.len(), 7);
    let samples = Arc::new(d.samples.clone());

    let expect = |report: &keepers::train::pipeline::SkipReport| {
        let mut paths: Vec<PathBuf> = report.paths().into_iter().map(Path::to_path_buf).collect();
        paths.sort();
        assert_eq!(paths, [imgs.join("empty.jpg"), imgs.join("missing.jpg"), imgs.join("truncated.jpg")]);
        let text = report.to_string();
        assert!(text.starts_with("3 image(s) skipped"), "{text}");
        for (name, why) in [("truncated.jpg", "truncated JPEG"), ("empty.jpg", "file is empty"), ("missing.jpg", "cannot open")] {
            let line = text.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not in report:\n{text}"));
            assert!(line.contains(why), "{line}");
        }
    };
    let report = verify_images(samples.clone(), 2);
    assert_eq!(report.attempted, 7);
    expect(&report);

    // Training over the same rows: every good image arrives, the bad ones are reported.
    let cfg = PipelineConfig { batch_size: 3, seed: 5, threads: 2, ..Default::default() };
    let mut p = Pipeline::start(samples.clone(), &cfg, patch_summary).unwrap();
    let mut got: Vec<String> = p.by_ref().flat_map(|b| b.items.into_iter().map(|i| i.data.0)).collect();
    got.sort();
    let mut want: Vec<String> = good.iter().map(|s| s.key.clone()).collect();
    want.sort();
    assert_eq!(got, want);
    expect(p.skip_report());
}

#[test]
fn jpeg_completeness_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(livec_images()).unwrap().map(|e| e.unwrap().path()).collect();
    files.extend(std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")).unwrap().map(|e| e.unwrap().path()));
    let mut jpegs = 0;
    for f in &files {
        let b = std::fs::read(f).unwrap();
        assert_eq!(check_jpeg_complete(&b), Ok(()), "{}", f.display());
        if b.starts_with(&[0xFF, 0xD8]) {
            jpegs += 1;
            // Bytes after the end-of-image (e.g. an appended motion-photo video) are fine.
            let mut longer = b.clone();
            longer.extend_from_slice(b"ftypmp42 trailing data \xFF\xD8\xFF");
            assert_eq!(check_jpeg_complete(&longer), Ok(()));
            for frac in [0.1, 0.5, 0.9, 0.999] {
                let cut = &b[..(b.len() as f64 * frac) as usize];
                assert!(check_jpeg_complete(cut).is_err(), "{} cut at {frac}", f.display());
            }
            assert!(check_jpeg_complete(&b[..b.len() - 2]).is_err(), "without its EOI marker");
        }
    }
    assert!(jpegs > 380, "{jpegs} JPEGs checked");
}

#[test]
fn deterministic_whatever_the_threads_and_batch_size() {
    let samples = real_samples(7);
    let a = run(&samples, &PipelineConfig { batch_size: 2, seed: 11, epoch: 3, threads: 1, ..Default::default() });
    let b = run(&samples, &PipelineConfig { batch_size: 5, seed: 11, epoch: 3, threads: 2, prefetch: 1, ..Default::default() });
    assert_eq!(a.len(), 7);
    let order_a: Vec<usize> = a.iter().map(|x| x.1).collect();
    assert_eq!(order_a, b.iter().map(|x| x.1).collect::<Vec<_>>(), "same visiting order");
    assert_eq!(order_a, epoch_order(7, 11, 3, true));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.2, y.2, "same patches for sample {}", x.1);
    }
    // Another epoch: another order and other patches for the same image.
    let c = run(&samples, &PipelineConfig { batch_size: 2, seed: 11, epoch: 4, threads: 2, ..Default::default() });
    assert_ne!(order_a, c.iter().map(|x| x.1).collect::<Vec<_>>());
    let patches_of = |v: &[(usize, usize, Summary)], i: usize| v.iter().find(|x| x.1 == i).unwrap().2.clone();
    assert_ne!(patches_of(&a, 0), patches_of(&c, 0));
    // No shuffle: dataset order.
    let e = run(&samples, &PipelineConfig { batch_size: 3, shuffle: false, threads: 2, ..Default::default() });
    assert_eq!(e.iter().map(|x| x.1).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
}

#[test]
fn resume_from_a_batch_gives_the_rest_of_the_epoch() {
    let samples = real_samples(7);
    let cfg = PipelineConfig { batch_size: 2, seed: 3, epoch: 1, threads: 2, ..Default::default() };
    let full = run(&samples, &cfg);
    let tail = run(&samples, &PipelineConfig { start_batch: 2, ..cfg.clone() });
    assert_eq!(tail.len(), 3);
    assert_eq!(tail.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 2, 3]);
    assert_eq!(&full[4..], &tail[..]);
}

#[test]
fn read_ahead_is_bounded() {
    let samples: Vec<Sample> = (0..40).map(|_| real_samples(1)[0].clone()).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    let cfg = PipelineConfig { batch_size: 2, threads: 2, prefetch: 1, shuffle: false, ..Default::default() };
    let mut p = Pipeline::start(Arc::new(samples), &cfg, move |_, img, _| {
        d2.fetch_add(1, Ordering::SeqCst);
        Ok(img.width())
    })
    .unwrap();
    let first = p.next().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Held by us (1) + queued (prefetch 1) + being built (1) = 3 batches of 2.
    let n = done.load(Ordering::SeqCst);
    assert!(n <= 6, "{n} items transformed while the consumer held one batch");
    assert!(n >= 4, "the pipeline should have worked ahead: {n}");
    drop(first);
    assert_eq!(p.by_ref().count(), 19);
    assert_eq!(done.load(Ordering::SeqCst), 40);
}

#[test]
fn transform_errors_skip_and_panics_reach_the_consumer() {
    let samples = Arc::new(real_samples(4));
    let cfg = PipelineConfig { batch_size: 4, shuffle: false, threads: 2, ..Default::default() };
    let first = samples[0].key.clone();
    let mut p = Pipeline::start(samples.clone(), &cfg, move |s, img, _| {
        if s.key == first { anyhow::bail!("too small for a 1000 px patch ({}x{})", img.width(), img.height()) } else { Ok(()) }
    })
    .unwrap();
    let b = p.next().unwrap();
    assert_eq!(b.items.len(), 3);
    assert_eq!(b.skipped.len(), 1);
    assert!(b.skipped[0].reason.starts_with("too small"), "{}", b.skipped[0].reason);
    assert!(p.next().is_none());

    let p = Pipeline::start(samples, &cfg, |_, _, _| -> anyhow::Result<()> { panic!("bug in a transform") }).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.count()));
    assert!(r.is_err(), "a panicking transform must not look like a finished epoch");
}
