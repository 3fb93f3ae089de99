//! `keepers predict IMG|DIR...`: what Keepers knows of each photo from the shipped models: the
//! technical quality score (LIVE Challenge MOS scale) with every grid patch's own score (the
//! heatmap the app draws), BRISQUE, and which heads are not trained yet; with `--checkpoint
//! RUN/best`, also the outputs of a model trained by `keepers train` (a score, a keep
//! probability, a score distribution or style probabilities, by its task). Photos are decoded as
//! the app's worker decodes them (long side at most `--max-side`), and patch rectangles are given
//! in the photo's full-resolution pixels. A photo that cannot be read is reported (on stderr, and
//! as an `error` in JSON / CSV) and the others go on.
//!
//! Formats: `text` (default, for people), `json` (JSON Lines: one object per photo), `csv` (one
//! row per photo, `patch` empty, then one row per grid patch with `--patches`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use crate::library::decode::{Size, decode_intact};
use crate::model::brisque::Brisque;
use crate::model::heads::Prediction;
use crate::model::quality::{self, QualityModel};
use crate::model::weights::WeightsFile;
use crate::train::procedures::{self, EvalConfig, LoadedModel, Task};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

pub struct PredictArgs<'a> {
    pub paths: &'a [PathBuf],
    pub max_side: u32,
    pub patches: bool,
    pub format: Format,
    pub checkpoint: Option<&'a Path>,
}

/// One grid patch: its cell in full-resolution photo pixels and its score.
struct PatchOut {
    rect: [f64; 4],
    score: f64,
}

/// Everything printed for one photo.
struct PhotoOut {
    path: PathBuf,
    error: Option<String>,
    quality: Option<f64>,
    patches: Vec<PatchOut>,
    brisque: Option<f64>,
    trained: Option<Prediction>,
}

/// A trained checkpoint's prediction in its task's units, as JSON.
fn prediction_json(p: &Prediction, task: &Task) -> Value {
    match p {
        Prediction::Quality { score } => json!({ "score": score }),
        Prediction::Binary { p_high } => json!({ "p_high": p_high }),
        Prediction::Distribution { probs, mean, std } => json!({ "histogram": probs, "mean": mean, "std": std }),
        Prediction::Styles { probs } => {
            let names = match task {
                Task::Styles { tags } => tags.clone(),
                _ => Vec::new(),
            };
            let map: serde_json::Map<String, Value> =
                probs.iter().enumerate().map(|(i, p)| (names.get(i).cloned().unwrap_or_else(|| format!("style{i}")), json!(p))).collect();
            json!({ "styles": map })
        }
    }
}

