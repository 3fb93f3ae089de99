//! Partial fine-tuning of the column for quality (`src/train/tail_finetune.rs`): f64 finite
//! differences through the whole trained path (tail blocks in evaluation mode, head
//! convolution, per-photo patch mean, linear head, loss), the patch mean against a loop, a
//! run that must fit its training photos while the frozen part stays untouched, and the real
//! Lite0 split at block 15 against the folded network's pooled features on a sample photo.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use common::Rng;
use keepers::model::imagenet::load_lite0;
use keepers::model::quality;
use keepers::model::systems::patches_tensor;
use keepers::model::weights::WeightsFile;
use keepers::train::gradcheck::check_gradients;
use keepers::train::tail_finetune::{TailConfig, TailNet, fine_tune, half_mse, photo_mean};

/// A three-block tail model (block 0 frozen, blocks 1-2 and the head train when `from` = 1)
/// with seeded random weights (positive running variances).
fn random_tail(seed: u64, from: usize) -> candle_core::Result<(TailNet, Vec<(String, Var)>)> {
    let mut rng = Rng::new(seed);
    let varmap = VarMap::new();
    let tail = TailNet::new(&common::tiny_lite(2, None), varmap.clone(), from, DType::F64, &Device::Cpu)?;
    let vars = common::randomise_lite(&varmap, &mut rng)?;
    Ok((tail, vars))
}

#[test]
fn photo_mean_matches_a_loop() -> candle_core::Result<()> {
    let mut rng = Rng::new(1);
    let x = rng.randn((6, 4), 1.0)?;
    let counts = [2, 1, 3];
    let got: Vec<Vec<f64>> = photo_mean(&x, &counts)?.to_vec2()?;
    let rows: Vec<Vec<f64>> = x.to_vec2()?;
    let mut start = 0;
    for (i, &c) in counts.iter().enumerate() {
        for j in 0..4 {
            let want = rows[start..start + c].iter().map(|r| r[j]).sum::<f64>() / c as f64;
            assert!((got[i][j] - want).abs() < 1e-12, "photo {i} column {j}");
        }
        start += c;
    }
    assert!(photo_mean(&x, &[2, 2]).is_err(), "counts not covering the rows");
    assert!(photo_mean(&x, &[6, 0]).is_err(), "a photo without patches");
    Ok(())
}

#[test]
fn tail_loss_gradients_match_finite_differences() -> candle_core::Result<()> {
    let (tail, vars) = random_tail(2, 1)?;
    let mut rng = Rng::new(3);
    tail.set_head(&(0..7).map(|_| rng.normal()).collect::<Vec<_>>(), 0.3)?;
    let (backbone, head) = tail.trainable();
    // blocks 1 and 2 (expanded: expand conv + bn0, dw + bn1, project + bn2 = 9 each), head conv + bn1 (3).
    assert_eq!(backbone.len(), 9 + 9 + 3, "{:?}", backbone.iter().map(|v| &v.0).collect::<Vec<_>>());
    let allowed = ["column._blocks.1.", "column._blocks.2.", "column._conv_head.", "column._bn1."];
    assert!(backbone.iter().all(|(n, _)| !n.contains("running_") && allowed.iter().any(|p| n.starts_with(p))));
    assert_eq!(head.len(), 2);
    let frozen = vars.iter().filter(|(n, _)| n.contains("_blocks.0.") || n.contains("_conv_stem") || n.starts_with("column._bn0"));
    assert!(frozen.clone().all(|(n, _)| !backbone.iter().any(|(m, _)| m == n)));
    assert!(frozen.count() > 0);

    let x = rng.randn((5, 3, 15, 15), 1.0)?;
    let acts = tail.inputs(&x)?;
    let counts = [2, 3];
    let z = Tensor::new(&[0.7f64, -1.1], &Device::Cpu)?;
    let trainable: Vec<&Var> = backbone.iter().chain(&head).map(|(_, v)| v).collect();
    let rep = check_gradients(&trainable, || half_mse(&tail.photo_scores(&acts, &counts)?, &z), 1e-6, 12)?;
    assert!(rep.max_scaled_err < 1e-5, "{rep:?}");
    assert!(rep.max_numeric > 1e-3 && rep.checked > 150, "{rep:?}");

    // The loss against its formula: half the mean squared error.
    let p: Vec<f64> = tail.photo_scores(&acts, &counts)?.to_vec1()?;
    let want = ((p[0] - 0.7).powi(2) + (p[1] + 1.1).powi(2)) / 4.0;
    let got = half_mse(&tail.photo_scores(&acts, &counts)?, &z)?.to_scalar::<f64>()?;
    assert!((got - want).abs() < 1e-12);
    Ok(())
}

