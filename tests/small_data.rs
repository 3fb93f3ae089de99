//! The small-data procedures on cached frozen-backbone features: a tiny real dataset (bundled
//! photos, each clean and at two known blur levels, the score falling with the blur, as
//! KADID-style quality labels are made), the feature cache, and every cached system's
//! training loss going down with a fixed seed.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use keepers::model::efficientnet_lite::FoldedLite;
use keepers::model::heads::HeadKind;
use keepers::model::imagenet::load_lite0;
use keepers::model::systems::{ColumnKind, System, SystemConfig, SystemId};
use keepers::model::views::GlobalView;
use keepers::model::weights::{WeightsFile, sha256_hex};
use keepers::train::data::Target;
use keepers::train::features::{FeaturePlan, PhotoFeatures, extract};
use keepers::train::small_data::{FitConfig, Standardizer, fit, predict, ranking_score};

const PHOTOS: [&str; 6] = ["chelsea.png", "coffee.png", "china.jpg", "flower.jpg", "rocket.jpg", "astronaut.png"];
const BLUR: [f32; 3] = [0.0, 1.5, 4.0];

fn backbone() -> FoldedLite {
    load_lite0(&WeightsFile::EfficientNetLite0.path(), DType::F32, &Device::Cpu).unwrap().fold(DType::F32).unwrap()
}

/// Writes each photo at 320 px wide, clean and blurred; returns paths and scores (10, 7, 4).
fn tiny_dataset(dir: &Path) -> (Vec<PathBuf>, Vec<f64>) {
    let (mut paths, mut scores) = (Vec::new(), Vec::new());
    for name in PHOTOS {
        let img = keepers::library::decode::load_rgb(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name)).unwrap();
        let h = (img.height() as f64 * 320.0 / img.width() as f64).round() as u32;
        let small = image::imageops::resize(&img, 320, h, image::imageops::FilterType::Triangle);
        for (level, &sigma) in BLUR.iter().enumerate() {
            let out = if sigma > 0.0 { image::imageops::blur(&small, sigma) } else { small.clone() };
            let p = dir.join(format!("{}_{level}.png", name.split('.').next().unwrap()));
            out.save(&p).unwrap();
            paths.push(p);
            scores.push(10.0 - 3.0 * level as f64);
        }
    }
    (paths, scores)
}

