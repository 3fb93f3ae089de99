//! Optimisers and schedules against independent f64 reference computations written here from
//! PyTorch's documented update rules (torch.optim.SGD, torch.optim.AdamW,
//! lr_scheduler.StepLR / ExponentialLR / ReduceLROnPlateau).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use keepers::train::optim::{
    AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig, clip_grad_norm, clip_grad_value, is_bias, named_vars,
};
use keepers::train::schedule::{LrScheduler, Schedule, ScheduleError};

/// The loss used by every optimiser test: `sum(a_t * w) + sum(w^3) / 3`, so the gradient
/// `a_t + w^2` depends on the weights and on the step (a real trajectory, not a constant).
fn coeffs(step: usize, n: usize, salt: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * 0.7 + step as f64 * 1.3 + salt).sin()).collect()
}

fn grad_ref(w: &[f64], a: &[f64]) -> Vec<f64> {
    w.iter().zip(a).map(|(w, a)| a + w * w).collect()
}

fn loss(vars: &[(&Var, Vec<f64>)]) -> candle_core::Result<Tensor> {
    let mut total = Tensor::new(0f64, &Device::Cpu)?;
    for (v, a) in vars {
        let t = v.as_tensor();
        let a = Tensor::from_vec(a.clone(), t.shape(), &Device::Cpu)?;
        total = (total + ((t * a)?.sum_all()? + (t.powf(3.0)? / 3.0)?.sum_all()?)?)?;
    }
    Ok(total)
}

fn var(v: &[f64]) -> Var {
    Var::from_tensor(&Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()).unwrap()
}

fn values(v: &Var) -> Vec<f64> {
    v.as_tensor().to_vec1().unwrap()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs reference {y}");
    }
}

/// PyTorch's SGD for one parameter, f64 (torch.optim.SGD documentation, maximize = False).
struct RefSgd {
    lr: f64,
    mu: f64,
    damp: f64,
    nesterov: bool,
    wd: f64,
    buf: Option<Vec<f64>>,
}

impl RefSgd {
    fn step(&mut self, p: &mut [f64], g: &[f64]) {
        let mut g: Vec<f64> = g.iter().zip(p.iter()).map(|(g, p)| g + self.wd * p).collect();
        if self.mu != 0.0 {
            let b: Vec<f64> = match &self.buf {
                None => g.clone(),
                Some(b) => b.iter().zip(&g).map(|(b, g)| self.mu * b + (1.0 - self.damp) * g).collect(),
            };
            g = if self.nesterov { g.iter().zip(&b).map(|(g, b)| g + self.mu * b).collect() } else { b.clone() };
            self.buf = Some(b);
        }
        for (p, g) in p.iter_mut().zip(&g) {
            *p -= self.lr * g;
        }
    }
}

/// PyTorch's AdamW for one parameter, f64 (torch.optim.AdamW documentation, amsgrad = False).
struct RefAdamW {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    t: i32,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl RefAdamW {
    fn new(n: usize, lr: f64, wd: f64) -> Self {
        Self { lr, b1: 0.9, b2: 0.999, eps: 1e-8, wd, t: 0, m: vec![0.0; n], v: vec![0.0; n] }
    }

