//! The stage loop shared by every procedure (see the parent module): builds the stage's system,
//! its parameter groups and optimiser from the paper's recipe, resumes from `last`, copies the
//! previous stage's weights in, then trains epoch by epoch — at pixel level (pipeline batches,
//! `System::forward_t`) or on cached features (`small_data::inputs`) — with the losses of
//! `small_data::output_loss` (cross-entropy / EMD r=2 / BCE / MSE, paper 001's MP_avg/min/ada,
//! paper 004's MPEMD_avg/ada; all gradient-checked in `tests/losses.rs`), checkpointing,
//! validating and reporting progress.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::evaluate::{cached_features, metrics_for, predict_pixels};
use super::{
    Procedure, ProcedureError, Progress, ProgressEvent, Result, RunSummary, StagePlan, StageSummary, SystemSpec, TargetRules, Task,
    TrainConfig, cfg_err, checkpoint_location, column_prefixes, plan, standardizer_of,
};
use crate::model::systems::{Mode, Prepared, System};
use crate::rng::SeededRng;
use crate::train::checkpoint::{self, CheckpointMeta, RunDir};
use crate::train::data::{Dataset, Target};
use crate::train::features::{FeaturePlan, PhotoFeatures};
use crate::train::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig, clip_grad_norm, named_vars};
use crate::train::pipeline::{Pipeline, PipelineConfig, epoch_order, verify_images};
use crate::train::schedule::LrScheduler;
use crate::train::small_data::{self, FitConfig, Standardizer};

/// What a checkpoint of a procedure carries in `CheckpointMeta::extra`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunExtra {
    pub stage: String,
    pub spec: SystemSpec,
    pub small_data: bool,
    /// Trained on cached features (the model predicts from them).
    pub cached: bool,
    /// `(native, arp, seed)` of the feature plan.
    pub plan: (usize, usize, u64),
    pub std: Option<Standardizer>,
    pub rules: TargetRules,
    pub theme_names: Vec<String>,
    pub loss_sum: f64,
    pub loss_batches: usize,
    pub epoch_losses: Vec<f64>,
    pub val_metrics: BTreeMap<String, f64>,
    pub done: bool,
}

impl RunExtra {
    pub fn feature_plan(&self) -> FeaturePlan {
        FeaturePlan { native: self.plan.0, arp: self.plan.1, seed: self.plan.2 }
    }
}

pub(crate) fn extra_of(meta: &CheckpointMeta) -> Result<RunExtra> {
    serde_json::from_value(meta.extra.clone())
        .map_err(|e| cfg_err(format!("checkpoint of {} / {} was not written by a Keepers procedure: {e}", meta.system, meta.procedure)))
}

fn other(e: impl std::fmt::Display) -> ProcedureError {
    ProcedureError::Other(e.to_string())
}

/// The tensors of checkpoint `name` in `dir`.
pub(crate) fn checkpoint_tensors(dir: &Path, name: &str) -> Result<HashMap<String, Tensor>> {
    let meta = checkpoint::load_meta(dir, name)?.ok_or_else(|| cfg_err(format!("{}: no checkpoint {name:?}", dir.display())))?;
    let path = dir.join(&meta.weights_file);
    candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| cfg_err(format!("{}: {e}", path.display())))
}

