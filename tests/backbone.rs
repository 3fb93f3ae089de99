//! The EfficientNet-Lite0 port on real photographs: ImageNet classes, and agreement with the
//! independent numpy forward pass (`scripts/reference_lite0.py`, fixture
//! `tests/data/lite0_reference.json`, produced by the command recorded inside it).

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device};
use keepers::library::decode::load_rgb;
use keepers::model::imagenet::{Classifier, load_lite0};
use keepers::model::preprocess::imagenet_batch;
use keepers::model::weights::WeightsFile;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name)
}

fn classifier() -> Classifier {
    Classifier::load(&WeightsFile::EfficientNetLite0.path(), &Device::Cpu).expect("shipped weights load")
}

#[test]
fn coffee_is_espresso() {
    let img = load_rgb(&sample("coffee.png")).unwrap();
    let top = classifier().top_k(&[&img], 5).unwrap().remove(0);
    assert_eq!(top[0].1, "espresso", "top-5 was {top:?}");
    assert!(top[0].2 > 0.9, "espresso probability {}", top[0].2);
}

/// Photos whose subject is an ImageNet class: that class must be in the top 5.
/// (Expected classes chosen from what the photo shows, batch of 8 through one forward pass.)
#[test]
fn sample_photos_expected_class_in_top5() {
    let cases = [
        ("chelsea.png", 285usize, "Egyptian Mau / tabby"), // a cat; 281 tabby and 285 Egyptian Mau both acceptable
        ("Dragonfly_by_Bolly.jpg", 319, "dragonfly"),
        ("china.jpg", 698, "palace"),
        ("flower.jpg", 985, "daisy"), // a dahlia: daisy is ImageNet's only close flower class
        ("rocket.jpg", 657, "missile"),
        ("life_by_Aitzol_Berasategi.jpg", 979, "valley"), // a stream in a wooded valley
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", 970, "mountain (alp)"),
        ("coffee.png", 967, "espresso"),
    ];
    let imgs: Vec<_> = cases.iter().map(|(f, _, _)| load_rgb(&sample(f)).unwrap()).collect();
    let refs: Vec<_> = imgs.iter().collect();
    let tops = classifier().top_k(&refs, 5).unwrap();
    for ((file, class, what), top) in cases.iter().zip(&tops) {
        let idx: Vec<usize> = top.iter().map(|t| t.0).collect();
        let ok = idx.contains(class) || (*file == "chelsea.png" && idx.contains(&281));
        assert!(ok, "{file}: expected {what} ({class}) in top-5, got {top:?}");
    }
}

#[derive(serde::Deserialize)]
struct Fixture {
    command: String,
    results: Vec<FixtureRow>,
}

#[derive(serde::Deserialize)]
struct FixtureRow {
    file: String,
    probs: Vec<f32>,
}

/// All 1000 probabilities of three PNG photos (decoder-independent pixels, so the input
/// tensors are bit-identical) agree with the numpy float64 reference within 1e-3, for both
/// the folded inference network and the trainable network in evaluation mode.
#[test]
fn probabilities_match_numpy_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fx: Fixture = serde_json::from_str(&std::fs::read_to_string(root.join("tests/data/lite0_reference.json")).unwrap()).unwrap();
    assert!(fx.command.starts_with("python3 scripts/reference_lite0.py"));
    assert_eq!(fx.results.len(), 3);
    let dev = Device::Cpu;
    let c = classifier();
    let net = load_lite0(&WeightsFile::EfficientNetLite0.path(), DType::F32, &dev).unwrap();
    for row in &fx.results {
        let img = load_rgb(&root.join(&row.file)).unwrap();
        let folded = c.probabilities(&[&img]).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
        let x = imagenet_batch(&[&img], 224, &dev).unwrap();
        let logits = net.forward_t(&x, false).unwrap();
        let plain = candle_nn::ops::softmax(&logits, D::Minus1).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(row.probs.len(), 1000);
        for (name, got) in [("folded", &folded), ("forward_t", &plain)] {
            let max = got.iter().zip(&row.probs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max < 1e-3, "{}: {name} differs from the numpy reference by {max}", row.file);
        }
        let sum: f32 = folded.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
}

/// The feature entry returns the final map and its pooled vector, consistent with each other.
#[test]
fn features_map_and_pooled_agree() {
    let dev = Device::Cpu;
    let net = load_lite0(&WeightsFile::EfficientNetLite0.path(), DType::F32, &dev).unwrap();
    let img = load_rgb(&sample("chelsea.png")).unwrap();
    let x = imagenet_batch(&[&img, &img], 224, &dev).unwrap();
    let f = net.features_t(&x, false).unwrap();
    assert_eq!(f.map.dims(), &[2, 7, 7, 1280]);
    assert_eq!(f.pooled.dims(), &[2, 1280]);
    let mean = f.map.mean((1, 2)).unwrap();
    let d = (mean - &f.pooled).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-6);
    let folded = net.fold(DType::F32).unwrap().features(&x).unwrap();
    let d = (folded.map - f.map).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-3, "folded and plain feature maps differ by {d}");
}

#[derive(serde::Deserialize)]
struct LevelsFixture {
    command: String,
    results: Vec<LevelsRow>,
}

#[derive(serde::Deserialize)]
struct LevelsRow {
    file: String,
    stages: Vec<f32>,
    dw: Vec<f32>,
}

/// The multi-level statistics the quality model reads (`multilevel_stats`: per-channel mean and
/// std of the stage outputs, or of every block's depthwise activation) agree with the numpy
/// float64 reference (`--levels-fixture`, fixture `tests/data/lite0_levels_reference.json`) on
/// every one of their 4192 / 17920 values, and the pooled head feature of the same pass is the
/// stage vector's head means.
#[test]
fn multilevel_statistics_match_numpy_reference() {
    use keepers::model::multilevel::{DW_DIM, STATS_DIM, Taps, multilevel_stats};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fx: LevelsFixture =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/data/lite0_levels_reference.json")).unwrap()).unwrap();
    assert!(fx.command.starts_with("python3 scripts/reference_lite0.py"));
    let dev = Device::Cpu;
    let net = load_lite0(&WeightsFile::EfficientNetLite0.path(), DType::F32, &dev).unwrap().fold(DType::F32).unwrap();
    for row in &fx.results {
        let img = load_rgb(&root.join(&row.file)).unwrap();
        let x = imagenet_batch(&[&img], 224, &dev).unwrap();
        for (taps, want, dim) in [(Taps::Stages, &row.stages, STATS_DIM), (Taps::Depthwise, &row.dw, DW_DIM)] {
            let (stats, _) = multilevel_stats(&net, &x, taps).unwrap();
            let got = stats.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!((got.len(), want.len()), (dim, dim), "{taps:?}");
            // f32 against f64: relative 1e-3 of the value's magnitude, at least 1e-4.
            let (worst, at) = got
                .iter()
                .zip(want.iter())
                .enumerate()
                .map(|(i, (g, w))| ((g - w).abs() / w.abs().max(0.1), i))
                .fold((0f32, 0), |a, b| if b.0 > a.0 { b } else { a });
            assert!(worst < 1e-3, "{} {taps:?}: value {at} is {} against the reference {}", row.file, got[at], want[at]);
        }
    }
}
