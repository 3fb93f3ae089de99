//! The seed systems by id: each builds, runs on real sample photos in training and test mode
//! and returns the documented shapes; DMA ignores patch order; THEME-EMD's padded batch gives
//! each photo what it gives alone, whatever the padding holds; explanations add up to the
//! prediction; RDCNN's frozen column gets no gradient; pre-trained columns hold ImageNet weights.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_nn::VarMap;
use image::RgbImage;
use keepers::library::decode::load_rgb;
use keepers::model::heads::{HeadKind, Prediction};
use keepers::model::imagenet::load_lite0;
use keepers::model::preprocess::imagenet_batch;
use keepers::model::systems::{Batch, Column, ColumnKind, Mode, Prepared, RoiKind, System, SystemConfig, SystemId, load_lite0_into};
use keepers::model::weights::WeightsFile;
use keepers::rng::SeededRng;

fn photo(name: &str) -> RgbImage {
    load_rgb(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name)).unwrap()
}

fn build(cfg: &SystemConfig) -> (System, VarMap) {
    let vm = VarMap::new();
    let sys = System::build(cfg, &vm, DType::F32, &Device::Cpu, &WeightsFile::EfficientNetLite0.path(), 1).unwrap();
    (sys, vm)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite())
}

/// A head for each system, so that every head kind is exercised on several systems.
fn head_for(id: SystemId, i: usize) -> HeadKind {
    if id == SystemId::ArpMpemd || id == SystemId::ThemeEmd {
        return HeadKind::ava_distribution();
    }
    match i % 4 {
        0 => HeadKind::Binary,
        1 => HeadKind::ava_distribution(),
        2 => HeadKind::Styles { tags: vec!["street".into(), "portrait".into(), "landscape".into()] },
        _ => HeadKind::Quality,
    }
}

fn small_test(mut cfg: SystemConfig) -> SystemConfig {
    cfg.test_groups = 2;
    cfg.test_patches = 3;
    cfg.max_side = 160;
    cfg.themes = 7;
    cfg
}

fn check_shapes(sys: &System, photos: &[RgbImage], mode: Mode, seed: u64) {
    let cfg = sys.config();
    let mut rng = SeededRng::new(seed);
    let mut prepared: Vec<Prepared> = photos.iter().map(|p| sys.prepare(p, mode, &mut rng)).collect();
    if cfg.id == SystemId::ThemeEmd {
        prepared[0].theme = Some(3);
    }
    let batch = sys.collate(&prepared, &Device::Cpu).unwrap();
    let out = sys.forward_t(&batch, mode == Mode::Train).unwrap();
    let n = photos.len();
    let k = cfg.head.outputs();
    let what = format!("{} on {} ({mode:?})", cfg.id, cfg.column.name());
    assert_eq!(out.raw.dims(), &[n, k], "{what}");
    assert!(all_finite(&out.raw), "{what}: non-finite output");
    let g = batch.groups;
    let expect_g = match (mode, cfg.id) {
        (Mode::Train, _) => 1,
        (Mode::Test, SystemId::Scnn | SystemId::Dcnn | SystemId::RdcnnStyle | SystemId::RdcnnSemantic) => 2,
        (Mode::Test, SystemId::DmaStat | SystemId::DmaFc | SystemId::DmaImgFu) => 2,
        (Mode::Test, _) => 1,
    };
    assert_eq!(g, expect_g, "{what}: groups");
    if cfg.id != SystemId::DmaImgFu {
        assert_eq!(out.group_raw.dims(), &[n * g, k], "{what}");
    }
    let multi = matches!(
        cfg.id,
        SystemId::DmaStat | SystemId::DmaFc | SystemId::DmaImgFu | SystemId::MpAvg | SystemId::MpMin | SystemId::MpAda | SystemId::ArpMpemd
    );
    if multi {
        let p = batch.patches_per_group;
        let want_p = match (mode, cfg.id) {
            (Mode::Test, SystemId::MpAvg | SystemId::MpMin | SystemId::MpAda | SystemId::ArpMpemd) => 3,
            _ => 5,
        };
        assert_eq!(p, want_p, "{what}: patches");
        let pr = out.patch_raw.as_ref().unwrap_or_else(|| panic!("{what}: no per-patch outputs"));
        assert_eq!(pr.dims(), &[n * g, p, k], "{what}");
        let regions = sys.explain(&batch, &out, 1).unwrap();
        let patches: Vec<_> = regions.iter().filter(|r| !r.cell).collect();
        assert_eq!(patches.len(), g * p, "{what}: explained patches");
        let (w, h) = photos[1].dimensions();
        for r in &patches {
            assert!(r.rect.x >= -0.5 && r.rect.y >= -0.5 && r.rect.x + r.rect.w <= w as f64 + 0.5 && r.rect.y + r.rect.h <= h as f64 + 0.5);
        }
    } else {
        assert!(out.patch_raw.is_none(), "{what}");
    }
    let full_image = !multi || cfg.id == SystemId::DmaImgFu;
    if full_image && matches!(cfg.column, ColumnKind::Lite0) || cfg.id == SystemId::DmaImgFu {
        let m = out.map.as_ref().unwrap_or_else(|| panic!("{what}: no spatial map"));
        assert_eq!(m.dim(3).unwrap(), k, "{what}");
        assert!(all_finite(m), "{what}");
    } else {
        assert!(out.map.is_none(), "{what}");
    }
}

