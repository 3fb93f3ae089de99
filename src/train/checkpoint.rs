//! Checkpoints: weights in safetensors, optimiser buffers in a second safetensors file, and a
//! JSON file with everything else (system, procedure, task, dataset fingerprint, epoch and
//! position in it, optimiser scalars, schedule, metrics, seed, git revision).
//!
//! Layout in a run folder, for a checkpoint called `name` (usually `last` and `best`):
//! `name.json` names the tensor files it belongs to, `name.<step>.safetensors` and
//! `name.<step>.optim.safetensors`, and records their sha256.
//!
//! **Crash safety.** Tensor files are written under new names, then the JSON is written to a
//! temporary file and renamed over `name.json` (atomic on the same file system), and only then
//! are the previous tensor files removed. A run killed at any moment leaves either the old or
//! the new checkpoint complete; [`load`] checks the sha256 of the files it reads.
//!
//! **Bit-identical resume.** Tensors are stored with their exact bits; together with the
//! optimiser state ([`crate::train::optim::OptimizerState`]), the schedule
//! ([`crate::train::schedule::LrScheduler`]) and the pipeline's `start_batch` (from
//! [`CheckpointMeta::batches_done`]), a resumed run computes exactly what the uninterrupted run
//! would have (`tests/checkpoint.rs` checks this).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::train::optim::{OptimError, Optimizer, OptimizerMeta, OptimizerState};
use crate::train::schedule::LrScheduler;

/// Bump when the JSON layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Tensors { path: PathBuf, source: candle_core::Error },
    #[error("{path}: not a Keepers checkpoint: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {problem}")]
    Mismatch { path: PathBuf, problem: String },
    #[error("{path}: {source}")]
    Optimizer { path: PathBuf, source: OptimError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_owned(), source }
}

/// The best value of a validation metric seen so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub metric: String,
    pub value: f64,
    pub higher_is_better: bool,
    pub epoch: u64,
}

impl Best {
    /// Whether `value` beats this best (strictly).
    pub fn improved_by(&self, value: f64) -> bool {
        if self.higher_is_better { value > self.value } else { value < self.value }
    }
}

/// Everything about a checkpoint except the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    /// Seed system (`"SCNN"`, `"DMA-stat"`, `"MP-ada"`, ...).
    pub system: String,
    /// Training procedure (e.g. `"head-then-unfreeze"`).
    pub procedure: String,
    /// Task (`"binary"`, `"distribution"`, `"score"`, `"styles"`, ...).
    pub task: String,
    /// [`crate::train::data::Dataset::fingerprint`] of the training rows.
    pub dataset_fingerprint: String,
    pub seed: u64,
    /// The epoch in progress, counted from 0.
    pub epoch: u64,
    /// Batches of `epoch` already trained (0 = the epoch has not started); resume with
    /// `PipelineConfig { epoch, start_batch: batches_done, .. }`.
    pub batches_done: usize,
    /// Optimiser steps so far.
    pub global_step: u64,
    /// Latest metrics (validation, training loss, ...), by name.
    pub metrics: BTreeMap<String, f64>,
    pub best: Option<Best>,
    pub scheduler: Option<LrScheduler>,
    /// Set by [`save`] from the optimiser given to it.
    pub optimizer: Option<OptimizerMeta>,
    /// `git describe`-like revision of the source that trained it, when known ([`git_revision`]).
    pub git_revision: Option<String>,
    /// Anything else the procedure needs to resume (its phase, its own counters...).
    pub extra: serde_json::Value,
    /// Set by [`save`].
    pub weights_file: String,
    pub weights_sha256: String,
    pub optimizer_file: Option<String>,
    pub optimizer_sha256: Option<String>,
}

impl CheckpointMeta {
    pub fn new(system: &str, procedure: &str, task: &str, dataset_fingerprint: &str, seed: u64) -> Self {
        Self {
            format: FORMAT_VERSION,
            system: system.into(),
            procedure: procedure.into(),
            task: task.into(),
            dataset_fingerprint: dataset_fingerprint.into(),
            seed,
            epoch: 0,
            batches_done: 0,
            global_step: 0,
            metrics: BTreeMap::new(),
            best: None,
            scheduler: None,
            optimizer: None,
            git_revision: git_revision(),
            extra: serde_json::Value::Null,
            weights_file: String::new(),
            weights_sha256: String::new(),
            optimizer_file: None,
            optimizer_sha256: None,
        }
    }
}

