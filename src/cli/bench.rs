//! `keepers bench backbone`: backbone forward time per 224x224 image and peak memory, and the
//! time of one training step (forward with batch statistics and backward to every parameter).
//! Prints figures; compare with `scripts/bench_pytorch.py` run on the same machine.

use std::process::ExitCode;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::model::efficientnet_lite::{EfficientNetLite, LiteConfig};
use crate::model::systems::column::load_lite0_into;
use crate::model::weights::WeightsFile;

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak-RSS counter (Linux >= 4.0); harmless elsewhere.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `f`, returning its result and the seconds it took.
pub fn secs<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

/// A benchmark's scratch folder in the system's temporary folder, named by the benchmark and
/// this process's id, emptied when made and removed when dropped (however the benchmark ends).
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(bench: &str) -> anyhow::Result<Scratch> {
        use anyhow::Context;
        let dir = std::env::temp_dir().join(format!("keepers-bench-{bench}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn backbone(reps: usize, inference_only: bool) -> anyhow::Result<ExitCode> {
    let reps = reps.max(1);
    let (device, desc) = crate::device::best_device();
    // The weights as variables (sha256-verified): the trainable network for forward_t and the
    // training step, and its folded copy for inference.
    let varmap = VarMap::new();
    let net = EfficientNetLite::new(&LiteConfig::lite0(), VarBuilder::from_varmap(&varmap, DType::F32, &device).pp("column"))?;
    load_lite0_into(&varmap, "column", &WeightsFile::EfficientNetLite0.path())?;
    let size = net.config().image_size;
    let folded = net.fold(DType::F32)?;
    println!("EfficientNet-Lite0 forward to logits, {size}x{size}, f32, {desc}");
    println!("{:<26} {:>6} {:>12} {:>12} {:>14}", "path", "batch", "ms/batch", "ms/image", "peak RSS MiB");
    for batch in [1usize, 16] {
        let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?.to_device(&device)?;
        let paths: &[(&str, bool)] = if inference_only {
            &[("folded (inference)", true)]
        } else {
            &[("folded (inference)", true), ("forward_t(train=false)", false)]
        };
        for &(name, fast) in paths {
            reset_peak_rss();
            let run = || -> candle_core::Result<()> {
                // Full forward to the ImageNet logits, as the PyTorch comparison runs it.
                let logits = if fast { folded.classify(&folded.features(&x)?.pooled)? } else { net.forward_t(&x, false)? };
                device.synchronize()?;
                drop(logits);
                Ok(())
            };
            for _ in 0..3 {
                run()?; // warm-up: thread pool, allocator, caches
            }
            let times: Vec<f64> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    run().map(|_| t.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<candle_core::Result<_>>()?;
            let ms = median(times);
            let peak = peak_rss_mib().map_or("n/a".to_string(), |m| format!("{m:.0}"));
            println!("{name:<26} {batch:>6} {ms:>12.1} {:>12.2} {peak:>14}", ms / batch as f64);
        }
        if !inference_only {
            // One fine-tuning step's work: forward with batch statistics, a loss on the logits,
            // backward to every parameter (no optimiser update, so every repetition is alike).
            let y = Tensor::randn(0f32, 1.0, (batch, 1000), &Device::Cpu)?.to_device(&device)?;
            reset_peak_rss();
            let step = || -> candle_core::Result<()> {
                let loss = (net.forward_t(&x, true)? * &y)?.sum_all()?;
                let grads = loss.backward()?;
                device.synchronize()?;
                drop(grads);
                Ok(())
            };
            step()?; // warm-up
            let times: Vec<f64> = (0..reps.min(5))
                .map(|_| {
                    let (r, s) = secs(step);
                    r.map(|_| s * 1e3)
                })
                .collect::<candle_core::Result<_>>()?;
            let ms = median(times);
            let peak = peak_rss_mib().map_or("n/a".to_string(), |m| format!("{m:.0}"));
            println!("{:<26} {batch:>6} {ms:>12.1} {:>12.2} {peak:>14}", "train step (fwd + bwd)", ms / batch as f64);
        }
    }
    Ok(ExitCode::SUCCESS)
}