#[test]
fn fine_tuning_fits_training_photos_leaves_the_frozen_part_and_restores() -> anyhow::Result<()> {
    let (tail, vars) = random_tail(4, 1)?;
    let mut rng = Rng::new(5);
    // 12 photos of 2-3 random patches; targets a fixed function of the photos plus noise.
    let acts: Vec<Tensor> = (0..12).map(|i| tail.inputs(&rng.randn((2 + i % 2, 3, 15, 15), 1.0)?)).collect::<candle_core::Result<_>>()?;
    let z: Vec<f64> = (0..12).map(|_| rng.normal()).collect();
    let before: Vec<(String, Vec<f64>)> =
        vars.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().flatten_all()?.to_vec1::<f64>()?))).collect::<candle_core::Result<_>>()?;
    let saved = tail.snapshot()?;
    let cfg = TailConfig { from_block: 1, epochs: 60, lr: 1e-2, head_lr_mult: 1.0, weight_decay: 0.0, batch_photos: 4, seed: 0 };
    let refs: Vec<&Tensor> = acts.iter().collect();
    let mut losses = Vec::new();
    fine_tune(&tail, &refs, &z, &cfg, &mut |_, l| {
        losses.push(l);
        Ok(true)
    })?;
    assert_eq!(losses.len(), 60);
    assert!(losses[59] < 0.2 * losses[0], "training loss {} -> {}", losses[0], losses[59]);
    let (backbone, _) = tail.trainable();
    for ((name, old), (_, var)) in before.iter().zip(&vars) {
        let now: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let changed = old.iter().zip(&now).any(|(a, b)| a != b);
        let trains = backbone.iter().any(|(n, _)| n == name);
        assert_eq!(changed, trains, "{name}: changed {changed}, trainable {trains}");
    }
    // Restoring the snapshot puts every variable back (what each CV fold starts from).
    tail.restore(&saved)?;
    for ((name, old), (_, var)) in before.iter().zip(&vars) {
        assert_eq!(&var.as_tensor().flatten_all()?.to_vec1::<f64>()?, old, "{name} after restore");
    }
    // A stop request from the callback ends the run.
    let mut epochs = 0;
    fine_tune(&tail, &refs, &z, &TailConfig { epochs: 10, ..cfg }, &mut |e, _| {
        epochs = e;
        Ok(e < 3)
    })?;
    assert_eq!(epochs, 3);
    Ok(())
}

/// The shipped Lite0 split at block 15 (frozen inputs, then the tail) gives the pooled features
/// of the whole network on the grid patches of a real photo.
#[test]
fn lite0_split_at_block_15_matches_the_whole_network() -> anyhow::Result<()> {
    let path = WeightsFile::EfficientNetLite0.path();
    let tail = TailNet::from_lite0(&path, 15, DType::F32, &Device::Cpu)?;
    let img = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/Kleiber_by_Lukas_Baubkus.jpg"))?.to_rgb8();
    let patches = quality::grid_patches(&img, 2, quality::PATCH);
    let imgs: Vec<&image::RgbImage> = patches.iter().map(|g| &g.patch.image).collect();
    let x = patches_tensor(&imgs, DType::F32, &Device::Cpu)?;
    let acts = tail.inputs(&x)?;
    assert_eq!(acts.dims(), &[imgs.len(), 7, 7, 192]);
    let got = tail.photo_features(&acts, &[imgs.len()])?.remove(0);
    let folded = load_lite0(&path, DType::F32, &Device::Cpu)?.fold(DType::F32)?;
    let want: Vec<f32> = folded.features(&x)?.pooled.mean(0)?.to_vec1()?;
    let max_diff = got.iter().zip(&want).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max);
    assert!(max_diff < 1e-4, "max difference {max_diff}");
    assert!(want.iter().any(|v| *v > 0.1));
    Ok(())
}