/// The same, in one CSV cell / text line: `score=…`, `p_high=…`, `mean=…;std=…`, `tag=p;…`.
fn prediction_text(p: &Prediction, task: &Task) -> String {
    match prediction_json(p, task) {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Object(inner) => inner.iter().map(|(t, p)| format!("{t}={p}")).collect::<Vec<_>>().join(";"),
                Value::Array(a) => format!("{k}={}", a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")),
                v => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(";"),
        v => v.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

pub fn run(a: PredictArgs) -> anyhow::Result<ExitCode> {
    let (files, folder_problems) = super::collect_files(a.paths)?;
    let (device, _) = crate::device::best_device();
    let (config, lite0) = quality::default_paths();
    let model = match QualityModel::load(&config, &lite0, &device) {
        Ok(m) => Some(m),
        Err(e) if e.is_not_trained() => {
            eprintln!("quality: {e}");
            None
        }
        Err(e) => return Err(e).with_context(|| format!("loading the quality model {}", config.display())),
    };
    let brisque = Brisque::load(&Brisque::default_dir()).map_err(|e| eprintln!("brisque: {e}")).ok();
    let trained: Option<LoadedModel> = match a.checkpoint {
        Some(c) => Some(
            procedures::load_model(c, &WeightsFile::EfficientNetLite0.path(), None)
                .with_context(|| format!("loading the model in {}", c.display()))?,
        ),
        None => None,
    };
    if let Some(t) = &trained
        && matches!(t.spec.task, Task::Distribution { .. } | Task::Styles { .. })
        && !t.theme_names.is_empty()
    {
        eprintln!("note: {} conditions on themes; predictions here are without a theme", a.checkpoint.unwrap().display());
    }

    let mut out: Vec<PhotoOut> = Vec::with_capacity(files.len());
    for f in &files {
        let mut p = PhotoOut { path: f.clone(), error: None, quality: None, patches: Vec::new(), brisque: None, trained: None };
        match decode_intact(f, Size::Fit(a.max_side)) {
            Err(e) => {
                eprintln!("error: {e}");
                p.error = Some(e.to_string());
            }
            Ok(d) => {
                if let Some(m) = &model {
                    let q = m.score(&[&d.image]).with_context(|| format!("scoring {}", f.display()))?.remove(0);
                    p.quality = Some(q.score as f64);
                    let (sx, sy) = (d.full_width as f64 / d.image.width() as f64, d.full_height as f64 / d.image.height() as f64);
                    p.patches = q
                        .patches
                        .iter()
                        .map(|g| PatchOut { rect: [g.cell.x * sx, g.cell.y * sy, g.cell.w * sx, g.cell.h * sy], score: g.score as f64 })
                        .collect();
                }
                p.brisque = brisque.as_ref().map(|b| b.score(&d.image));
            }
        }
        out.push(p);
    }
    if let Some(t) = &trained {
        let readable: Vec<usize> = (0..out.len()).filter(|&i| out[i].error.is_none()).collect();
        let paths: Vec<PathBuf> = readable.iter().map(|&i| out[i].path.clone()).collect();
        let cfg = EvalConfig {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            batch: 4,
            seed: 0,
            lite0: WeightsFile::EfficientNetLite0.path(),
            feature_cache: Some(super::cv::default_cache()),
        };
        let (preds, skipped) = procedures::predict_photos(t, &paths, None, &cfg, |_, _| {})
            .with_context(|| format!("predicting with {}", a.checkpoint.unwrap().display()))?;
        if !skipped.is_empty() {
            eprintln!("{skipped}");
        }
        for (&i, p) in readable.iter().zip(preds) {
            // Quality heads predict standardised scores: back to the training units.
            out[i].trained = p.map(|p| match (p, &t.std) {
                (Prediction::Quality { score }, Some(s)) => Prediction::Quality { score: s.inverse(score as f64) as f32 },
                (p, _) => p,
            });
        }
    }

    let task = trained.as_ref().map(|t| t.spec.task.clone());
    let model_name = model.as_ref().map(|m| format!("{} {}", quality::MODEL_ID, m.version()));
    match a.format {
        Format::Text => {
            for p in &out {
                if p.error.is_some() {
                    continue;
                }
                println!("{}", p.path.display());
                match (&model_name, p.quality) {
                    (Some(name), Some(q)) => {
                        println!("  quality   {q:6.1}  (LIVE Challenge MOS scale, {name})");
                        if a.patches {
                            println!("  patches (grid cell in photo pixels: x y w h -> score)");
                            for g in &p.patches {
                                let [x, y, w, h] = g.rect;
                                println!("    {x:6.0} {y:6.0} {w:6.0} {h:6.0} -> {:5.1}", g.score);
                            }
                        }
                    }
                    _ => println!("  quality   not trained yet"),
                }
                match p.brisque {
                    Some(b) if b.is_finite() => println!("  brisque   {b:6.1}  (lower is better)"),
                    Some(_) => println!("  brisque      n/a  (no texture to fit: a flat or tiny image)"),
                    None => {}
                }
                match (&trained, &p.trained, &task) {
                    (Some(t), Some(pred), Some(task)) => {
                        println!("  {} ({}, {})  {}", t.spec.system, t.meta.procedure, task.name(), prediction_text(pred, task))
                    }
                    (Some(_), None, _) => println!("  checkpoint: no prediction (photo skipped)"),
                    _ => println!("  aesthetic, style, theme: not trained yet"),
                }
            }
        }
        Format::Json => {
            for p in &out {
                let mut o = json!({ "path": p.path.display().to_string() });
                if let Some(e) = &p.error {
                    o["error"] = json!(e);
                } else {
                    o["quality"] = json!(p.quality);
                    o["quality_model"] = json!(model_name);
                    if a.patches {
                        o["patches"] = p
                            .patches
                            .iter()
                            .map(|g| json!({ "x": g.rect[0], "y": g.rect[1], "w": g.rect[2], "h": g.rect[3], "score": g.score }))
                            .collect();
                    }
                    o["brisque"] = json!(p.brisque);
                    match (&trained, &task) {
                        (Some(t), Some(task)) => {
                            o["checkpoint"] = json!({ "system": t.spec.system, "procedure": t.meta.procedure, "task": task.name(),
                                "prediction": p.trained.as_ref().map(|x| prediction_json(x, task)) });
                        }
                        _ => o["not_trained"] = json!(["aesthetic", "style", "theme"]),
                    }
                }
                println!("{o}");
            }
        }
        Format::Csv => {
            println!("path,patch,x,y,w,h,quality,brisque,checkpoint_prediction,error");
            for p in &out {
                let path = csv_field(&p.path.display().to_string());
                let pred = match (&p.trained, &task) {
                    (Some(x), Some(t)) => csv_field(&prediction_text(x, t)),
                    _ => String::new(),
                };
                let err = csv_field(p.error.as_deref().unwrap_or(""));
                println!("{path},,,,,,{},{},{pred},{err}", opt(p.quality, 3), opt(p.brisque.filter(|b| b.is_finite()), 3));
                if a.patches {
                    for (i, g) in p.patches.iter().enumerate() {
                        let [x, y, w, h] = g.rect;
                        println!("{path},{i},{x:.0},{y:.0},{w:.0},{h:.0},{:.3},,,", g.score);
                    }
                }
            }
        }
    }
    let failed = out.iter().filter(|p| p.error.is_some()).count();
    Ok(super::photos_exit_code(failed, files.len(), folder_problems))
}
