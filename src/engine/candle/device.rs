//! Where a worker computes: the CPU, or a CUDA GPU (with the `cuda` cargo feature).
//!
//! Every worker on a GPU gets its own CUDA stream, so a prefill worker and a decode worker on
//! the same GPU overlap as two processes sharing a GPU would. Tensors made on one stream are
//! usable on another stream of the same GPU (candle checks the GPU, not the stream; cudarc
//! orders the streams with events), which is what lets a KV cache change hands without a copy.

use std::fmt;

use candle_core::DeviceLocation;

/// A device as a scenario names it: `cpu`, `cuda` (GPU 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(s: &str) -> Result<DeviceSpec, String> {
        let s = s.trim();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "cuda" {
            return Ok(DeviceSpec::Cuda(0));
        }
        match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) if n < 1024 => Ok(DeviceSpec::Cuda(n)),
            _ => Err(format!("unknown device `{s}`; expected \"cpu\", \"cuda\" or \"cuda:N\"")),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// A device handle with a stream of its own (on the CPU, the CPU).
    pub fn open(self) -> candle_core::Result<candle_core::Device> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => open_cuda(n),
        }
    }

    /// The spec of a device handle (whatever its stream).
    pub fn of(device: &candle_core::Device) -> DeviceSpec {
        match device.location() {
            DeviceLocation::Cuda { gpu_id } => DeviceSpec::Cuda(gpu_id),
            _ => DeviceSpec::Cpu,
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Memory the system can still give this process (`MemAvailable`), when it says.
pub fn available_host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Whether this binary was built with CUDA support.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// What a user without a CUDA build is told.
pub const NO_CUDA: &str = "this pdsim was built without CUDA support; build it with `scripts/cuda-build.sh` \
     (which installs the CUDA compiler from PyPI and runs `cargo build --release --features cuda`)";

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> candle_core::Result<candle_core::Device> {
    candle_core::Device::new_cuda_with_stream(n)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_n: usize) -> candle_core::Result<candle_core::Device> {
    candle_core::bail!("{NO_CUDA}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_scenarios_write() {
        assert_eq!(DeviceSpec::parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(DeviceSpec::parse("gpu").unwrap_err().contains("cuda:N"));
        assert!(DeviceSpec::parse("cuda:x").is_err());
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn a_cpu_build_says_how_to_get_cuda() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("cuda-build.sh"), "{e}");
    }
}