/// Copies `from_prefix.*` tensors of `src` into the `to_prefix.*` variables of `varmap` (an
/// empty prefix means every variable). Returns how many were copied.
fn copy_prefix(varmap: &VarMap, src: &HashMap<String, Tensor>, from_prefix: &str, to_prefix: &str) -> Result<usize> {
    let data = varmap.data().lock().map_err(|_| other("variable map poisoned"))?;
    let mut n = 0;
    for (name, var) in data.iter() {
        let rest = if to_prefix.is_empty() {
            name.as_str()
        } else {
            match name.strip_prefix(&format!("{to_prefix}.")) {
                Some(r) => r,
                None => continue,
            }
        };
        let key = if from_prefix.is_empty() { rest.to_string() } else { format!("{from_prefix}.{rest}") };
        let t = src.get(&key).ok_or_else(|| cfg_err(format!("the previous model has no {key} for {name}")))?;
        if t.dims() != var.dims() {
            return Err(cfg_err(format!("{key} is {:?}, {name} is {:?}", t.dims(), var.dims())));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
        n += 1;
    }
    if n == 0 {
        return Err(cfg_err(format!("no variable under {to_prefix:?} to initialise from {from_prefix:?}")));
    }
    Ok(n)
}

/// Parameter groups: columns and the rest ("head"), each split into weights and biases with
/// the recipe's multipliers; RDCNN's `frozen.*` column is left out (it never trains).
fn param_groups(sys: &System, varmap: &VarMap, st: &StagePlan) -> Vec<ParamGroup> {
    let cols: Vec<String> = column_prefixes(sys.config().id).iter().map(|p| format!("{p}.")).collect();
    let frozen: Vec<String> = sys.frozen_prefixes().into_iter().map(|p| format!("{p}.")).collect();
    let is_col = |n: &str| cols.iter().any(|p| n.starts_with(p.as_str()));
    let is_frozen = |n: &str| frozen.iter().any(|p| n.starts_with(p.as_str()));
    let freeze_cols = st.frozen_columns || st.cached;
    let r = &st.recipe;
    let (cw, cb) = ParamGroup::from_varmap("columns", varmap, |n| is_col(n) && !is_frozen(n)).frozen(freeze_cols).split_biases();
    let (hw, hb) = ParamGroup::from_varmap("head", varmap, |n| !is_col(n) && !is_frozen(n)).lr_mult(r.head_lr_mult).split_biases();
    let cb = cb.clone().lr_mult(cb.lr_mult * r.bias_lr_mult);
    let hb = hb.clone().lr_mult(hb.lr_mult * r.bias_lr_mult);
    vec![cw, cb, hw, hb]
}

fn optimizer(st: &StagePlan, groups: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
    let r = &st.recipe;
    Ok(match r.optimizer {
        super::OptimKind::Sgd { momentum, nesterov } => {
            Box::new(Sgd::new(groups, SgdConfig { lr: st.lr, momentum, dampening: 0.0, nesterov, weight_decay: r.weight_decay })?)
        }
        super::OptimKind::AdamW => {
            Box::new(AdamW::new(groups, AdamWConfig { lr: st.lr, weight_decay: r.weight_decay, ..Default::default() })?)
        }
    })
}

/// Shared state of one run.
struct Ctx<'a> {
    cfg: &'a TrainConfig,
    train: Dataset,
    val: Dataset,
    fingerprint: String,
    std: Option<Standardizer>,
    rules: TargetRules,
    features: HashMap<PathBuf, PhotoFeatures>,
}