#[test]
fn cached_systems_learn_blur_and_the_cache_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut paths, scores) = tiny_dataset(dir.path());
    let net = backbone();
    let plan = FeaturePlan { native: 8, arp: 6, seed: 3 };
    let sha = sha256_hex(&std::fs::read(WeightsFile::EfficientNetLite0.path()).unwrap());
    let cache = dir.path().join("cache");
    // One missing photo and one that is not an image: named, skipped, the rest go on.
    paths.push(dir.path().join("missing.jpg"));
    std::fs::write(dir.path().join("notes.jpg"), b"not a jpeg").unwrap();
    paths.push(dir.path().join("notes.jpg"));
    let (feats, skipped) = extract(&paths, &plan, &net, &sha, Some(&cache), |_, _| {}).unwrap();
    assert_eq!(skipped.skipped.len(), 2, "{skipped}");
    assert!(skipped.paths().iter().any(|p| p.ends_with("missing.jpg")) && skipped.paths().iter().any(|p| p.ends_with("notes.jpg")));
    assert!(feats[..scores.len()].iter().all(|f| f.is_some()) && feats[scores.len()..].iter().all(|f| f.is_none()));
    let f0 = feats[0].as_ref().unwrap();
    assert_eq!(f0.native.dims(), &[8, 1280]);
    assert_eq!(f0.arp.dims(), &[6, 1280]);
    assert_eq!(f0.native_rects.len(), 8);

    // Second run: everything from the cache, identical.
    let mut first_done = None;
    let (again, _) = extract(&paths[..scores.len()], &plan, &net, &sha, Some(&cache), |d, _| {
        first_done.get_or_insert(d);
    })
    .unwrap();
    assert_eq!(first_done, Some(scores.len()), "every photo should come from the cache");
    let a = again[0].as_ref().unwrap();
    assert_eq!(a.native.to_vec2::<f32>().unwrap(), f0.native.to_vec2::<f32>().unwrap());
    assert_eq!(a.native_rects, f0.native_rects);

    let feats: Vec<&PhotoFeatures> = feats.iter().take(scores.len()).map(|f| f.as_ref().unwrap()).collect();
    let std = Standardizer::fit(&scores);
    let score_targets: Vec<Target> = scores.iter().map(|&s| Target { score: Some(s), ..Default::default() }).collect();
    let binary: Vec<Target> = scores.iter().map(|&s| Target { label: Some((s > 8.0) as usize), ..Default::default() }).collect();
    // Distributions centred on the score (10 bins over 1..10).
    let dists: Vec<Target> = scores
        .iter()
        .map(|&s| Target { histogram: Some((1..=10).map(|b| (-(b as f64 - s).powi(2) / 2.0).exp()).collect()), ..Default::default() })
        .collect();
    let cfg = FitConfig { epochs: 12, batch: 6, lr: 2e-3, seed: 7, test_groups: 3, ..Default::default() };
    let lite0 = WeightsFile::EfficientNetLite0.path();
    let mut cases: Vec<(SystemConfig, &[Target])> = Vec::new();
    for (view, id) in
        [(GlobalView::Warp, SystemId::Scnn), (GlobalView::LocalRandomCrop, SystemId::Scnn), (GlobalView::Warp, SystemId::Dcnn)]
    {
        cases.push((SystemConfig { view, ..SystemConfig::new(id, ColumnKind::Lite0, HeadKind::Quality) }, &score_targets));
    }
    for id in [SystemId::DmaStat, SystemId::DmaFc, SystemId::MpAvg, SystemId::MpMin, SystemId::MpAda] {
        cases.push((SystemConfig::new(id, ColumnKind::Lite0, HeadKind::Quality), &score_targets));
    }
    cases.push((SystemConfig::new(SystemId::MpAda, ColumnKind::Lite0, HeadKind::Binary), &binary));
    cases.push((SystemConfig::new(SystemId::DmaStat, ColumnKind::Lite0, HeadKind::ava_distribution()), &dists));
    cases.push((SystemConfig::new(SystemId::ArpMpemd, ColumnKind::Lite0, HeadKind::ava_distribution()), &dists));
    // Same seed, same run: initialisation, patch draws and dropout masks are all seeded.
    let runs: Vec<Vec<f64>> = (0..2)
        .map(|_| {
            let varmap = VarMap::new();
            let cfg_dma = SystemConfig::new(SystemId::DmaStat, ColumnKind::Lite0, HeadKind::Quality);
            let sys = System::build(&cfg_dma, &varmap, DType::F32, &Device::Cpu, &lite0, 5).unwrap();
            let data: Vec<_> = feats.iter().zip(score_targets.iter()).map(|(f, t)| (*f, t)).collect();
            fit(&sys, &varmap, &data, Some(&std), &FitConfig { epochs: 3, ..cfg.clone() }, |_, _| true).unwrap()
        })
        .collect();
    assert_eq!(runs[0], runs[1], "two runs with one seed differ");
    for (sys_cfg, targets) in cases {
        let varmap = VarMap::new();
        let sys = System::build(&sys_cfg, &varmap, DType::F32, &Device::Cpu, &lite0, 11).unwrap();
        let data: Vec<_> = feats.iter().zip(targets.iter()).map(|(f, t)| (*f, t)).collect();
        let hist = fit(&sys, &varmap, &data, Some(&std), &cfg, |_, _| true).unwrap();
        let what = format!("{} ({:?}, {:?})", sys_cfg.id, sys_cfg.view, sys_cfg.head);
        let (first, last) = (hist[0], *hist.last().unwrap());
        assert!(last < 0.9 * first, "{what}: loss {first:.4} -> {last:.4}: {hist:.3?}");
        // Held-in ranking follows the blur (the features see blur easily).
        let preds = predict(&sys, &feats, &cfg).unwrap();
        let r: Vec<f64> = preds.iter().map(|p| ranking_score(p, Some(&std))).collect();
        let clean = r.iter().step_by(3).sum::<f64>();
        let blurred = r.iter().skip(2).step_by(3).sum::<f64>();
        assert!(clean > blurred, "{what}: clean {clean:.3} vs most blurred {blurred:.3}");
    }
}
