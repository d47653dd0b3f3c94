//! `pdsim bench-device`: the tensor model's throughput on a GPU (or the CPU) against the
//! device's rooflines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::engine::candle::device::{DeviceSpec, CUDA_BUILT};
use crate::engine::candle::device_model::parse_dtype;
use crate::engine::candle::forward::{dtype_name, DeviceNet};
use crate::engine::candle::resolve_model;
use crate::engine::candle::synthetic::{shape_names, SyntheticSpec};
use crate::engine::sim::hardware::Hardware;

#[derive(clap::Args)]
pub struct BenchDeviceArgs {
    /// `cuda:N` (default `cuda:0` in a CUDA build) or `cpu`.
    #[arg(long)]
    device: Option<String>,
    /// A synthetic model of this shape (default llama-2-7b)...
    #[arg(long, conflicts_with = "model")]
    synthetic: Option<String>,
    /// ...or a GGUF file (dequantized to --dtype).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Synthetic models: keep only this many layers.
    #[arg(long)]
    layers: Option<usize>,
    /// `bf16` (default on a GPU), `f16` or `f32` (default on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Whose datasheet peak FLOP/s and memory bandwidth the rooflines use.
    #[arg(long, default_value = "h200")]
    hardware: String,
    /// Timed repeats per measurement (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seed of synthetic weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchDeviceArgs) -> ExitCode {
    match bench(args) {
        Ok(code) => code,
        Err(e) => super::bad_input(e),
    }
}

fn bench(args: BenchDeviceArgs) -> Result<ExitCode, String> {
    let default_device = if CUDA_BUILT { "cuda:0" } else { "cpu" };
    let device =
        DeviceSpec::parse(args.device.as_deref().unwrap_or(default_device)).map_err(|e| format!("--device: {e}"))?;
    let hw = Hardware::by_name(&args.hardware)
        .ok_or_else(|| format!("--hardware {}: expected one of {}", args.hardware, Hardware::names().join(", ")))?;
    let dtype = match args.dtype.as_deref() {
        Some(d) => parse_dtype(d).ok_or_else(|| format!("--dtype {d}: expected bf16, f16 or f32"))?,
        None if device.is_cuda() => candle_core::DType::BF16,
        None => candle_core::DType::F32,
    };
    if dtype == candle_core::DType::BF16 && !device.is_cuda() {
        return Err("--dtype bf16 needs a GPU (candle has no bf16 matrix multiply on the CPU)".into());
    }
    let net = match &args.model {
        Some(path) => {
            let path = resolve_model(Some(path)).map_err(|e| e.to_string())?;
            DeviceNet::from_file(&path, dtype, device).map_err(|e| e.to_string())
        }
        None => {
            let name = args.synthetic.as_deref().unwrap_or("llama-2-7b");
            let spec = SyntheticSpec::new(name, None, args.seed)
                .ok_or_else(|| format!("--synthetic {name}: expected one of {}", shape_names().join(", ")))?;
            let spec = spec.with_layers(args.layers).map_err(|e| format!("--layers: {e}"))?;
            eprintln!("pdsim bench-device: building {} ({}) on {device}", spec.describe(), dtype_name(dtype));
            DeviceNet::synthetic(&spec, dtype, device).map_err(|e| e.to_string())
        }
    };
    let net = match net {
        Ok(n) => Arc::new(n),
        Err(e) => return Ok(failed(format!("cannot build the model: {e}"))),
    };
    eprintln!(
        "pdsim bench-device: {}; rooflines of {}; median of {} after a warm-up",
        net.describe(),
        hw.name,
        args.reps
    );
    let report = match crate::bench::device::run(net, device, hw, args.reps.max(1), |l| eprintln!("  {l}")) {
        Ok(r) => r,
        Err(e) => return Ok(failed(format!("benchmark failed: {e}"))),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

/// A failure of the run itself (not of the arguments).
fn failed(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