    fn step(&mut self, p: &mut [f64], g: &[f64]) {
        self.t += 1;
        for i in 0..p.len() {
            p[i] *= 1.0 - self.lr * self.wd;
            self.m[i] = self.b1 * self.m[i] + (1.0 - self.b1) * g[i];
            self.v[i] = self.b2 * self.v[i] + (1.0 - self.b2) * g[i] * g[i];
            let mhat = self.m[i] / (1.0 - self.b1.powi(self.t));
            let vhat = self.v[i] / (1.0 - self.b2.powi(self.t));
            p[i] -= self.lr * mhat / (vhat.sqrt() + self.eps);
        }
    }
}

const W0: [f64; 5] = [0.3, -0.5, 0.8, -0.1, 0.25];

fn run_sgd(cfg: SgdConfig) {
    let w = var(&W0);
    let mut opt = Sgd::new(vec![ParamGroup::new("all", vec![("w".into(), w.clone())])], cfg).unwrap();
    let mut r = RefSgd { lr: cfg.lr, mu: cfg.momentum, damp: cfg.dampening, nesterov: cfg.nesterov, wd: cfg.weight_decay, buf: None };
    let mut p = W0.to_vec();
    for step in 0..8 {
        let a = coeffs(step, 5, 0.0);
        let grads = loss(&[(&w, a.clone())]).unwrap().backward().unwrap();
        opt.step(&grads).unwrap();
        let g = grad_ref(&p, &a);
        r.step(&mut p, &g);
        assert_close(&values(&w), &p, 1e-12, &format!("{cfg:?} step {step}"));
    }
    assert!(values(&w).iter().zip(W0).any(|(a, b)| (a - b).abs() > 1e-3), "parameters should move");
}

#[test]
fn sgd_plain_momentum_nesterov_dampening_weight_decay_match_reference() {
    let base = SgdConfig { lr: 0.05, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
    run_sgd(base);
    run_sgd(SgdConfig { momentum: 0.9, ..base });
    run_sgd(SgdConfig { momentum: 0.9, weight_decay: 1e-2, ..base });
    run_sgd(SgdConfig { momentum: 0.9, nesterov: true, weight_decay: 1e-4, ..base });
    run_sgd(SgdConfig { momentum: 0.8, dampening: 0.3, weight_decay: 1e-3, ..base });
}

#[test]
fn adamw_matches_reference() {
    for wd in [0.0, 0.05] {
        let w = var(&W0);
        let cfg = AdamWConfig { lr: 0.02, weight_decay: wd, ..Default::default() };
        let mut opt = AdamW::new(vec![ParamGroup::new("all", vec![("w".into(), w.clone())])], cfg).unwrap();
        let mut r = RefAdamW::new(5, 0.02, wd);
        let mut p = W0.to_vec();
        for step in 0..10 {
            let a = coeffs(step, 5, 1.0);
            let grads = loss(&[(&w, a.clone())]).unwrap().backward().unwrap();
            opt.step(&grads).unwrap();
            let g = grad_ref(&p, &a);
            r.step(&mut p, &g);
            assert_close(&values(&w), &p, 1e-12, &format!("AdamW wd {wd} step {step}"));
        }
    }
}

/// Paper 003: FC layers 10x the learning rate; paper 002: biases 2x and no weight decay on them;
/// a frozen group is untouched and, once unfrozen, AdamW's bias correction starts at t = 1 for it.
#[test]
fn groups_lr_mult_weight_decay_frozen_and_unfreeze() {
    let (conv, fc, bias, frozen) = (var(&W0), var(&[0.1, 0.2, -0.3]), var(&[0.05, -0.02]), var(&[0.4, -0.6]));
    let groups = vec![
        ParamGroup::new("conv", vec![("conv.weight".into(), conv.clone())]),
        ParamGroup::new("fc", vec![("fc.weight".into(), fc.clone())]).lr_mult(10.0),
        ParamGroup::new("bias", vec![("fc.bias".into(), bias.clone())]).lr_mult(2.0).weight_decay(0.0),
        ParamGroup::new("backbone", vec![("backbone.weight".into(), frozen.clone())]).frozen(true),
    ];
    let (lr, wd) = (0.01, 0.03);
    let mut opt = AdamW::new(groups, AdamWConfig { lr, weight_decay: wd, ..Default::default() }).unwrap();
    let mut refs = [RefAdamW::new(5, lr, wd), RefAdamW::new(3, lr * 10.0, wd), RefAdamW::new(2, lr * 2.0, 0.0), RefAdamW::new(2, lr, wd)];
    let mut ps = [W0.to_vec(), vec![0.1, 0.2, -0.3], vec![0.05, -0.02], vec![0.4, -0.6]];
    let vars = [&conv, &fc, &bias, &frozen];
    for step in 0..6 {
        if step == 3 {
            opt.set_frozen("backbone", false).unwrap();
        }
        let a: Vec<Vec<f64>> = ps.iter().enumerate().map(|(k, p)| coeffs(step, p.len(), k as f64)).collect();
        let grads = loss(&vars.iter().zip(&a).map(|(v, a)| (*v, a.clone())).collect::<Vec<_>>()).unwrap().backward().unwrap();
        opt.step(&grads).unwrap();
        for k in 0..4 {
            if k == 3 && step < 3 {
                continue; // frozen: the reference does not step either
            }
            let g = grad_ref(&ps[k], &a[k]);
            refs[k].step(&mut ps[k], &g);
        }
        for k in 0..4 {
            assert_close(&values(vars[k]), &ps[k], 1e-12, &format!("group {k} step {step}"));
        }
        if step < 3 {
            assert_eq!(values(&frozen), vec![0.4, -0.6], "frozen group moved");
        }
    }
    assert_eq!(opt.state().meta.steps["backbone.weight"], 3);
    assert_eq!(opt.state().meta.steps["conv.weight"], 6);
    assert!(opt.set_frozen("nope", true).is_err());
}

#[test]
fn variables_without_gradient_are_not_touched_even_with_weight_decay() {
    let (used, unused) = (var(&W0), var(&[1.0, 2.0]));
    let groups = vec![ParamGroup::new("all", vec![("used".into(), used.clone()), ("running_mean".into(), unused.clone())])];
    let mut opt = Sgd::new(groups, SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.5, ..Default::default() }).unwrap();
    for step in 0..3 {
        let grads = loss(&[(&used, coeffs(step, 5, 0.0))]).unwrap().backward().unwrap();
        opt.step(&grads).unwrap();
    }
    assert_eq!(values(&unused), vec![1.0, 2.0]);
    assert!(!opt.state().meta.steps.contains_key("running_mean"));
}

#[test]
fn state_round_trip_continues_bit_identically() {
    let mk = |w: &Var| {
        AdamW::new(vec![ParamGroup::new("all", vec![("w".into(), w.clone())])], AdamWConfig { lr: 0.03, ..Default::default() }).unwrap()
    };
    let mk_sgd = |w: &Var| {
        Sgd::new(vec![ParamGroup::new("all", vec![("w".into(), w.clone())])], SgdConfig { lr: 0.03, nesterov: true, ..Default::default() })
            .unwrap()
    };
    for use_sgd in [false, true] {
        let w = var(&W0);
        let mut opt: Box<dyn Optimizer> = if use_sgd { Box::new(mk_sgd(&w)) } else { Box::new(mk(&w)) };
        for step in 0..3 {
            opt.step(&loss(&[(&w, coeffs(step, 5, 2.0))]).unwrap().backward().unwrap()).unwrap();
        }
        let saved_w = w.as_tensor().copy().unwrap();
        let saved = opt.state();
        for step in 3..6 {
            opt.step(&loss(&[(&w, coeffs(step, 5, 2.0))]).unwrap().backward().unwrap()).unwrap();
        }
        // A fresh optimiser on a fresh variable, restored from the saved state.
        let w2 = Var::from_tensor(&saved_w).unwrap();
        let mut opt2: Box<dyn Optimizer> = if use_sgd { Box::new(mk_sgd(&w2)) } else { Box::new(mk(&w2)) };
        opt2.load_state(&saved).unwrap();
        for step in 3..6 {
            opt2.step(&loss(&[(&w2, coeffs(step, 5, 2.0))]).unwrap().backward().unwrap()).unwrap();
        }
        let (a, b) = (values(&w), values(&w2));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "sgd={use_sgd}: {a:?} vs {b:?}");
        // Without the state the continuation differs (the test can fail).
        let w3 = Var::from_tensor(&saved_w).unwrap();
        let mut opt3: Box<dyn Optimizer> = if use_sgd { Box::new(mk_sgd(&w3)) } else { Box::new(mk(&w3)) };
        for step in 3..6 {
            opt3.step(&loss(&[(&w3, coeffs(step, 5, 2.0))]).unwrap().backward().unwrap()).unwrap();
        }
        assert_ne!(values(&w3), a);
    }
    // Wrong kind of state is refused.
    let w = var(&W0);
    let s = mk_sgd(&w).state();
    assert!(mk(&w).load_state(&s).is_err());
}

