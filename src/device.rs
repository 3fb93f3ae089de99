//! Compute device selection: the GPU when built with `cuda`/`metal` and one is present,
//! otherwise the CPU with no loss of function. `KEEPERS_DEVICE=cpu` keeps a GPU build on the
//! CPU (to compare the two on one machine, or to leave the GPU to other work).

use candle_core::Device;

/// Environment variable that, set to `cpu`, makes [`best_device`] choose the CPU.
pub const DEVICE_ENV: &str = "KEEPERS_DEVICE";

/// The best available device, and a human-readable description of it.
pub fn best_device() -> (Device, String) {
    let cpu = || (Device::Cpu, format!("CPU ({} threads, {})", threads(), simd_level()));
    if std::env::var(DEVICE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("cpu")) {
        let (d, desc) = cpu();
        return (d, format!("{desc}, chosen by {DEVICE_ENV}=cpu"));
    }
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(d) => return (d, "CUDA device 0".to_string()),
        Err(e) => {
            let (d, desc) = cpu();
            // candle's error carries a backtrace after the first line.
            let e = e.to_string();
            return (d, format!("{desc}; no CUDA device: {}", e.lines().next().unwrap_or_default()));
        }
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return (d, "Metal device 0".to_string());
    }
    #[allow(unreachable_code)]
    cpu()
}

/// Worker threads used by the CPU kernels (rayon; `RAYON_NUM_THREADS` overrides).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// The widest vector instruction set the CPU kernels will use.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
        "SSE2"
    }
    #[cfg(not(target_arch = "x86_64"))]
    "baseline"
}
