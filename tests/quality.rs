//! The shipped quality model (`weights/quality_multilevel.*`, multi-level Lite0 features + ridge,
//! `src/model/quality.rs`) on real photos: degraded copies of the bundled samples score lower
//! than the originals, the heatmap marks a locally blurred or noisy region, batch scoring equals
//! one-by-one scoring, the grid patches tile the photo,
//! the features handed to the taste panel are the grid patches' final pooled Lite0 features, a
//! missing or tampered weights file is a typed error, and the previous DMA-fc model still loads.
//! Also the ridge fit itself ([`keepers::train::ridge`], with degraded copies) and the KADID-10k
//! copies ([`keepers::train::degrade`]). Runs on the CPU.

mod common;

use std::path::{Path, PathBuf};

use image::RgbImage;
use keepers::library::decode::load_rgb;
use keepers::model::multilevel::{self, LevelsPlan, STATS_DIM, Taps};
use keepers::model::quality::{self, CONFIG_FILE, MODEL_ID, QualityError, QualityModel, QualityScore, WEIGHTS_FILE};
use keepers::model::weights::WeightsFile;
use keepers::train::degrade;

fn weights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights")
}

fn model() -> QualityModel {
    QualityModel::load(&weights_dir().join(CONFIG_FILE), &WeightsFile::EfficientNetLite0.path(), &candle_core::Device::Cpu)
        .expect("the shipped quality model loads")
}

/// The bundled sample album (real photographs, licences in assets/samples/LICENSES.md).
fn samples() -> Vec<(String, RgbImage)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "png")))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the bundled samples in {}", dir.display());
    files.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), load_rgb(p).unwrap())).collect()
}

fn score_all(m: &QualityModel, imgs: &[RgbImage]) -> Vec<QualityScore> {
    let refs: Vec<&RgbImage> = imgs.iter().collect();
    m.score(&refs).unwrap()
}

/// Scores each photo beside its degraded copies (one forward per photo), prints a row per photo,
/// and returns per check (lower, of): how many copies scored below their original.
fn copies_table(m: &QualityModel, photos: &[(String, RgbImage)]) -> Vec<(usize, usize)> {
    let names: Vec<&str> = degrade::CHECKS.iter().map(|c| c.name).collect();
    println!("{:<42} original | {}", "photo", names.join(" | "));
    let mut counted = vec![(0usize, 0usize); degrade::CHECKS.len()];
    for (i, (name, img)) in photos.iter().enumerate() {
        let copies = degrade::degraded_copies(img, i as u64).unwrap();
        let mut imgs = vec![img.clone()];
        imgs.extend(copies.iter().flatten().cloned());
        let s: Vec<f64> = score_all(m, &imgs).iter().map(|q| q.score as f64).collect();
        assert!(s.iter().all(|v| v.is_finite()));
        let mut next = s[1..].iter();
        let mut line = Vec::new();
        for (k, c) in copies.iter().enumerate() {
            match c {
                Some(_) => {
                    let v = *next.next().unwrap();
                    counted[k].1 += 1;
                    counted[k].0 += usize::from(v < s[0]);
                    line.push(format!("{v:6.2}"));
                }
                None => line.push("     -".to_string()),
            }
        }
        println!("{name:<42} {:8.2} {}", s[0], line.join(" "));
    }
    counted
}

/// The acceptance check `keepers train-quality` applied before shipping
/// (`keepers::train::degrade::CHECKS`: Gaussian blur, JPEG q8 + noise, motion blur, 1.5 stops
/// under, 1 stop over, JPEG q10), redone on the bundled sample photos with the shipped model
/// from pixels: each photo's copies scored beside it give exactly the counts the training run
/// recorded for these photos (`acceptance.checked[].sample_photos` of the shipped plan, the last
/// one checked), and the pooled counts it recorded (with the out-of-fold training photos) pass.
#[test]
fn degraded_copies_score_lower_on_the_sample_album() {
    let m = model();
    let photos = samples();
    let counted = copies_table(&m, &photos);
    let originals: Vec<RgbImage> = photos.iter().map(|(_, i)| i.clone()).collect();
    let check = degrade::acceptance(&originals, |imgs| -> Result<Vec<f64>, image::ImageError> {
        Ok(m.score(imgs).unwrap().iter().map(|q| q.score as f64).collect())
    })
    .unwrap();
    println!("{check}");
    assert_eq!(check.photos, photos.len());
    assert_eq!(check.checks.iter().map(|c| (c.lower, c.of)).collect::<Vec<_>>(), counted, "one batch = photo by photo");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(weights_dir().join(CONFIG_FILE)).unwrap()).unwrap();
    let shipped = json["training"]["acceptance"]["checked"].as_array().unwrap().last().unwrap();
    let recorded = |part: &str| -> Vec<(u64, u64)> {
        shipped[part]["checks"].as_array().unwrap().iter().map(|c| (c["lower"].as_u64().unwrap(), c["of"].as_u64().unwrap())).collect()
    };
    assert_eq!(recorded("sample_photos"), counted.iter().map(|&(l, o)| (l as u64, o as u64)).collect::<Vec<_>>(), "{shipped}");
    assert_eq!(shipped["passed"], true);
    for (lower, of) in recorded("pooled") {
        assert!(of > 0 && lower as f64 >= degrade::ACCEPT_FRACTION * of as f64, "{shipped}");
    }
    // The copies really are degraded: blur removes detail, the JPEG + noise copy differs.
    let (o, b) = (&originals[0], degrade::blurred(&originals[0]));
    let diff =
        |x: &RgbImage, y: &RgbImage| x.iter().zip(y.iter()).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / x.len() as f64;
    assert!(diff(o, &b) > 1.0 && diff(o, &degrade::compressed_noisy(o, 0).unwrap()) > 5.0);
    assert!(diff(o, &degrade::motion_blurred(o)) > 1.0);
    let dark = degrade::underexposed(o);
    let mean = |x: &RgbImage| x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    assert!(mean(&dark) < 0.75 * mean(o) && mean(&dark) > 0.5 * mean(o), "1.5 stops in linear light: x0.62 in 2.2-gamma values");
}

