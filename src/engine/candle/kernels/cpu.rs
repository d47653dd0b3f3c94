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

/// The f32 vector widths the kernels have paths for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lanes {
    /// AVX-512F: 16 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2,
    /// The portable loops.
    Scalar,
}

impl Lanes {
    /// The widths this CPU has, widest first, ending with [`Lanes::Scalar`]: a kernel takes the
    /// first that fits its shape, and its tests try each.
    pub fn available() -> impl Iterator<Item = Lanes> {
        [(Lanes::Avx512, avx512()), (Lanes::Avx2, avx2()), (Lanes::Scalar, true)]
            .into_iter()
            .filter(|w| w.1)
            .map(|w| w.0)
    }

    /// The widest this CPU has.
    pub fn widest() -> Lanes {
        Lanes::available().next().unwrap_or(Lanes::Scalar)
    }
}
