//! Compute device selection: the GPU when built with `cuda`/`metal` and one is present,
//! otherwise the CPU with no loss of function. `KEEPERS_DEVICE=cpu` keeps a GPU build on the
//! CPU (to compare the two on one machine, or to leave the GPU to other work).

use candle_core::Device;

/// Environment variable that, set to `cpu`, makes [`best_device`] choose the CPU.
pub const DEVICE_ENV: &str = "KEEPERS_DEVICE";

/// The best available device, and a human-readable description of it (for the CPU, why: the
/// environment asked for it, or no GPU answered).
pub fn best_device() -> (Device, String) {
    let cpu = |why: &str| (Device::Cpu, format!("CPU ({} threads, {}){why}", threads(), simd_level()));
    if std::env::var(DEVICE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("cpu")) {
        return cpu(&format!(", chosen by {DEVICE_ENV}=cpu"));
    }
    #[cfg(feature = "cuda")]
    let why = match Device::new_cuda(0) {
        Ok(d) => return (d, "CUDA device 0".to_string()),
        // candle's error carries a backtrace after its first line.
        Err(e) => format!("; no CUDA device: {}", e.to_string().lines().next().unwrap_or_default()),
    };
    #[cfg(not(feature = "cuda"))]
    let why = String::new();
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return (d, "Metal device 0".to_string());
    }
    cpu(&why)
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
