//! `keepers info`: version, device, threads and the status of each weights file.

use std::process::ExitCode;

use crate::model::weights::{WeightsFile, WeightsStatus, status, weights_dir};

pub fn run() -> anyhow::Result<ExitCode> {
    let (_, device) = crate::device::best_device();
    println!("keepers {}", env!("CARGO_PKG_VERSION"));
    println!("device:  {device}");
    println!("threads: {}", crate::device::threads());
    println!("gpu build: cuda={} metal={}", cfg!(feature = "cuda"), cfg!(feature = "metal"));
    println!("weights: {}", weights_dir().display());
    let mut bad = false;
    for f in WeightsFile::ALL {
        let s = match status(f) {
            WeightsStatus::Ok => "ok (sha256 verified)".to_string(),
            WeightsStatus::Missing => {
                bad = true;
                format!("MISSING: {}", f.fix())
            }
            WeightsStatus::Unreadable(e) => {
                bad = true;
                format!("UNREADABLE ({e}): {}", f.fix())
            }
            WeightsStatus::ChecksumMismatch(actual) => {
                bad = true;
                format!("WRONG FILE (sha256 {actual}): {}", f.fix())
            }
        };
        println!("  {:<32} {:<48} {s}", f.file_name(), f.description());
    }
    println!("heads:");
    let (config, lite0) = crate::model::quality::default_paths();
    match crate::model::quality::QualityModel::load(&config, &lite0, &candle_core::Device::Cpu) {
        Ok(m) => {
            println!("  quality: {} version {} (LIVE Challenge MOS; weights/quality.md)", crate::model::quality::MODEL_ID, m.version())
        }
        Err(e) if e.is_not_trained() => println!("  quality: not trained yet ({e})"),
        Err(e) => {
            bad = true;
            println!("  quality: UNUSABLE: {e}");
        }
    }
    println!("  aesthetic, style, theme: not trained yet — train them in the taste panel or from AVA");
    Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
