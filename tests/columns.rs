//! The Arch-1 column: every parameter's gradient against f64 finite differences (small
//! configuration, dropout off), dropout behaviour, and the paper-sized column on real photos.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use common::Rng;
use keepers::library::decode::load_rgb;
use keepers::model::column::{Arch1Column, Arch1Config};
use keepers::model::pooling::LrnConfig;
use keepers::model::views::{GlobalView, normalized_input};
use keepers::rng::SeededRng;
use keepers::train::gradcheck::check_gradients;

fn small() -> Arch1Config {
    Arch1Config {
        filters: [3, 4, 4, 3],
        kernels: [5, 3, 3, 3],
        conv1_stride: 2,
        fc: [6, 5],
        dropout: 0.0,
        lrn: LrnConfig { size: 3, k: 2.0, alpha: 0.5, beta: 0.75 },
        input: 19,
    }
}

#[test]
fn every_parameter_gradient() -> candle_core::Result<()> {
    let mut rng = Rng::new(20);
    let cfg = small();
    let varmap = VarMap::new();
    let col = Arch1Column::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu))?;
    let mut vars: Vec<(String, Var)> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(vars.len(), 12, "4 convs and 2 linear layers, weight + bias each");
    for (_, v) in &vars {
        v.set(&rng.randn(v.shape(), 0.4)?)?;
    }
    let x = rng.randn((2, 3, 19, 19), 1.0)?;
    let y = col.forward_t(&x, true)?;
    assert_eq!(y.dims(), &[2, 5]);
    let r = rng.randn((2, 5), 1.0)?;
    let refs: Vec<&Var> = vars.iter().map(|(_, v)| v).collect();
    let rep = check_gradients(&refs, || (col.forward_t(&x, true)? * &r)?.sum_all(), 1e-6, 30)?;
    assert!(rep.max_scaled_err < 1e-6, "{rep:?}");
    assert!(rep.max_numeric > 1e-3, "gradients should not all vanish: {rep:?}");
    Ok(())
}

#[test]
fn dropout_only_in_training() -> candle_core::Result<()> {
    let cfg = Arch1Config { dropout: 0.5, fc: [200, 100], ..small() };
    let col = Arch1Column::new(&cfg, VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu))?;
    let x = candle_core::Tensor::randn(0f32, 1.0, (4, 3, 19, 19), &Device::Cpu)?;
    let a = col.forward_t(&x, false)?;
    let b = col.forward_t(&x, false)?;
    assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?, "evaluation is deterministic");
    let t = col.forward_t(&x, true)?.flatten_all()?.to_vec1::<f32>()?;
    let e = a.flatten_all()?.to_vec1::<f32>()?;
    let zeros_t = t.iter().filter(|v| **v == 0.0).count();
    let zeros_e = e.iter().filter(|v| **v == 0.0).count();
    assert!(zeros_t > zeros_e + 50, "training mode drops units ({zeros_t} vs {zeros_e} zeros of {})", t.len());
    Ok(())
}

#[test]
fn paper_sized_columns_on_real_photos() -> candle_core::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let mut rng = SeededRng::new(5);
    let mut data = Vec::new();
    for f in ["china.jpg", "coffee.png"] {
        let img = load_rgb(&root.join(f)).unwrap();
        let v = normalized_input(&img, GlobalView::CenterCrop, 224, &mut rng).image;
        for c in 0..3 {
            data.extend(v.pixels().map(|p| (p.0[c] as f32 - 127.0) / 128.0));
        }
    }
    let x = candle_core::Tensor::from_vec(data, (2, 3, 224, 224), &Device::Cpu)?;
    for cfg in [Arch1Config::aesthetics(), Arch1Config::style_quality()] {
        assert_eq!(cfg.conv_out_side(), 27);
        let col = Arch1Column::new(&cfg, VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu))?;
        let y = col.forward_t(&x, false)?;
        assert_eq!(y.dims(), &[2, 256]);
        assert!(y.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    Ok(())
}