#[test]
fn every_system_runs_on_real_photos_with_either_column() {
    let photos = [photo("chelsea.png"), photo("china.jpg")];
    for (i, id) in SystemId::ALL.into_iter().enumerate() {
        assert_eq!(SystemId::parse(id.name()), Some(id));
        assert_eq!(SystemId::parse(&id.name().to_lowercase().replace('-', "_")), Some(id));
        for column in [ColumnKind::Lite0, ColumnKind::arch1()] {
            let cfg = small_test(SystemConfig::new(id, column, head_for(id, i)));
            let (sys, _) = build(&cfg);
            check_shapes(&sys, &photos, Mode::Train, 10 + i as u64);
            check_shapes(&sys, &photos, Mode::Test, 20 + i as u64);
        }
    }
}

#[test]
fn arp_mpemd_needs_a_distribution_head() {
    let cfg = SystemConfig::new(SystemId::ArpMpemd, ColumnKind::Lite0, HeadKind::Binary);
    let err = System::build(&cfg, &VarMap::new(), DType::F32, &Device::Cpu, &WeightsFile::EfficientNetLite0.path(), 1).unwrap_err();
    assert!(err.to_string().contains("distribution"), "{err}");
}

/// Reorders the patches of every bag in a batch.
fn permute_bag(batch: &Batch, perm: &[usize]) -> Batch {
    let x = batch.pixels.as_ref().unwrap();
    let p = batch.patches_per_group;
    let rows = batch.images * batch.groups;
    let mut idx = Vec::new();
    for r in 0..rows {
        idx.extend(perm.iter().map(|&j| (r * p + j) as u32));
    }
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
    Batch { pixels: Some(x.index_select(&idx, 0).unwrap()), ..batch.clone() }
}

#[test]
fn dma_prediction_does_not_depend_on_patch_order() {
    let photos = [photo("coffee.png"), photo("flower.jpg")];
    for id in [SystemId::DmaStat, SystemId::DmaFc] {
        for column in [ColumnKind::Lite0, ColumnKind::arch1()] {
            let cfg = small_test(SystemConfig::new(id, column, HeadKind::ava_distribution()));
            let (sys, _) = build(&cfg);
            let mut rng = SeededRng::new(5);
            let prep: Vec<_> = photos.iter().map(|p| sys.prepare(p, Mode::Train, &mut rng)).collect();
            let batch = sys.collate(&prep, &Device::Cpu).unwrap();
            let a = sys.forward_t(&batch, false).unwrap();
            let b = sys.forward_t(&permute_bag(&batch, &[3, 0, 4, 2, 1]), false).unwrap();
            assert!(max_diff(&a.raw, &b.raw) < 1e-5, "{id} on {}: {}", cfg.column.name(), max_diff(&a.raw, &b.raw));
            // ... while the patches themselves differ, so the test can fail.
            let pa = a.patch_raw.unwrap();
            assert!(max_diff(&pa.i((.., 0)).unwrap(), &pa.i((.., 1)).unwrap()) > 1e-4);
        }
    }
}