/// The revision of the source tree this binary was built from (`git rev-parse HEAD`, `-dirty`
/// appended when it has uncommitted changes), or `None` when that tree is not a git checkout.
pub fn git_revision() -> Option<String> {
    static REV: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    REV.get_or_init(|| {
        let dir = env!("CARGO_MANIFEST_DIR");
        let out = std::process::Command::new("git").args(["-C", dir, "rev-parse", "HEAD"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let mut rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
        let dirty = std::process::Command::new("git")
            .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
        if dirty {
            rev.push_str("-dirty");
        }
        Some(rev)
    })
    .clone()
}

fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

fn save_tensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<String, CheckpointError> {
    // Contiguous CPU copies: safetensors writes raw bytes.
    let cpu: HashMap<String, Tensor> = map
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()
        .map_err(|source| CheckpointError::Tensors { path: path.to_owned(), source })?;
    candle_core::safetensors::save(&cpu, path).map_err(|source| CheckpointError::Tensors { path: path.to_owned(), source })?;
    sha256_file(path)
}

/// Writes checkpoint `name` into `dir` (created if needed): `vars` (e.g.
/// [`crate::train::optim::named_vars`] of the model's `VarMap`), the optimiser's state if given,
/// and `meta` (whose file fields and `optimizer` are filled in here). Returns the JSON's path.
pub fn save(
    dir: &Path,
    name: &str,
    vars: &[(String, Var)],
    optimizer: Option<&dyn Optimizer>,
    meta: &CheckpointMeta,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json_path = dir.join(format!("{name}.json"));
    let mut meta = meta.clone();
    meta.format = FORMAT_VERSION;
    // A fresh tag per save, so the files of the previous checkpoint stay valid until the JSON is swapped.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tag = format!("s{}-{:x}", meta.global_step, nanos);
    let weights: HashMap<String, Tensor> = vars.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect();
    meta.weights_file = format!("{name}.{tag}.safetensors");
    meta.weights_sha256 = save_tensors(&weights, &dir.join(&meta.weights_file))?;
    meta.optimizer = None;
    meta.optimizer_file = None;
    meta.optimizer_sha256 = None;
    if let Some(opt) = optimizer {
        let OptimizerState { meta: om, buffers } = opt.state();
        meta.optimizer = Some(om);
        let f = format!("{name}.{tag}.optim.safetensors");
        meta.optimizer_sha256 = Some(save_tensors(&buffers, &dir.join(&f))?);
        meta.optimizer_file = Some(f);
    }
    let text = serde_json::to_string_pretty(&meta).map_err(|source| CheckpointError::Json { path: json_path.clone(), source })?;
    let tmp = dir.join(format!(".{name}.json.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &json_path).map_err(io(&json_path))?;
    // Remove this checkpoint's older tensor files.
    let keep = [Some(meta.weights_file.as_str()), meta.optimizer_file.as_deref()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            if f.starts_with(&format!("{name}.s")) && f.ends_with(".safetensors") && !keep.contains(&Some(f.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(json_path)
}

/// Reads `name.json` in `dir` without loading tensors; `Ok(None)` when there is no such checkpoint.
pub fn load_meta(dir: &Path, name: &str) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let path = dir.join(format!("{name}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CheckpointError::Io { path, source: e }),
    };
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|source| CheckpointError::Json { path: path.clone(), source })?;
    if meta.format != FORMAT_VERSION {
        return Err(CheckpointError::Mismatch {
            path,
            problem: format!("checkpoint format {} (this Keepers reads {FORMAT_VERSION})", meta.format),
        });
    }
    Ok(Some(meta))
}

fn read_checked(path: &Path, sha: &str) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let actual = sha256_file(path)?;
    if actual != sha {
        return Err(CheckpointError::Mismatch {
            path: path.to_owned(),
            problem: format!("sha256 {actual} differs from the recorded {sha}"),
        });
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| CheckpointError::Tensors { path: path.to_owned(), source })
}

/// Sets `vars` from the tensors in `map` (read from `path`), checking names, shapes and dtypes.
/// Every variable must be present; returns the names in the file that no variable took.
pub fn set_vars(path: &Path, map: &HashMap<String, Tensor>, vars: &[(String, Var)]) -> Result<Vec<String>, CheckpointError> {
    let mismatch = |problem: String| CheckpointError::Mismatch { path: path.to_owned(), problem };
    let missing: Vec<&str> = vars.iter().filter(|(n, _)| !map.contains_key(n)).map(|(n, _)| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(mismatch(format!("has no tensor for {} variable(s): {}", missing.len(), missing.join(", "))));
    }
    for (n, v) in vars {
        let t = &map[n];
        if t.dims() != v.dims() || t.dtype() != v.dtype() {
            return Err(mismatch(format!(
                "{n} is {:?} {:?} in the file, {:?} {:?} in the model",
                t.dtype(),
                t.dims(),
                v.dtype(),
                v.dims()
            )));
        }
        let t = t.to_device(v.device()).map_err(|source| CheckpointError::Tensors { path: path.to_owned(), source })?;
        v.set(&t).map_err(|source| CheckpointError::Tensors { path: path.to_owned(), source })?;
    }
    let names: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut unused: Vec<String> = map.keys().filter(|k| !names.contains(k.as_str())).cloned().collect();
    unused.sort();
    Ok(unused)
}

/// Loads checkpoint `name` from `dir` into `vars` (all must be present, and the file must have
/// no others) and, if given, the optimiser. Returns its metadata; `Ok(None)` if there is none.
pub fn load(
    dir: &Path,
    name: &str,
    vars: &[(String, Var)],
    optimizer: Option<&mut dyn Optimizer>,
) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let Some(meta) = load_meta(dir, name)? else { return Ok(None) };
    let wpath = dir.join(&meta.weights_file);
    let weights = read_checked(&wpath, &meta.weights_sha256)?;
    let unused = set_vars(&wpath, &weights, vars)?;
    if !unused.is_empty() {
        return Err(CheckpointError::Mismatch { path: wpath, problem: format!("has tensors the model lacks: {}", unused.join(", ")) });
    }
    if let Some(opt) = optimizer {
        let (Some(om), Some(f), Some(sha)) = (&meta.optimizer, &meta.optimizer_file, &meta.optimizer_sha256) else {
            return Err(CheckpointError::Mismatch { path: dir.join(format!("{name}.json")), problem: "has no optimiser state".into() });
        };
        let opath = dir.join(f);
        let buffers = read_checked(&opath, sha)?;
        opt.load_state(&OptimizerState { meta: om.clone(), buffers })
            .map_err(|source| CheckpointError::Optimizer { path: opath, source })?;
    }
    Ok(Some(meta))
}

/// A training run's folder with its `last` checkpoint (for resuming) and `best` (by validation).
#[derive(Debug, Clone)]
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Saves `last`.
    pub fn save_last(
        &self,
        vars: &[(String, Var)],
        optimizer: Option<&dyn Optimizer>,
        meta: &CheckpointMeta,
    ) -> Result<(), CheckpointError> {
        save(&self.dir, "last", vars, optimizer, meta).map(|_| ())
    }

    /// Records `value` of `metric` for `meta.epoch` in `meta.best` and saves `best` (weights and
    /// metadata, no optimiser state) when it improves on `meta.best` (or there is none yet).
    /// Returns whether it did. Save `last` after this call so it carries the updated `best`.
    pub fn update_best(
        &self,
        vars: &[(String, Var)],
        meta: &mut CheckpointMeta,
        metric: &str,
        value: f64,
        higher_is_better: bool,
    ) -> Result<bool, CheckpointError> {
        let better = match &meta.best {
            Some(b) if b.metric == metric => b.improved_by(value),
            _ => true,
        } && value.is_finite();
        if better {
            meta.best = Some(Best { metric: metric.into(), value, higher_is_better, epoch: meta.epoch });
            save(&self.dir, "best", vars, None, meta)?;
        }
        Ok(better)
    }

    /// Loads `last` into `vars` and the optimiser, for resuming; `Ok(None)` for a fresh run.
    pub fn resume(&self, vars: &[(String, Var)], optimizer: Option<&mut dyn Optimizer>) -> Result<Option<CheckpointMeta>, CheckpointError> {
        load(&self.dir, "last", vars, optimizer)
    }

    /// Loads `best` into `vars` (e.g. to export the shipped weights).
    pub fn load_best(&self, vars: &[(String, Var)]) -> Result<Option<CheckpointMeta>, CheckpointError> {
        load(&self.dir, "best", vars, None)
    }
}