#[test]
fn clipping_by_norm_and_value() {
    let (a, b) = (var(&[0.0, 0.0]), var(&[0.0]));
    // loss = 3 a0 + 4 a1 + 12 b: gradients (3, 4) and (12), global norm 13.
    let l = ((a.as_tensor() * Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap()
        + (b.as_tensor() * 12.0).unwrap().sum_all().unwrap())
    .unwrap();
    let vars = vec![a.clone(), b.clone()];
    let mut g = l.backward().unwrap();
    let norm = clip_grad_norm(&mut g, &vars, 26.0).unwrap();
    assert!((norm - 13.0).abs() < 1e-12);
    assert_eq!(g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), vec![3.0, 4.0], "below the limit: unchanged");
    let norm = clip_grad_norm(&mut g, &vars, 1.3).unwrap();
    assert!((norm - 13.0).abs() < 1e-12);
    let c = 1.3 / (13.0 + 1e-6);
    assert_close(&g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), &[3.0 * c, 4.0 * c], 1e-14, "clipped a");
    assert_close(&g.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), &[12.0 * c], 1e-14, "clipped b");
    let mut g = l.backward().unwrap();
    clip_grad_value(&mut g, &vars, 3.5).unwrap();
    assert_eq!(g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), vec![3.0, 3.5]);
    assert_eq!(g.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), vec![3.5]);
}