fn theme_cfg(column: ColumnKind, roi: RoiKind) -> SystemConfig {
    let mut cfg = small_test(SystemConfig::new(SystemId::ThemeEmd, column, HeadKind::ava_distribution()));
    cfg.max_side = 150;
    cfg.roi = roi;
    cfg
}

#[test]
fn theme_emd_padded_batch_equals_each_photo_alone() {
    // Different sizes and aspect ratios; 150-px caps give odd sizes that get cropped to tau.
    let photos = [photo("hubble_deep_field.jpg"), photo("Kleiber_by_Lukas_Baubkus.jpg"), photo("Wine_by_Jakkub_Mede.jpg")];
    for (column, roi) in
        [(ColumnKind::Lite0, RoiKind::Pool), (ColumnKind::Lite0, RoiKind::Align { samples: 2 }), (ColumnKind::arch1(), RoiKind::Pool)]
    {
        let cfg = theme_cfg(column, roi);
        let (sys, _) = build(&cfg);
        let mut rng = SeededRng::new(1);
        let mut prep: Vec<Prepared> = photos.iter().map(|p| sys.prepare(p, Mode::Test, &mut rng)).collect();
        for (i, p) in prep.iter_mut().enumerate() {
            p.theme = Some(i * 2);
        }
        let sizes: Vec<_> = prep.iter().map(|p| p.full.as_ref().unwrap().image.dimensions()).collect();
        assert!(sizes.windows(2).all(|w| w[0] != w[1]), "{sizes:?}");
        let batch = sys.collate(&prep, &Device::Cpu).unwrap();
        let all = sys.forward_t(&batch, false).unwrap();
        for (i, p) in prep.iter().enumerate() {
            let alone_batch = sys.collate(std::slice::from_ref(p), &Device::Cpu).unwrap();
            let alone = sys.forward_t(&alone_batch, false).unwrap();
            let d = max_diff(&all.raw.i(i..i + 1).unwrap(), &alone.raw);
            assert!(d < 1e-4, "{} / {roi:?}: photo {i} differs by {d} in the batch", cfg.column.name());
            if let (Some(m), Some(ma)) = (&all.map, &alone.map) {
                assert!(max_diff(&m.i(i..i + 1).unwrap(), ma) < 1e-4);
            }
        }
        // Photos do differ from each other (so equality above is not trivial).
        assert!(max_diff(&all.raw.i(0).unwrap(), &all.raw.i(1).unwrap()) > 1e-4);

        // The padding's pixel values change nothing.
        let canvas = batch.canvas.as_ref().unwrap();
        let (n, c, h, w) = canvas.dims4().unwrap();
        let mut noisy = canvas.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut r = SeededRng::new(9);
        for (b, reg) in batch.regions.iter().enumerate() {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        if y >= reg.height as usize || x >= reg.width as usize {
                            noisy[((b * c + ch) * h + y) * w + x] = (r.uniform() * 4.0 - 2.0) as f32;
                        }
                    }
                }
            }
        }
        let noisy = Tensor::from_vec(noisy, (n, c, h, w), &Device::Cpu).unwrap();
        let changed = sys.forward_t(&Batch { canvas: Some(noisy), ..batch.clone() }, false).unwrap();
        assert!(max_diff(&changed.raw, &all.raw) < 1e-5, "{}: padding values leaked", cfg.column.name());
    }
}

