//! `keepers classify IMG|DIR...`: top-k ImageNet classes per photo.
//! A photo that cannot be read is reported by name and the others go on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rayon::prelude::*;

use crate::library::decode::{list_images, load_rgb};
use crate::model::imagenet::Classifier;
use crate::model::weights::WeightsFile;

pub fn run(paths: &[PathBuf], top: usize) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(list_images(p).with_context(|| format!("cannot list folder {}", p.display()))?);
        } else {
            files.push(p.clone());
        }
    }
    let (device, _) = crate::device::best_device();
    let classifier = Classifier::load(&WeightsFile::EfficientNetLite0.path(), &device)?;
    let mut failed = 0usize;
    const BATCH: usize = 16;
    for chunk in files.chunks(BATCH) {
        let decoded: Vec<_> = chunk.par_iter().map(|p| load_rgb(p)).collect();
        let ok: Vec<_> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut results = classifier.top_k(&ok, top).context("classification failed")?.into_iter();
        for (path, r) in chunk.iter().zip(&decoded) {
            match r {
                Ok(_) => {
                    println!("{}", path.display());
                    for (_, name, p) in results.next().unwrap_or_default() {
                        println!("  {p:7.4}  {name}");
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} photos could not be read", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