/// The same checks on the photos as the app scores them (decoded to a long side of 1024 px,
/// `ScoringConfig::DEFAULT_MAX_SIDE`; the test above uses full resolution, as training did), the
/// degradations applied at that size. Blur, JPEG + noise, motion blur and JPEG q10 pass the
/// shipping rule (at least `ACCEPT_FRACTION` of the photos). Exposure is the model's known
/// weakness (`weights/quality.md`, "Limitations"): at this size 1.5 stops under scores lower for
/// 11 of 14 photos, one short of the rule, and 1 stop over for 13 of 14; those counts are pinned
/// so that the card stays true of the shipped model.
#[test]
fn degraded_copies_score_lower_at_the_apps_decode_size() {
    let m = model();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let size = keepers::library::decode::Size::Fit(keepers::worker::ScoringConfig::DEFAULT_MAX_SIDE);
    let photos: Vec<(String, RgbImage)> = keepers::library::scan::list_photos(&dir)
        .0
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), keepers::library::decode::decode_path(p, size).unwrap().image))
        .collect();
    assert_eq!(photos.len(), 16);
    let counted = copies_table(&m, &photos);
    let check = degrade::Acceptance {
        photos: photos.len(),
        checks: degrade::CHECKS.iter().zip(&counted).map(|(c, &(lower, of))| degrade::CheckCount { name: c.name, lower, of }).collect(),
    };
    println!("{check}");
    for c in &check.checks {
        match c.name {
            n if n.starts_with("underexposed") => assert_eq!((c.lower, c.of), (11, 14), "{check}"),
            n if n.starts_with("overexposed") => assert_eq!((c.lower, c.of), (13, 14), "{check}"),
            _ => assert!(c.passed() && c.of == 16, "{check}"),
        }
    }
}

/// An exposure change is checked only on photos not already wrong that way: mean linear
/// luminance against middle grey (0.18) within a stop, by a reference computed here per pixel;
/// counts skip the photos a check does not apply to, and pooling adds them up.
#[test]
fn exposure_checks_skip_photos_already_wrong_that_way() {
    // sRGB 118 is 0.18 linear (118/255)^2.2 = 0.1833; 84 is 0.0838 (under 0.09); 171 is 0.415.
    let grey = |v: u8| RgbImage::from_pixel(40, 30, image::Rgb([v; 3]));
    let reference = |v: u8| (v as f64 / 255.0).powf(2.2);
    assert!((degrade::mean_luminance(&grey(118)) - reference(118)).abs() < 1e-12);
    let two = RgbImage::from_fn(40, 30, |x, _| image::Rgb(if x < 20 { [255, 0, 0] } else { [0, 0, 255] }));
    assert!((degrade::mean_luminance(&two) - (0.2126 + 0.0722) / 2.0).abs() < 1e-12, "Rec. 709 weights");
    let under = degrade::CHECKS.iter().position(|c| c.name.starts_with("underexposed")).unwrap();
    let over = degrade::CHECKS.iter().position(|c| c.name.starts_with("overexposed")).unwrap();
    let present = |v: u8| degrade::degraded_copies(&grey(v), 0).unwrap().iter().map(Option::is_some).collect::<Vec<_>>();
    let (mid, dark, bright) = (present(118), present(84), present(171));
    assert!(mid.iter().all(|&p| p), "a middle-grey photo gets every copy");
    assert!(!dark[over] && dark[under], "no brighter copy of a dark photo");
    assert!(!bright[under] && bright[over], "no darker copy of a bright photo");
    assert_eq!(dark.iter().filter(|&&p| p).count(), degrade::CHECKS.len() - 1);
    // Counting: copies[check][photo]; the dark photo has no overexposure copy.
    let original = [5.0, 5.0];
    let mut copies = vec![vec![Some(4.0), Some(6.0)]; degrade::CHECKS.len()];
    copies[over] = vec![Some(4.0), None];
    let a = degrade::Acceptance::count(&original, &copies);
    assert_eq!((a.checks[over].lower, a.checks[over].of), (1, 1));
    assert_eq!((a.checks[under].lower, a.checks[under].of), (1, 2));
    assert!(a.checks[over].passed() && !a.checks[under].passed() && !a.passed());
    let p = a.pooled(&a);
    assert_eq!((p.photos, p.checks[over].lower, p.checks[over].of, p.checks[under].of), (4, 2, 2, 4));
    assert_eq!(p.check(degrade::CHECKS[over].name), Some(p.checks[over]));
}