#[test]
fn theme_changes_the_theme_conditioned_score() {
    let cfg = theme_cfg(ColumnKind::Lite0, RoiKind::Pool);
    let (sys, _) = build(&cfg);
    let img = photo("astronaut.png");
    let mut rng = SeededRng::new(2);
    let base = sys.prepare(&img, Mode::Test, &mut rng);
    let outs: Vec<Tensor> = [None, Some(0), Some(5)]
        .into_iter()
        .map(|t| {
            let p = Prepared { theme: t, ..base.clone() };
            sys.forward_t(&sys.collate(&[p], &Device::Cpu).unwrap(), false).unwrap().raw
        })
        .collect();
    assert!(max_diff(&outs[0], &outs[1]) > 1e-5 && max_diff(&outs[1], &outs[2]) > 1e-5);
    let bad = Prepared { theme: Some(7), ..base };
    assert!(sys.collate(&[bad], &Device::Cpu).is_err(), "theme index past the theme count must be an error");
}

#[test]
fn spatial_maps_average_to_the_prediction_and_tile_the_view() {
    let img = photo("Kleiber_by_Lukas_Baubkus.jpg");
    let (w, h) = img.dimensions();
    for id in [SystemId::Scnn, SystemId::Dcnn, SystemId::ThemeEmd] {
        let mut cfg = small_test(SystemConfig::new(id, ColumnKind::Lite0, HeadKind::ava_distribution()));
        cfg.test_groups = 1;
        let (sys, _) = build(&cfg);
        let prep = sys.prepare(&img, Mode::Test, &mut SeededRng::new(4));
        let batch = sys.collate(&[prep], &Device::Cpu).unwrap();
        let out = sys.forward_t(&batch, false).unwrap();
        let map = out.map.as_ref().unwrap();
        let mean = map.mean((1, 2)).unwrap();
        assert!(max_diff(&mean, &out.group_raw) < 1e-4, "{id}: map mean {}", max_diff(&mean, &out.group_raw));
        let regions = sys.explain(&batch, &out, 0).unwrap();
        let cells: Vec<_> = regions.iter().filter(|r| r.cell).collect();
        let (mh, mw) = (map.dim(1).unwrap(), map.dim(2).unwrap());
        assert_eq!(cells.len(), mh * mw);
        let area: f64 = cells.iter().map(|c| c.rect.w * c.rect.h).sum();
        let view = if id == SystemId::Scnn || id == SystemId::Dcnn { batch.rects[0].0 } else { batch.region_rects[0] };
        assert!((area - view.w * view.h).abs() / (view.w * view.h) < 1e-9, "{id}: cells do not tile the view");
        for c in &cells {
            assert!(matches!(c.prediction, Prediction::Distribution { .. }));
            assert!(c.rect.x >= view.x - 1e-6 && c.rect.x + c.rect.w <= view.x + view.w + 1e-6);
        }
        if id == SystemId::ThemeEmd {
            // THEME-EMD sees the whole photo (less < tau pixels cropped at right and bottom).
            assert!(view.x == 0.0 && (view.w - w as f64).abs() <= 4.0 * w as f64 / 150.0 + 1e-9 && view.h <= h as f64);
        }
    }
}

#[test]
fn rdcnn_trains_only_its_aesthetic_columns() {
    let photos = [photo("chelsea.png"), photo("coffee.png")];
    for id in [SystemId::RdcnnStyle, SystemId::RdcnnSemantic] {
        let cfg = small_test(SystemConfig::new(id, ColumnKind::arch1(), HeadKind::Binary));
        let (sys, vm) = build(&cfg);
        assert_eq!(sys.frozen_prefixes(), vec!["frozen".to_string()]);
        let prep: Vec<_> = photos.iter().map(|p| sys.prepare(p, Mode::Train, &mut SeededRng::new(3))).collect();
        let out = sys.forward_t(&sys.collate(&prep, &Device::Cpu).unwrap(), false).unwrap();
        let grads = out.raw.sum_all().unwrap().backward().unwrap();
        let data = vm.data().lock().unwrap();
        let (mut frozen, mut trained) = (0, 0);
        for (name, var) in data.iter() {
            let g = grads.get(var.as_tensor());
            if name.starts_with("frozen.") {
                assert!(g.is_none(), "{id}: frozen variable {name} got a gradient");
                frozen += 1;
            } else if name.starts_with("global.conv") || name.starts_with("local.conv") || name.starts_with("head.") {
                let g = g.unwrap_or_else(|| panic!("{id}: {name} got no gradient"));
                assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}");
                trained += 1;
            }
        }
        assert!(frozen > 0 && trained >= 10, "{id}: {frozen} frozen, {trained} trained");
    }
}