#[test]
fn groups_from_varmap_and_bias_split() {
    let vm = VarMap::new();
    for name in ["features.conv1.weight", "features.conv1.bias", "fc.weight", "fc.bias", "head.b"] {
        vm.get(2, name, candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu).unwrap();
    }
    assert_eq!(
        named_vars(&vm).iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["fc.bias", "fc.weight", "features.conv1.bias", "features.conv1.weight", "head.b"]
    );
    let (w, b) = ParamGroup::from_varmap("conv", &vm, |n| n.starts_with("features.")).lr_mult(1.0).split_biases();
    assert_eq!(w.vars.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["features.conv1.weight"]);
    assert_eq!((b.name.as_str(), b.vars[0].0.as_str()), ("conv.bias", "features.conv1.bias"));
    assert!(is_bias("head.b") && is_bias("fc.bias") && !is_bias("fc.weight") && !is_bias("bias_gen.weight"));
    // The same variable in two groups is refused.
    let all = ParamGroup::from_varmap("all", &vm, |_| true);
    let fc = ParamGroup::from_varmap("fc", &vm, |n| n.starts_with("fc"));
    assert!(Sgd::new(vec![all, fc], SgdConfig::default()).is_err());
    assert!(Sgd::new(vec![], SgdConfig { momentum: 0.0, nesterov: true, ..Default::default() }).is_err());
}

#[test]
fn step_and_exponential_schedules() {
    // Paper 003: halve every 10 epochs, 30 epochs.
    let mut s = LrScheduler::new(Schedule::Step { every: 10, factor: 0.5 }, 0.01);
    let mut lrs = vec![s.lr()];
    for _ in 0..29 {
        lrs.push(s.end_epoch(None).unwrap());
    }
    for (e, lr) in lrs.iter().enumerate() {
        let expect = if e < 10 {
            0.01
        } else if e < 20 {
            0.005
        } else {
            0.0025
        };
        assert!((lr - expect).abs() < 1e-15, "epoch {e}: {lr}");
    }
    let mut s = LrScheduler::new(Schedule::Exponential { gamma: 0.9 }, 0.1);
    for e in 1..=4 {
        let lr = s.end_epoch(None).unwrap();
        assert!((lr - 0.1 * 0.9f64.powi(e)).abs() < 1e-15);
    }
    // Survives a JSON round trip mid-way (checkpoints).
    let back: LrScheduler = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn plateau_schedule_follows_reduce_lr_on_plateau() {
    // patience 2, factor 0.1, threshold 1e-4 (relative), cooldown 1, min_lr 1e-4.
    let mut s = LrScheduler::new(Schedule::Plateau { factor: 0.1, patience: 2, threshold: 1e-4, cooldown: 1, min_lr: 1e-4 }, 0.1);
    let losses = [1.0, 0.9, 0.8999999, 0.95, 0.91, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9];
    // Hand-traced (PyTorch's order: count, then cooldown, then reduce): best 1.0, then 0.9;
    // 0.8999999 is not 1e-4 (relative) better: bad 1; 0.95 bad 2; 0.91 bad 3 > 2 -> lr 0.01,
    // cooldown 1. 0.85 better (cooldown used up). 0.9 x3: bad 1, 2, 3 -> lr 0.001, cooldown.
    // 0.9: cooldown zeroes bad; then bad 1, 2, 3 -> 1e-4; cooldown; bad 1, 2, 3 -> 1e-5 clamped to min_lr 1e-4.
    let expect = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4];
    for (e, (&l, &x)) in losses.iter().zip(&expect).enumerate() {
        let lr = s.end_epoch(Some(l)).unwrap();
        assert!((lr - x).abs() < 1e-15, "epoch {e}: lr {lr}, expected {x}");
    }
    assert_eq!(s.best(), Some(0.85));
    let mut s = LrScheduler::new(Schedule::plateau(0.1, 0), 1e-3);
    s.end_epoch(Some(1.0)).unwrap();
    for _ in 0..5 {
        s.end_epoch(Some(2.0)).unwrap();
    }
    assert!((s.lr() - 1e-8).abs() < 1e-20, "{}", s.lr());
    assert_eq!(s.end_epoch(None), Err(ScheduleError::NoMonitoredValue));
    assert!(matches!(s.end_epoch(Some(f64::NAN)), Err(ScheduleError::NotFinite(_))));
}
