//! Compute device selection: the GPU when built with `cuda`/`metal` and one is present,
//! otherwise the CPU with no loss of function.

use candle_core::Device;

/// The best available device, and a human-readable description of it.
pub fn best_device() -> (Device, String) {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return (d, "CUDA device 0".to_string());
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return (d, "Metal device 0".to_string());
    }
    (Device::Cpu, format!("CPU ({} threads, {})", threads(), simd_level()))
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
