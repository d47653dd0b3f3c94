//! Which vector extensions the running CPU has, for the kernels to choose their path (std
//! detects once and caches). `false` off x86-64: the portable paths.

/// AVX-512F: 16 f32 lanes (attention, the exponential).
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX2 with FMA: 8 f32 lanes and 8-bit multiply-adds into 16 bits (the Q8 kernel where VNNI
/// is missing: AMD before Zen 4, Intel client CPUs).
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 VNNI with BW: 8-bit dot products (the Q8 kernel).
pub fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512() && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 BF16: bf16 dot products (the prompt kernel).
pub fn bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512() && is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    false
}