pub(super) fn run(
    cfg: &TrainConfig,
    train: &Dataset,
    val: &Dataset,
    out: &Path,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<RunSummary> {
    // Adapt starts from a trained model: its system, task, scaling and feature plan.
    let init = match (cfg.procedure, &cfg.init) {
        (Procedure::Adapt, Some(p)) => {
            let (dir, name) = checkpoint_location(p);
            let meta = checkpoint::load_meta(&dir, &name)?.ok_or_else(|| cfg_err(format!("{}: no checkpoint {name:?}", dir.display())))?;
            let extra = extra_of(&meta)?;
            Some((checkpoint_tensors(&dir, &name)?, extra))
        }
        (Procedure::Adapt, None) => return Err(cfg_err("adapt fine-tunes a trained model: give the checkpoint to start from (--init)")),
        _ => None,
    };
    let mut cfg = cfg.clone();
    if let Some((_, e)) = &init {
        cfg.task = e.spec.task.clone();
        cfg.small_data = e.small_data;
        cfg.feature_plan = e.feature_plan();
    }
    let task = cfg.task.clone();
    if let Task::Styles { tags } = &task
        && tags.is_empty()
    {
        return Err(cfg_err("the styles task needs style names in the dataset"));
    }
    let rules = init.as_ref().map(|(_, e)| e.rules.clone()).unwrap_or_else(|| TargetRules::fit(train, &task));
    let (train_p, d1) = rules.prepare(train, &task);
    let (val_p, d2) = rules.prepare(val, &task);

    // One check of every image before training: the report names what cannot be read.
    let all: Vec<_> = train_p.samples.iter().chain(&val_p.samples).cloned().collect();
    let skipped = verify_images(Arc::new(all), cfg.threads);
    let bad: HashSet<PathBuf> = skipped.paths().into_iter().map(Path::to_path_buf).collect();
    let train_ok = train_p.filter(|s| !bad.contains(&s.path));
    let val_ok = val_p.filter(|s| !bad.contains(&s.path));
    if train_ok.is_empty() {
        return Err(cfg_err(format!("no training photo with a {} target could be read ({} without one; {skipped})", task.name(), d1 + d2)));
    }
    let std = init.as_ref().map(|(_, e)| e.std).unwrap_or_else(|| standardizer_of(&train_ok, &task));
    let style_task = (!train_ok.style_names.is_empty()
        && train_ok.samples.iter().all(|s| s.target.styles.as_ref().is_some_and(|v| v.len() == train_ok.style_names.len())))
    .then(|| Task::Styles { tags: train_ok.style_names.clone() });
    let mut stages = plan(&cfg, out, init.as_ref().map(|(_, e)| &e.spec), style_task)?;
    for st in &mut stages {
        if st.spec.system == "THEME-EMD" && init.is_none() {
            st.spec.themes = train_ok.theme_names.len().max(1);
        }
    }
    if !cfg.resume {
        for st in &stages {
            if st.dir.join("last.json").exists() {
                return Err(cfg_err(format!("{} already holds a run: resume it, or train into another folder", st.dir.display())));
            }
        }
    }

    let mut features = HashMap::new();
    if stages.iter().any(|s| s.cached) {
        let paths: Vec<PathBuf> = train_ok.samples.iter().chain(&val_ok.samples).map(|s| s.path.clone()).collect();
        let (feats, _) = cached_features(&paths, &cfg.feature_plan, &cfg.lite0, cfg.feature_cache.as_deref())?;
        for (p, f) in paths.into_iter().zip(feats) {
            if let Some(f) = f {
                features.insert(p, f);
            }
        }
    }
    let ctx = Ctx { cfg: &cfg, fingerprint: train.fingerprint(), train: train_ok, val: val_ok, std, rules, features };

    let mut prev = init.map(|(t, _)| t);
    let mut summaries = Vec::new();
    let n = stages.len();
    for (i, st) in stages.iter().enumerate() {
        let (summary, weights) = run_stage(&ctx, st, i, n, prev.as_ref(), progress, cancel)?;
        let finished = summary.finished;
        summaries.push(summary);
        if !finished {
            return Ok(RunSummary { stages: summaries, stopped: true, skipped, without_target: d1 + d2, out: out.to_path_buf() });
        }
        prev = weights;
    }
    Ok(RunSummary { stages: summaries, stopped: false, skipped, without_target: d1 + d2, out: out.to_path_buf() })
}

fn step_seed(seed: u64, stage: usize, step: u64) -> u64 {
    SeededRng::new(seed).fork(0x5354_4550 + stage as u64).fork(step).below(u64::MAX)
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    ctx: &Ctx,
    st: &StagePlan,
    index: usize,
    stages: usize,
    prev: Option<&HashMap<String, Tensor>>,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<(StageSummary, Option<HashMap<String, Tensor>>)> {
    let cfg = ctx.cfg;
    let seed = cfg.seed;
    let task = &st.spec.task;
    let sys_cfg = st.spec.config()?;
    let varmap = VarMap::new();
    let sys = System::build(&sys_cfg, &varmap, DType::F32, &Device::Cpu, &cfg.lite0, seed).map_err(|e| other(format!("{e:#}")))?;
    let vars = named_vars(&varmap);
    let mut opt = optimizer(st, param_groups(&sys, &varmap, st))?;
    let run = RunDir::new(&st.dir);
    let mut meta = CheckpointMeta::new(sys_cfg.id.name(), cfg.procedure.name(), task.name(), &ctx.fingerprint, seed);
    let mut extra = RunExtra {
        stage: st.name.clone(),
        spec: st.spec.clone(),
        small_data: cfg.small_data,
        cached: st.cached,
        plan: (cfg.feature_plan.native, cfg.feature_plan.arp, cfg.feature_plan.seed),
        std: ctx.std,
        rules: ctx.rules.clone(),
        theme_names: ctx.train.theme_names.clone(),
        loss_sum: 0.0,
        loss_batches: 0,
        epoch_losses: Vec::new(),
        val_metrics: BTreeMap::new(),
        done: false,
    };
    let mut sched = LrScheduler::new(st.recipe.schedule_for(st.epochs), st.lr);
    let resumed = if cfg.resume { run.resume(&vars, Some(opt.as_mut()))? } else { None };
    match resumed {
        Some(m) => {
            if m.dataset_fingerprint != ctx.fingerprint {
                return Err(cfg_err(format!(
                    "{}: this run was trained on other data (fingerprint {} vs {})",
                    st.dir.display(),
                    m.dataset_fingerprint,
                    ctx.fingerprint
                )));
            }
            extra = extra_of(&m)?;
            if let Some(s) = &m.scheduler {
                sched = s.clone();
            }
            meta = m;
        }
        None => {
            if let Some(src) = prev {
                for (from, to) in &st.init_from_previous {
                    copy_prefix(&varmap, src, from, to)?;
                }
            }
        }
    }
    let summary = |meta: &CheckpointMeta, extra: &RunExtra, finished: bool| StageSummary {
        name: st.name.clone(),
        system: st.spec.system.clone(),
        dir: st.dir.clone(),
        epoch_losses: extra.epoch_losses.clone(),
        steps: meta.global_step,
        best: meta.best.clone(),
        metrics: extra.val_metrics.clone(),
        finished,
    };
    if extra.done {
        return Ok((summary(&meta, &extra, true), Some(checkpoint_tensors(&st.dir, "best")?)));
    }

    let n_train = ctx.train.samples.len();
    let batches_per_epoch = n_train.div_ceil(st.batch);
    let samples = Arc::new(ctx.train.samples.clone());
    let targets: Vec<&Target> = ctx.train.samples.iter().map(|s| &s.target).collect();
    let head_kind = sys.head_kind().clone();
    let (metric_name, higher) = task.primary_metric();
    let started = Instant::now();
    let steps_at_start = meta.global_step;
    let total_steps = (st.epochs * batches_per_epoch) as u64;
    let fit = FitConfig { seed, test_groups: st.spec.test_groups, mpemd: st.mpemd, ..Default::default() };
    let save = |meta: &mut CheckpointMeta, extra: &RunExtra, sched: &LrScheduler, opt: &dyn Optimizer| -> Result<()> {
        meta.extra = serde_json::to_value(extra).map_err(other)?;
        meta.scheduler = Some(sched.clone());
        run.save_last(&vars, Some(opt), meta)?;
        Ok(())
    };

    while (meta.epoch as usize) < st.epochs {
        opt.set_base_lr(sched.lr());
        let epoch = meta.epoch;
        // This epoch's batches: (number, sample indices, prepared photos for the pixel path).
        let batches: Box<dyn Iterator<Item = (usize, Vec<usize>, Vec<Prepared>)>> = if st.cached {
            let order = epoch_order(n_train, seed, epoch, true);
            let chunks: Vec<Vec<usize>> = order.chunks(st.batch).map(<[usize]>::to_vec).collect();
            Box::new(chunks.into_iter().enumerate().skip(meta.batches_done).map(|(n, c)| (n, c, Vec::new())))
        } else {
            let pcfg = PipelineConfig {
                batch_size: st.batch,
                seed,
                epoch,
                shuffle: true,
                threads: cfg.threads.max(1),
                prefetch: 1,
                start_batch: meta.batches_done,
            };
            let sys2 = sys.clone();
            let p = Pipeline::start(samples.clone(), &pcfg, move |s, img, rng| {
                let mut p = sys2.prepare(&img, Mode::Train, rng);
                p.theme = s.target.theme;
                Ok(p)
            })?;
            Box::new(p.map(|b| {
                let idx = b.items.iter().map(|i| i.index).collect();
                (b.number, idx, b.items.into_iter().map(|i| i.data).collect())
            }))
        };
        for (number, idx, preps) in batches {
            if cancel.load(Ordering::Relaxed) {
                save(&mut meta, &extra, &sched, opt.as_ref())?;
                return Ok((summary(&meta, &extra, false), None));
            }
            let tg: Vec<&Target> = idx.iter().map(|&i| targets[i]).collect();
            let y = small_data::target_tensor(&head_kind, &tg, ctx.std.as_ref())?;
            sys.reseed_dropout(step_seed(seed, index, meta.global_step));
            let mut rng = SeededRng::new(seed).fork(0x4c4f_5353 + index as u64).fork(meta.global_step);
            let out = if st.cached {
                let feats: Vec<&PhotoFeatures> = idx
                    .iter()
                    .map(|&i| ctx.features.get(&ctx.train.samples[i].path).ok_or_else(|| cfg_err("a photo has no cached features")))
                    .collect::<Result<_>>()?;
                let (x, groups) = small_data::inputs(&sys, &feats, Mode::Train, st.spec.test_groups, &mut rng)?;
                sys.forward_features(&x, feats.len(), groups, true)?
            } else {
                let b = sys.collate(&preps, &Device::Cpu)?;
                sys.forward_t(&b, !st.frozen_columns)?
            };
            let loss = small_data::output_loss(&sys, &out, &y, st.mpemd, &mut rng)?;
            let mut grads = loss.backward()?;
            if let Some(c) = cfg.clip_grad_norm {
                clip_grad_norm(&mut grads, &opt.trainable_vars(), c)?;
            }
            opt.step(&grads)?;
            let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !l.is_finite() {
                return Err(other(format!("{}: the training loss is {l} at step {}", st.name, meta.global_step)));
            }
            meta.global_step += 1;
            meta.batches_done = number + 1;
            extra.loss_sum += l;
            extra.loss_batches += 1;
            let done_here = meta.global_step - steps_at_start;
            let left = total_steps.saturating_sub(meta.global_step);
            progress(&Progress {
                event: ProgressEvent::Step,
                stage: st.name.clone(),
                stage_index: index,
                stages,
                epoch,
                epochs: st.epochs,
                batch: number + 1,
                batches: batches_per_epoch,
                global_step: meta.global_step,
                loss: extra.loss_sum / extra.loss_batches as f64,
                step_loss: l,
                metric: extra.val_metrics.get(metric_name).map(|v| (metric_name.to_string(), *v)),
                eta_s: Some(started.elapsed().as_secs_f64() / done_here as f64 * left as f64),
            });
            let stop = st.last && cfg.max_steps.is_some_and(|m| meta.global_step >= m);
            if stop || (cfg.checkpoint_every > 0 && meta.global_step.is_multiple_of(cfg.checkpoint_every)) {
                save(&mut meta, &extra, &sched, opt.as_ref())?;
            }
            if stop {
                return Ok((summary(&meta, &extra, false), None));
            }
        }
        // End of the epoch: its loss, validation, best, schedule.
        let epoch_loss = extra.loss_sum / extra.loss_batches.max(1) as f64;
        extra.epoch_losses.push(epoch_loss);
        meta.metrics = BTreeMap::from([("train_loss".to_string(), epoch_loss)]);
        meta.extra = serde_json::to_value(&extra).map_err(other)?;
        if ctx.val.is_empty() {
            run.update_best(&vars, &mut meta, "train_loss", epoch_loss, false)?;
        } else {
            let preds = if st.cached {
                let feats: Vec<&PhotoFeatures> = ctx.val.samples.iter().filter_map(|s| ctx.features.get(&s.path)).collect();
                let p = small_data::predict(&sys, &feats, &fit)?;
                let mut it = p.into_iter();
                ctx.val.samples.iter().map(|s| if ctx.features.contains_key(&s.path) { it.next() } else { None }).collect()
            } else {
                predict_pixels(&sys, &ctx.val.samples, cfg.threads, 4, seed)?.0
            };
            let vt: Vec<Target> = ctx.val.samples.iter().map(|s| s.target.clone()).collect();
            extra.val_metrics = metrics_for(task, &preds, &vt, ctx.std.as_ref());
            for (k, v) in &extra.val_metrics {
                meta.metrics.insert(format!("val_{k}"), *v);
            }
            let value = extra.val_metrics.get(metric_name).copied().unwrap_or(f64::NAN);
            meta.extra = serde_json::to_value(&extra).map_err(other)?;
            if value.is_finite() {
                run.update_best(&vars, &mut meta, &format!("val_{metric_name}"), value, higher)?;
            } else if meta.best.is_none() {
                run.update_best(&vars, &mut meta, "train_loss", epoch_loss, false)?;
            }
        }
        sched.end_epoch(Some(epoch_loss))?;
        meta.epoch += 1;
        meta.batches_done = 0;
        extra.loss_sum = 0.0;
        extra.loss_batches = 0;
        progress(&Progress {
            event: ProgressEvent::EpochEnd,
            stage: st.name.clone(),
            stage_index: index,
            stages,
            epoch,
            epochs: st.epochs,
            batch: batches_per_epoch,
            batches: batches_per_epoch,
            global_step: meta.global_step,
            loss: epoch_loss,
            step_loss: epoch_loss,
            metric: extra.val_metrics.get(metric_name).map(|v| (metric_name.to_string(), *v)),
            eta_s: None,
        });
        save(&mut meta, &extra, &sched, opt.as_ref())?;
    }
    extra.done = true;
    save(&mut meta, &extra, &sched, opt.as_ref())?;
    // `best` carries the same description (its `extra` was written when it was saved).
    let s = summary(&meta, &extra, true);
    progress(&Progress {
        event: ProgressEvent::StageEnd,
        stage: st.name.clone(),
        stage_index: index,
        stages,
        epoch: meta.epoch.saturating_sub(1),
        epochs: st.epochs,
        batch: batches_per_epoch,
        batches: batches_per_epoch,
        global_step: meta.global_step,
        loss: s.epoch_losses.last().copied().unwrap_or(f64::NAN),
        step_loss: f64::NAN,
        metric: extra.val_metrics.get(metric_name).map(|v| (metric_name.to_string(), *v)),
        eta_s: Some(0.0),
    });
    Ok((s, Some(checkpoint_tensors(&st.dir, "best")?)))
}
