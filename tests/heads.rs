//! Heads: every kind on pooled, per-patch and map features; predictions in readable units,
//! checked against plain computations; the spatial map decomposes the pooled prediction.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use keepers::model::heads::{AVA_STYLES, Head, HeadKind, Prediction, distribution_stats};

fn head(kind: HeadKind, dim: usize) -> Head {
    Head::new(kind, dim, VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn every_kind_on_every_feature_shape() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let kinds = [
        HeadKind::Binary,
        HeadKind::ava_distribution(),
        HeadKind::ava_styles(),
        HeadKind::Quality,
        HeadKind::Styles { tags: vec!["mine".into(), "yours".into(), "ours".into()] },
    ];
    let outs = [2, 10, 14, 1, 3];
    for (kind, n) in kinds.into_iter().zip(outs) {
        let h = head(kind, 16);
        assert_eq!(h.forward(&Tensor::randn(0f32, 1., (4, 16), &dev)?)?.dims(), &[4, n]);
        assert_eq!(h.forward(&Tensor::randn(0f32, 1., (4, 5, 16), &dev)?)?.dims(), &[4, 5, n]);
        assert_eq!(h.forward(&Tensor::randn(0f32, 1., (2, 7, 7, 16), &dev)?)?.dims(), &[2, 7, 7, n]);
    }
    assert_eq!(AVA_STYLES.len(), 14);
    assert!(Head::new(HeadKind::Styles { tags: vec![] }, 4, VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev)).is_err());
    Ok(())
}

#[test]
fn predictions_in_readable_units() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let raw = Tensor::new(&[[0.0f32, 1.0, 2.0, 0.5, -1.0, 0.0, 0.3, 0.0, 1.5, -2.0]], &dev)?;
    let preds = head(HeadKind::ava_distribution(), 3).predict(&raw)?;
    let Prediction::Distribution { probs, mean, std } = &preds[0] else { panic!("{preds:?}") };
    // plain softmax, mean and std over 1..10
    let e: Vec<f64> = [0.0f64, 1.0, 2.0, 0.5, -1.0, 0.0, 0.3, 0.0, 1.5, -2.0].iter().map(|v| v.exp()).collect();
    let z: f64 = e.iter().sum();
    let p: Vec<f64> = e.iter().map(|v| v / z).collect();
    let m: f64 = p.iter().enumerate().map(|(i, v)| (i + 1) as f64 * v).sum();
    let s = p.iter().enumerate().map(|(i, v)| ((i + 1) as f64 - m).powi(2) * v).sum::<f64>().sqrt();
    for (a, b) in probs.iter().zip(&p) {
        assert!((*a as f64 - b).abs() < 1e-6);
    }
    assert!((*mean as f64 - m).abs() < 1e-5 && (*std as f64 - s).abs() < 1e-5);
    assert_eq!(distribution_stats(&[0.0, 0.0, 1.0]), (3.0, 0.0));

    let bin = head(HeadKind::Binary, 3).predict(&Tensor::new(&[[0.0f32, 2.0]], &dev)?)?;
    assert!(matches!(bin[0], Prediction::Binary { p_high } if (p_high - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6));
    let sty = head(HeadKind::Styles { tags: vec!["a".into(), "b".into()] }, 3).predict(&Tensor::new(&[[0.0f32, 3.0]], &dev)?)?;
    let Prediction::Styles { probs } = &sty[0] else { panic!() };
    assert!((probs[0] - 0.5).abs() < 1e-6 && (probs[1] - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
    let q = head(HeadKind::Quality, 3).predict(&Tensor::new(&[[42.5f32]], &dev)?)?;
    assert_eq!(q[0], Prediction::Quality { score: 42.5 });
    Ok(())
}

/// Head(mean of map) == mean of Head(map): the per-position outputs are an exact
/// decomposition of the pooled prediction's logits.
#[test]
fn spatial_map_decomposes_the_pooled_output() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let h = head(HeadKind::ava_distribution(), 32);
    let map = Tensor::randn(0f32, 1., (2, 7, 7, 32), &dev)?;
    let pooled = h.forward(&map.mean((1, 2))?)?;
    let per_position = h.forward(&map)?.mean((1, 2))?;
    let d = (pooled - per_position)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "{d}");
    Ok(())
}