/// Motion blur is a box average along rows only: a vertical edge is spread over the streak's
/// length, a horizontal edge is left sharp, and a flat image is unchanged.
#[test]
fn motion_blur_streaks_along_rows_only() {
    let (w, h) = (600u32, 400u32);
    let len = degrade::motion_length(&RgbImage::new(w, h));
    assert_eq!(len, 7, "1 % of 600 px is 6, made odd");
    let vertical_edge = RgbImage::from_fn(w, h, |x, _| image::Rgb(if x < 300 { [0; 3] } else { [210; 3] }));
    let b = degrade::motion_blurred(&vertical_edge);
    let row: Vec<u8> = (290..310).map(|x| b.get_pixel(x, 200)[0]).collect();
    // Pixel x averages x-3..=x+3: 0 up to x = 296, 30 per step after, 210 from x = 303.
    assert_eq!(&row[..7], &[0, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(&row[7..14], &[30, 60, 90, 120, 150, 180, 210][..], "{row:?}");
    let horizontal_edge = RgbImage::from_fn(w, h, |_, y| image::Rgb(if y < 200 { [0; 3] } else { [210; 3] }));
    assert_eq!(degrade::motion_blurred(&horizontal_edge), horizontal_edge);
    let flat = RgbImage::from_pixel(w, h, image::Rgb([12, 128, 250]));
    assert_eq!(degrade::motion_blurred(&flat), flat);
}

/// The acceptance check rejects a score that reads noise as detail: mean horizontal gradient
/// magnitude (a naive sharpness measure) ranks every blurred copy lower, but the JPEG + noise
/// copies higher, so it fails; the same measure negated fails on blur.
#[test]
fn acceptance_check_rejects_a_score_that_reads_noise_as_detail() {
    let photos: Vec<RgbImage> = samples().into_iter().map(|(_, i)| i).take(6).collect();
    let energy = |img: &RgbImage| -> f64 {
        let (w, h) = img.dimensions();
        let mut sum = 0.0;
        for y in 0..h {
            for x in 1..w {
                sum += (img.get_pixel(x, y)[1] as f64 - img.get_pixel(x - 1, y)[1] as f64).abs();
            }
        }
        sum / ((w - 1) * h) as f64
    };
    let sharp =
        degrade::acceptance(&photos, |imgs| -> Result<Vec<f64>, image::ImageError> { Ok(imgs.iter().map(|i| energy(i)).collect()) })
            .unwrap();
    let blur = degrade::CHECKS[0].name;
    let noise = degrade::CHECKS[1].name;
    assert_eq!((sharp.photos, sharp.check(blur).map(|c| (c.lower, c.of))), (6, Some((6, 6))), "{sharp}");
    assert!(sharp.check(noise).unwrap().lower <= 1 && !sharp.passed(), "{sharp}");
    let smooth =
        degrade::acceptance(&photos, |imgs| -> Result<Vec<f64>, image::ImageError> { Ok(imgs.iter().map(|i| -energy(i)).collect()) })
            .unwrap();
    assert!(smooth.check(blur).unwrap().lower == 0 && !smooth.passed(), "{smooth}");
}

/// Feature plans name their taps (`:dw`, `:all`), round-trip through their names, size their
/// vectors and column weights by them, and a plan saved before taps existed reads as stage taps.
#[test]
fn plans_name_their_taps_and_old_plans_read_as_stage_taps() {
    let dw = LevelsPlan::parse("grid:b0.5:p0.5:dw").unwrap();
    assert_eq!((dw.taps, dw.dim(), dw.column_weights().len()), (Taps::Depthwise, multilevel::DW_DIM, multilevel::DW_DIM));
    assert_eq!(LevelsPlan::parse(&dw.name()), Some(dw.clone()));
    let all = LevelsPlan::parse("grid+full:all").unwrap();
    assert_eq!((all.taps, all.dim()), (Taps::All, 2 * (STATS_DIM + multilevel::DW_DIM)));
    assert_eq!(LevelsPlan::parse(&all.name()), Some(all));
    assert!(LevelsPlan::parse("grid:xy").is_none());
    let old: LevelsPlan = serde_json::from_str(r#"{"views":["grid"],"brisque":false,"balance":1.0,"power":0.5}"#).unwrap();
    assert_eq!((old.taps, old.dim()), (Taps::Stages, STATS_DIM));
    assert_eq!(old.augment, 0.0, "plans saved before degraded copies existed were fitted without them");
    // Degraded copies: a training weight in the name, on grid-only plans (copies have no other view).
    let aug = LevelsPlan::parse("grid:p0.5:dw:a0.1").unwrap();
    assert_eq!((aug.augment, aug.taps, aug.dim()), (0.1, Taps::Depthwise, multilevel::DW_DIM));
    assert_eq!(LevelsPlan::parse(&aug.name()), Some(aug));
    assert!(LevelsPlan::parse("grid+full:a0.1").is_none() && LevelsPlan::parse("grid+brisque:a0.1").is_none());
    assert!(LevelsPlan::parse("grid:a-1").is_none());
}

/// The KADID-10k copies of the training photos: white noise of the level's sigma (measured on a
/// flat mid-grey image: mean 128, std within 2 % of sigma, seeded and reproducible), Gaussian
/// blur that removes detail and keeps the mean; targets shrink with the level within each type.
#[test]
fn kadid_copies_have_their_levels_and_targets_order_by_level() {
    let grey = RgbImage::from_pixel(200, 150, image::Rgb([128, 128, 128]));
    for c in degrade::KADID_COPIES.iter().filter(|c| c.distortion == degrade::Distortion::WhiteNoise) {
        let a = c.apply(&grey, 3);
        assert_eq!(a, c.apply(&grey, 3), "seeded");
        assert_ne!(a, c.apply(&grey, 4));
        let v: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((mean - 128.0).abs() < 0.5 && (std / c.param - 1.0).abs() < 0.02, "{}: mean {mean} std {std}", c.name());
    }
    let photo = samples().remove(0).1;
    let energy = |img: &RgbImage| img.pixels().zip(img.pixels().skip(1)).map(|(a, b)| (a[1] as f64 - b[1] as f64).abs()).sum::<f64>();
    let mean = |img: &RgbImage| img.iter().map(|&x| x as f64).sum::<f64>() / img.len() as f64;
    let mut last = energy(&photo);
    for c in degrade::KADID_COPIES.iter().filter(|c| c.distortion == degrade::Distortion::GaussianBlur) {
        let b = c.apply(&photo, 0);
        assert!(energy(&b) < 0.9 * last, "{} removes detail", c.name());
        assert!((mean(&b) - mean(&photo)).abs() < 1.0);
        last = energy(&b);
    }
    for kind in [degrade::Distortion::WhiteNoise, degrade::Distortion::GaussianBlur] {
        let f: Vec<f64> = degrade::KADID_COPIES.iter().filter(|c| c.distortion == kind).map(|c| c.fraction()).collect();
        assert!(f.len() >= 2 && f.windows(2).all(|w| w[0] > w[1]) && f.iter().all(|v| (0.0..1.0).contains(v)), "{kind:?}: {f:?}");
    }
}

/// Weighted ridge with degraded copies, checked against its optimality conditions written out
/// independently: with residuals `e = y - prediction` over originals (weight 1) and copies
/// (weight `r`, targets `lo + (y - lo) f`), `sum r e = 0` (free intercept) and
/// `sum r e x_j = lambda w_j s_j^2` per column (`s_j` the originals' std over the column weight).
/// A copy of weight 2 equals two identical copies of weight 1, and weight 0 is the plain fit.
#[test]
fn weighted_ridge_with_copies_meets_its_optimality_conditions() {
    use keepers::train::ridge::{Copies, RidgeProblem, column_stats};
    let mut rng = common::Rng::new(11);
    for (n, d) in [(15, 4), (12, 30)] {
        let x: Vec<Vec<f64>> = (0..n).map(|_| (0..d).map(|j| 5.0 + (1.0 + j as f64 * 0.3) * rng.normal()).collect()).collect();
        let y: Vec<f64> = x.iter().map(|r| 20.0 + r[0] * 3.0 - r[1] + 2.0 * rng.normal()).collect();
        let c1: Vec<Vec<f64>> = x.iter().map(|r| r.iter().map(|v| 0.7 * v + 0.3 * rng.normal()).collect()).collect();
        let c2: Vec<Vec<f64>> = x.iter().map(|r| r.iter().map(|v| v + 1.0 + rng.normal()).collect()).collect();
        let rows: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
        let cw: Vec<f64> = (0..d).map(|j| if j % 3 == 0 { 1.5 } else { 0.8 }).collect();
        let copies = |w: f64, twice: bool| Copies {
            rows: if twice {
                vec![
                    c1.iter().map(Vec::as_slice).collect(),
                    c1.iter().map(Vec::as_slice).collect(),
                    c2.iter().map(Vec::as_slice).collect(),
                    c2.iter().map(Vec::as_slice).collect(),
                ]
            } else {
                vec![c1.iter().map(Vec::as_slice).collect(), c2.iter().map(Vec::as_slice).collect()]
            },
            frac: if twice { vec![0.6, 0.6, 0.3, 0.3] } else { vec![0.6, 0.3] },
            weight: w,
        };
        let lambda = 0.7;
        let c = copies(0.4, false);
        let head = RidgeProblem::augmented(&rows, &y, Some(&cw), Some(&c)).fit(lambda).unwrap();
        // The conditions, from scratch.
        let lo = y.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut all: Vec<(&[f64], f64, f64)> = rows.iter().zip(&y).map(|(r, t)| (*r, *t, 1.0)).collect();
        for (cx, f) in [(&c1, 0.6), (&c2, 0.3)] {
            all.extend(cx.iter().zip(&y).map(|(r, t)| (r.as_slice(), lo + (t - lo) * f, 0.4)));
        }
        let (_, std) = column_stats(&rows);
        let e: Vec<f64> = all.iter().map(|(r, t, _)| t - head.predict(r)).collect();
        let scale = y.iter().map(|v| v.abs()).sum::<f64>();
        let intercept: f64 = all.iter().zip(&e).map(|((_, _, w), e)| w * e).sum();
        assert!(intercept.abs() < 1e-8 * scale, "intercept condition {intercept}");
        for j in 0..d {
            let lhs: f64 = all.iter().zip(&e).map(|((r, _, w), e)| w * e * r[j]).sum();
            let s = std[j] / cw[j];
            let rhs = lambda * head.w[j] * s * s;
            assert!((lhs - rhs).abs() < 1e-7 * (1.0 + lhs.abs()), "column {j} (n {n}, d {d}): {lhs} vs {rhs}");
        }
        // Weight 2 = two copies of weight 1; weight 0 = no copies.
        let h2 = RidgeProblem::augmented(&rows, &y, Some(&cw), Some(&copies(0.8, false))).fit(lambda).unwrap();
        let h11 = RidgeProblem::augmented(&rows, &y, Some(&cw), Some(&copies(0.4, true))).fit(lambda).unwrap();
        for (a, b) in h2.w.iter().zip(&h11.w).chain([(&h2.bias, &h11.bias)]) {
            assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
        }
        let h0 = RidgeProblem::augmented(&rows, &y, Some(&cw), Some(&copies(0.0, false))).fit(lambda).unwrap();
        let plain = RidgeProblem::weighted(&rows, &y, Some(&cw)).fit(lambda).unwrap();
        assert_eq!(h0, plain);
        // Copies pull the fit: their predictions move toward their (lower) targets.
        let copy_gap = |h: &keepers::model::multilevel::LinearHead| -> f64 {
            all[n..].iter().map(|(r, t, _)| (h.predict(r) - t).powi(2)).sum::<f64>()
        };
        assert!(copy_gap(&head) < copy_gap(&plain));
    }
}

#[test]
fn batch_scoring_equals_one_by_one_and_patches_tile_the_photo() {
    let m = model();
    let mut imgs: Vec<RgbImage> = samples().into_iter().map(|(_, i)| i).step_by(3).collect();
    // A photo smaller than a patch on one side, and one on both (enlarged before cropping).
    imgs.push(image::imageops::resize(&imgs[0], 300, 150, image::imageops::FilterType::Triangle));
    imgs.push(image::imageops::resize(&imgs[1], 120, 90, image::imageops::FilterType::Triangle));
    let batch = score_all(&m, &imgs);
    assert_eq!(batch.len(), imgs.len());
    for (img, b) in imgs.iter().zip(&batch) {
        let single = m.score(&[img]).unwrap().remove(0);
        assert!((single.score - b.score).abs() < 1e-4, "batch {} vs single {}", b.score, single.score);
        assert_eq!(single.patches.len(), b.patches.len());
        for (p, q) in single.patches.iter().zip(&b.patches) {
            assert!((p.score - q.score).abs() < 1e-4, "patch batch {} vs single {}", q.score, p.score);
            assert_eq!(p.rect, q.rect);
        }

        let (w, h) = (img.width() as f64, img.height() as f64);
        let n = b.patches.len();
        assert!((1..=16).contains(&n), "{n} patches");
        let eps = 1e-6;
        let mut area = 0.0;
        for (i, p) in b.patches.iter().enumerate() {
            let (r, c) = (p.rect, p.cell);
            assert!(p.score.is_finite());
            // The patch the backbone saw lies inside the photo and overlaps its cell.
            assert!(r.x >= -eps && r.y >= -eps && r.x + r.w <= w + eps && r.y + r.h <= h + eps, "{r:?} outside {w}x{h}");
            // 224 photo pixels, or the shorter side for a photo enlarged first (to a pixel).
            let side = 224f64.min(w.min(h));
            let tol = if w.min(h) < 224.0 { 1.0 } else { 1e-9 };
            assert!((r.w - side).abs() <= tol && (r.h - side).abs() <= tol, "{r:?} should be {side} square");
            let ix = (r.x + r.w).min(c.x + c.w) - r.x.max(c.x);
            let iy = (r.y + r.h).min(c.y + c.h) - r.y.max(c.y);
            assert!(ix > 0.0 && iy > 0.0, "patch {r:?} misses its cell {c:?}");
            assert!(c.x >= -eps && c.y >= -eps && c.x + c.w <= w + eps && c.y + c.h <= h + eps);
            area += c.w * c.h;
            // Cells do not overlap.
            for q in &b.patches[i + 1..] {
                let ox = (c.x + c.w).min(q.cell.x + q.cell.w) - c.x.max(q.cell.x);
                let oy = (c.y + c.h).min(q.cell.y + q.cell.h) - c.y.max(q.cell.y);
                assert!(ox <= eps || oy <= eps, "cells {c:?} and {:?} overlap", q.cell);
            }
        }
        assert!((area - w * h).abs() < 1e-6 * w * h, "cells cover {area} of {}", w * h);
    }
    // Large photos get the full 4 x 4 grid.
    assert_eq!(batch[0].patches.len(), 16);
}

/// The heatmap points at a local defect. In each sample photo as the app decodes it (1024 px),
/// the region one grid patch sees is blurred (the acceptance check's Gaussian, sigma 3) or given
/// noise (sigma 12), for two patches per photo (the first, and the middle one). Every blurred
/// patch then scores lower than it did and lower than its photo's patch average (red in the app),
/// and it is the photo's lowest patch in at least 90 % of cases; noise does the same in at least
/// 80 %. Patches that do not see the changed pixels keep their score (1e-3): a patch's heatmap
/// value is its own, not the photo's. On all 191 patches of the album (an experiment run while
/// writing this test) blur gave 191 lower, 191 below the average, 180 lowest; noise 181, 176, 90.
#[test]
fn the_heatmap_marks_a_locally_degraded_region() {
    let m = model();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let size = keepers::library::decode::Size::Fit(keepers::worker::ScoringConfig::DEFAULT_MAX_SIDE);
    let paths = keepers::library::scan::list_photos(&dir).0;
    let overlaps = |a: &keepers::model::views::Rect, b: &keepers::model::views::Rect| {
        (a.x + a.w).min(b.x + b.w) > a.x.max(b.x) && (a.y + a.h).min(b.y + b.h) > a.y.max(b.y)
    };
    // (check, lower than before, below the patch average, lowest patch, of)
    let mut counts = [("blur", 0, 0, 0, 0), ("noise", 0, 0, 0, 0)];
    for (i, p) in paths.iter().enumerate() {
        let img = keepers::library::decode::decode_path(p, size).unwrap().image;
        let base = m.score(&[&img]).unwrap().remove(0);
        let chosen = [0, base.patches.len() / 2];
        let mut copies = Vec::new();
        for &k in &chosen {
            let r = base.patches[k].rect;
            let (x, y) = (r.x.round() as u32, r.y.round() as u32);
            let region = image::imageops::crop_imm(&img, x, y, r.w.round() as u32, r.h.round() as u32).to_image();
            for bad in [degrade::blurred(&region), degrade::noisy(&region, degrade::NOISE_SIGMA, (i * 16 + k) as u64)] {
                let mut copy = img.clone();
                image::imageops::replace(&mut copy, &bad, x as i64, y as i64);
                copies.push(copy);
            }
        }
        let scored = score_all(&m, &copies);
        for (j, s) in scored.iter().enumerate() {
            let (k, check) = (chosen[j / 2], j % 2);
            assert_eq!(s.patches.len(), base.patches.len());
            let patch = s.patches[k].score;
            let average = s.patches.iter().map(|q| q.score).sum::<f32>() / s.patches.len() as f32;
            let c = &mut counts[check];
            c.1 += usize::from(patch < base.patches[k].score);
            c.2 += usize::from(patch < average);
            c.3 += usize::from(s.patches.iter().all(|q| q.score >= patch));
            c.4 += 1;
            println!(
                "{:<40} patch {k:2} {:<5} {:6.1} -> {patch:6.1} (average {average:5.1})",
                p.file_name().unwrap().to_string_lossy(),
                c.0,
                base.patches[k].score
            );
            for (q, q0) in s.patches.iter().zip(&base.patches) {
                if !overlaps(&q.rect, &base.patches[k].rect) {
                    assert!(
                        (q.score - q0.score).abs() < 1e-3,
                        "{}: a patch away from the change moved {} -> {}",
                        p.display(),
                        q0.score,
                        q.score
                    );
                }
            }
        }
    }
    println!("{counts:?}");
    let (_, lower, red, lowest, of) = counts[0];
    assert_eq!(of, 2 * paths.len());
    assert!(lower == of && red == of && lowest as f64 >= 0.9 * of as f64, "blur: {:?}", counts[0]);
    let (_, lower, red, lowest, of) = counts[1];
    assert!(lower as f64 >= 0.8 * of as f64 && red as f64 >= 0.8 * of as f64 && lowest as f64 >= 0.4 * of as f64, "noise: {:?}", counts[1]);
}

#[test]
fn scores_rank_live_challenge_extremes_training_set_sanity() {
    // These photos were in the training set: this checks that the shipped files and the app's
    // inference path reproduce what was fitted, not how well the model generalises (see
    // weights/quality.md for the cross-validated figures).
    let dir = common::livec_dir();
    let mut rows: Vec<(String, f64)> = std::fs::read_to_string(dir.join("labels.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect();
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let pick: Vec<&(String, f64)> = rows.iter().take(8).chain(rows.iter().rev().take(8)).collect();
    let imgs: Vec<RgbImage> = pick.iter().map(|(f, _)| load_rgb(&dir.join("images").join(f)).unwrap()).collect();
    let s = score_all(&model(), &imgs);
    let low: f32 = s[..8].iter().map(|q| q.score).sum::<f32>() / 8.0;
    let high: f32 = s[8..].iter().map(|q| q.score).sum::<f32>() / 8.0;
    println!("lowest-MOS 8: mean score {low:.1}; highest-MOS 8: {high:.1}");
    assert!(high > low + 10.0, "high-MOS photos {high} vs low-MOS photos {low}");
    assert!(s.iter().all(|q| (0.0..=100.0).contains(&q.score)));
}

#[test]
fn a_missing_or_tampered_file_is_a_typed_error() {
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let dev = candle_core::Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();

    // No config at all: "not trained yet".
    let e = QualityModel::load(&tmp.path().join(CONFIG_FILE), &lite0, &dev).unwrap_err();
    assert!(matches!(e, QualityError::NotTrained { .. }) && e.is_not_trained(), "{e}");
    assert!(e.to_string().contains("not trained yet"));

    // The config without its weights file: also "not trained", naming the weights file.
    std::fs::copy(weights_dir().join(CONFIG_FILE), tmp.path().join(CONFIG_FILE)).unwrap();
    let e = QualityModel::load(&tmp.path().join(CONFIG_FILE), &lite0, &dev).unwrap_err();
    match &e {
        QualityError::NotTrained { path } => assert!(path.ends_with(WEIGHTS_FILE), "{e}"),
        other => panic!("expected NotTrained, got {other}"),
    }

    // A changed weights file is refused by its checksum.
    let mut bytes = std::fs::read(weights_dir().join(WEIGHTS_FILE)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(tmp.path().join(WEIGHTS_FILE), &bytes).unwrap();
    let e = QualityModel::load(&tmp.path().join(CONFIG_FILE), &lite0, &dev).unwrap_err();
    assert!(matches!(e, QualityError::Checksum { .. }), "{e}");

    // The shipped pair loads and says what it is.
    let m = model();
    assert_eq!(quality::MODEL_ID, MODEL_ID);
    assert_eq!(m.version().len(), 12);
    assert!(m.config().weights_sha256.starts_with(m.version()));
}

/// `cargo test --release --test quality -- --ignored --nocapture`: seconds per photo as the app
/// decodes it (1024 x 768) and per 12-MP photo (4000 x 3000), decode excluded, for the shipped
/// model and the previous DMA-fc.
#[test]
#[ignore]
fn time_per_photo() {
    let legacy = QualityModel::load(
        &weights_dir().join(quality::LEGACY_DMA_CONFIG_FILE),
        &WeightsFile::EfficientNetLite0.path(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for (name, m) in [("multi-level (shipped)", model()), ("dma-fc (previous)", legacy)] {
        for (w, h) in [(1024, 768), (4000, 3000)] {
            let img = image::imageops::resize(&samples()[0].1, w, h, image::imageops::FilterType::Triangle);
            m.score(&[&img]).unwrap();
            let reps = 3;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                m.score(&[&img]).unwrap();
            }
            println!(
                "{name}: {:.3} s per {w} x {h} photo ({} threads)",
                t.elapsed().as_secs_f64() / reps as f64,
                rayon::current_num_threads()
            );
        }
    }
}

/// The features `score_and_features` hands to the taste panel are the grid patches' final pooled
/// 1280-d Lite0 features, exactly as `FoldedLite::features` computes them; the multi-level
/// vector's head means are the same numbers.
#[test]
fn score_and_features_returns_the_grid_patches_pooled_lite0_features() {
    let m = model();
    let img = samples().into_iter().find(|(n, _)| n == "coffee.png").unwrap().1;
    let (q, feats) = m.score_and_features(&[&img]).unwrap().remove(0);
    let grid = quality::grid_patches(&img, m.config().grid_max, quality::PATCH);
    assert_eq!(q.patches.len(), grid.len());
    assert_eq!(feats.len(), grid.len() * 1280);
    let net =
        keepers::model::imagenet::load_lite0(&WeightsFile::EfficientNetLite0.path(), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap()
            .fold(candle_core::DType::F32)
            .unwrap();
    let imgs: Vec<&RgbImage> = grid.iter().map(|g| &g.patch.image).collect();
    let x = keepers::model::systems::patches_tensor(&imgs, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let pooled = net.features(&x).unwrap().pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let worst = feats.iter().zip(&pooled).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "taste features differ from the pooled Lite0 features by {worst}");
    let (stats, pooled2) = multilevel::multilevel_stats(&net, &x, Taps::Stages).unwrap();
    assert_eq!(stats.dims(), &[grid.len(), STATS_DIM]);
    let head_means = stats.narrow(1, multilevel::HEAD_MEAN_OFFSET, 1280).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let p2 = pooled2.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(head_means.iter().zip(&p2).all(|(a, b)| (a - b).abs() < 1e-5));
    // Standard deviations are non-negative.
    let s = stats.to_vec2::<f32>().unwrap();
    assert!(s.iter().all(|r| r[32..64].iter().all(|v| *v >= 0.0 && v.is_finite())));
}

/// The shipped model is the multi-level ridge model; the previous DMA-fc files still load and score.
#[test]
fn the_shipped_model_is_multilevel_and_the_previous_dma_fc_still_loads() {
    let m = model();
    assert_eq!(m.config().system, quality::MULTILEVEL_SYSTEM);
    let plan = m.config().levels.clone().expect("a feature plan");
    assert_eq!(LevelsPlan::parse(&plan.name()), Some(plan));
    let legacy = QualityModel::load(
        &weights_dir().join(quality::LEGACY_DMA_CONFIG_FILE),
        &WeightsFile::EfficientNetLite0.path(),
        &candle_core::Device::Cpu,
    )
    .expect("the previous DMA-fc model loads");
    assert_eq!(legacy.config().system, "DMA-fc");
    let img = samples().into_iter().find(|(n, _)| n == "coffee.png").unwrap().1;
    let q = legacy.score(&[&img]).unwrap().remove(0);
    assert!(q.score.is_finite() && !q.patches.is_empty());
}

/// Ridge in closed form recovers a linear function of standardised features; block weights and the
/// standardisation are folded into the head; the inner CV picks a small penalty on clean data.
#[test]
fn ridge_recovers_a_linear_function_and_folds_its_standardisation() {
    let mut rng = common::Rng::new(7);
    let (n, d) = (120, 40);
    let truth: Vec<f64> = (0..d).map(|j| if j < 5 { 1.0 + j as f64 } else { 0.0 }).collect();
    let x: Vec<Vec<f64>> = (0..n).map(|_| (0..d).map(|j| 10.0 + (j as f64 + 1.0) * rng.normal()).collect()).collect();
    let y: Vec<f64> = x.iter().map(|r| 3.0 + r.iter().zip(&truth).map(|(a, b)| a * b).sum::<f64>()).collect();
    let rows: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
    let head = keepers::train::ridge::fit(&rows, &y, 1e-6, None).unwrap();
    for (r, t) in rows.iter().zip(&y) {
        assert!((head.predict(r) - t).abs() < 1e-3 * t.abs().max(1.0), "{} vs {t}", head.predict(r));
    }
    let weights: Vec<f64> = (0..d).map(|j| if j % 2 == 0 { 2.0 } else { 0.5 }).collect();
    let h2 = keepers::train::ridge::fit(&rows, &y, 1e-6, Some(&weights)).unwrap();
    assert!((h2.predict(rows[0]) - y[0]).abs() < 1e-3 * y[0].abs());
    let grid = [1e-4, 1e-2, 1.0, 1e2, 1e4];
    let (lambda, means) = keepers::train::ridge::nested_lambda(&rows, &y, &grid, None, 5, 0).unwrap();
    assert_eq!(means.len(), grid.len());
    assert!(lambda <= 1.0, "chose {lambda} for noiseless data: {means:?}");
}

/// `keepers predict` prints the score the model gives, each grid cell's score in full-resolution
/// pixels, and names a photo it cannot read while going on with the others.
#[test]
fn predict_command_prints_the_model_score_and_the_patches() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepers"))
        .args(["predict", "--patches"])
        .arg(samples.join("coffee.png"))
        .arg(samples.join("missing.jpg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one photo could not be read");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("missing.jpg"), "{stderr}");
    // The same score through the library, on the same decode (coffee.png is 600 x 400, under 1024).
    let img = keepers::library::decode::load_rgb(&samples.join("coffee.png")).unwrap();
    let (config, lite0) = keepers::model::quality::default_paths();
    let m = keepers::model::quality::QualityModel::load(&config, &lite0, &candle_core::Device::Cpu).unwrap();
    let q = m.score(&[&img]).unwrap().remove(0);
    assert!(stdout.contains(&format!("quality   {:6.1}", q.score)), "{stdout}");
    let cells = stdout.lines().filter(|l| l.contains("->") && l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count();
    assert_eq!(cells, q.patches.len(), "{stdout}");
    assert!(stdout.contains("aesthetic, style, theme: not trained yet"));

    // The same as JSON Lines and as CSV.
    let run = |format: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_keepers"))
            .args(["predict", "--patches", "--format", format])
            .arg(samples.join("coffee.png"))
            .arg(samples.join("missing.jpg"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        String::from_utf8(o.stdout).unwrap()
    };
    let lines: Vec<serde_json::Value> = run("json").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one object per photo, the unreadable one included");
    assert!((lines[0]["quality"].as_f64().unwrap() - q.score as f64).abs() < 1e-3, "{}", lines[0]);
    let patches = lines[0]["patches"].as_array().unwrap();
    assert_eq!(patches.len(), q.patches.len());
    for (j, p) in patches.iter().zip(&q.patches) {
        assert!((j["score"].as_f64().unwrap() - p.score as f64).abs() < 1e-3);
        assert!((j["w"].as_f64().unwrap() - p.cell.w).abs() < 1e-6, "cells in photo pixels (no downscale here)");
    }
    assert!(lines[1]["error"].as_str().unwrap().contains("missing.jpg"), "{}", lines[1]);
    let csv = run("csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("path,patch,x,y,w,h,quality"));
    assert_eq!(rows.len(), 1 + 2 + q.patches.len(), "{csv}");
    assert!(rows[1].contains(&format!(",{:.3},", q.score)), "{}", rows[1]);
    assert!(
        rows.last().unwrap().contains("missing.jpg") && rows.last().unwrap().ends_with(|c: char| c != ','),
        "the error column is filled"
    );
}