#[test]
fn pretrained_columns_hold_the_imagenet_weights() {
    let cfg = SystemConfig::new(SystemId::RdcnnSemantic, ColumnKind::Lite0, HeadKind::Quality);
    let (sys, vm) = build(&cfg);
    assert_eq!(sys.pretrained_prefixes(), vec!["global", "local", "frozen"]);
    let file = candle_core::safetensors::load(WeightsFile::EfficientNetLite0.path(), &Device::Cpu).unwrap();
    let data = vm.data().lock().unwrap();
    for prefix in ["global", "local", "frozen"] {
        for key in ["_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_bn1.running_var"] {
            let var = data.get(&format!("{prefix}.{key}")).unwrap_or_else(|| panic!("{prefix}.{key} missing"));
            assert_eq!(max_diff(var.as_tensor(), &file[key]), 0.0, "{prefix}.{key}");
        }
    }
    // The head is new (not in the file) and the classifier is not part of a column.
    assert!(data.contains_key("head.weight") && !data.contains_key("global._fc.weight"));
    drop(data);

    // Through the network: a column loaded this way computes what the shipped classifier's
    // backbone computes on a real photo.
    let vm = VarMap::new();
    let col = Column::new(&ColumnKind::Lite0, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("c")).unwrap();
    assert!(load_lite0_into(&vm, "c", &WeightsFile::EfficientNetLite0.path()).unwrap() > 200);
    let reference = load_lite0(&WeightsFile::EfficientNetLite0.path(), DType::F32, &Device::Cpu).unwrap();
    let img = photo("flower.jpg");
    let x = imagenet_batch(&[&img], 224, &Device::Cpu).unwrap();
    let ours = col.forward_t(&x, false).unwrap().pooled;
    let theirs = reference.features_t(&x, false).unwrap().pooled;
    assert!(max_diff(&ours, &theirs) < 1e-5, "{}", max_diff(&ours, &theirs));
}

#[test]
fn cached_column_features_give_the_same_outputs() {
    let photos = [photo("coffee.png"), photo("rocket.jpg")];
    let vm = VarMap::new();
    let col = Column::new(&ColumnKind::Lite0, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("c")).unwrap();
    load_lite0_into(&vm, "c", &WeightsFile::EfficientNetLite0.path()).unwrap();
    for id in [SystemId::Scnn, SystemId::Dcnn, SystemId::DmaStat, SystemId::DmaFc, SystemId::MpAda, SystemId::ArpMpemd] {
        let cfg = small_test(SystemConfig::new(id, ColumnKind::Lite0, HeadKind::ava_distribution()));
        let (sys, _) = build(&cfg);
        assert!(sys.supports_cached_features());
        let prep: Vec<_> = photos.iter().map(|p| sys.prepare(p, Mode::Test, &mut SeededRng::new(8))).collect();
        let batch = sys.collate(&prep, &Device::Cpu).unwrap();
        let direct = sys.forward_t(&batch, false).unwrap();
        let f = col.forward_t(batch.pixels.as_ref().unwrap(), false).unwrap().pooled;
        let feats = f.reshape((batch.images * batch.groups, batch.patches_per_group, f.dim(1).unwrap())).unwrap();
        let cached = sys.forward_features(&feats, batch.images, batch.groups, false).unwrap();
        assert!(max_diff(&direct.raw, &cached.raw) < 1e-5, "{id}");
    }
    for id in [SystemId::RdcnnSemantic, SystemId::ThemeEmd, SystemId::DmaImgFu] {
        let (sys, _) = build(&small_test(SystemConfig::new(id, ColumnKind::arch1(), HeadKind::ava_distribution())));
        assert!(!sys.supports_cached_features(), "{id}");
    }
}
