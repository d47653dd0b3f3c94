//! Accelerator presets for the roofline cost model (vendor datasheet figures, dense, no
//! sparsity).

/// One accelerator.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    pub name: &'static str,
    /// Peak dense bf16/fp16 tensor throughput, FLOP/s.
    pub peak_flops: f64,
    /// HBM bandwidth, bytes/s.
    pub mem_bandwidth: f64,
    /// Device memory as the driver reports it (`nvidia-smi`'s total), bytes: what a serving
    /// engine's memory share (vLLM's `gpu_memory_utilization`) is a share of. The marketing
    /// "80 GB" of an A100 is 81,920 MiB, 7% more than 80·10⁹ bytes.
    pub mem_bytes: f64,
    /// GPU-to-GPU bandwidth per direction (NVLink), bytes/s: used for tensor-parallel all-reduce.
    pub interconnect_bandwidth: f64,
}

/// A100-80GB SXM: 312 TFLOP/s bf16, 2.039 TB/s HBM2e, 81,920 MiB, NVLink 3 at 600 GB/s (300
/// per direction). H100-SXM: 989 TFLOP/s bf16, 3.35 TB/s HBM3, 81,559 MiB, NVLink 4 at
/// 900 GB/s (450 per direction). H200: the H100's compute with 4.8 TB/s HBM3e and 143,771 MiB.
pub const HARDWARE: &[Hardware] = &[
    Hardware {
        name: "a100-80gb",
        peak_flops: 312e12,
        mem_bandwidth: 2.039e12,
        mem_bytes: MIB * 81_920.0,
        interconnect_bandwidth: 300e9,
    },
    Hardware {
        name: "h100-sxm",
        peak_flops: 989e12,
        mem_bandwidth: 3.35e12,
        mem_bytes: MIB * 81_559.0,
        interconnect_bandwidth: 450e9,
    },
    Hardware {
        name: "h200",
        peak_flops: 989e12,
        mem_bandwidth: 4.8e12,
        mem_bytes: MIB * 143_771.0,
        interconnect_bandwidth: 450e9,
    },
];

const MIB: f64 = 1024.0 * 1024.0;

impl Hardware {
    pub fn by_name(name: &str) -> Option<&'static Hardware> {
        HARDWARE.iter().find(|h| h.name == name)
    }

    pub fn names() -> Vec<&'static str> {
        HARDWARE.iter().map(|h| h.name).collect()
    }
}
