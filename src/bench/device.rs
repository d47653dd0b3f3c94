//! `pdsim bench-device`: the tensor model's speed on a device (a GPU, or the CPU for a dry
//! run), against the device's rooflines: prefill FLOP/s against peak tensor throughput, decode
//! against the time it takes to stream the weights (and KV) once from memory.
//!
//! Every timed call ends by copying the logits to the host, so a step's time includes all of
//! its device work (nothing is left queued on the stream).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::Rate;
use crate::engine::candle::device::DeviceSpec;
use crate::engine::candle::forward::{dtype_name, DeviceNet, Forward, WorkerNet};
use crate::engine::sim::hardware::Hardware;

/// Prompt lengths of the prefill measurement.
pub const PROMPTS: [usize; 2] = [512, 2048];
/// Decode batch sizes, each sequence at this context.
pub const BATCHES: [usize; 3] = [1, 8, 32];
pub const DECODE_CONTEXT: usize = 512;
const DECODE_STEPS: usize = 32;

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub model: String,
    pub dtype: String,
    pub device: String,
    /// The hardware whose datasheet figures the rooflines use.
    pub hardware: String,
    pub weight_bytes: u64,
    pub reps: usize,
    pub prefill: Vec<PrefillPoint>,
    pub decode: Vec<DecodePoint>,
}

#[derive(Debug, Serialize)]
pub struct PrefillPoint {
    pub prompt_tokens: usize,
    pub rate: Rate,
    /// Matrix FLOPs (projections, and causal attention) per second at the median.
    pub tflops: f64,
    pub pct_of_peak: f64,
}

#[derive(Debug, Serialize)]
pub struct DecodePoint {
    pub batch: usize,
    pub context: usize,
    /// Aggregate tokens/s over the batch.
    pub rate: Rate,
    pub step_ms: f64,
    /// The step's floor: weights plus the batch's KV read once at full memory bandwidth.
    pub roofline_step_ms: f64,
    pub pct_of_roofline: f64,
}

/// Runs the measurements on `device` with `net` (whose weights live there).
pub fn run(
    net: Arc<DeviceNet>,
    device: DeviceSpec,
    hw: &Hardware,
    reps: usize,
    mut progress: impl FnMut(&str),
) -> candle_core::Result<DeviceReport> {
    let w = WorkerNet::open(net.clone(), device)?;
    let c = net.llama.config.clone();
    let timed = |f: &mut dyn FnMut() -> candle_core::Result<f64>| -> candle_core::Result<Vec<f64>> {
        f()?; // warm-up
        (0..reps).map(|_| f()).collect()
    };
    let mut prefill = Vec::new();
    for &n in PROMPTS.iter().filter(|&&n| n < c.context) {
        let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 7919 + 13) % c.vocab as u32).collect();
        let secs = timed(&mut || {
            let mut kv = w.new_kv(n)?;
            let t = Instant::now();
            w.forward(&mut [(&prompt, &mut kv)])?;
            Ok(t.elapsed().as_secs_f64())
        })?;
        let rate = Rate::of(n, &secs);
        let flops = prefill_flops(&net, n);
        let tflops = flops * rate.median / n as f64 / 1e12;
        let pct_of_peak = 100.0 * tflops * 1e12 / hw.peak_flops;
        progress(&format!(
            "prefill {n:>5} tokens: {:>9.0} tok/s  {tflops:7.1} TFLOP/s  {pct_of_peak:5.1}% of peak",
            rate.median
        ));
        prefill.push(PrefillPoint { prompt_tokens: n, rate, tflops, pct_of_peak });
    }
    let mut decode = Vec::new();
    let ctx = DECODE_CONTEXT.min(c.context - DECODE_STEPS - 2);
    for &b in &BATCHES {
        let prompt: Vec<u32> = (0..ctx as u32).map(|i| (i * 104_729 + 7) % c.vocab as u32).collect();
        let mut caches = Vec::with_capacity(b);
        for _ in 0..b {
            let mut kv = w.new_kv(ctx + (reps + 1) * DECODE_STEPS + 1)?;
            w.forward(&mut [(&prompt, &mut kv)])?;
            caches.push(kv);
        }
        let secs = timed(&mut || {
            let t = Instant::now();
            for s in 0..DECODE_STEPS as u32 {
                let tokens: Vec<[u32; 1]> = (0..b as u32).map(|i| [(s * 31 + i * 17 + 5) % c.vocab as u32]).collect();
                let mut seqs: Vec<(&[u32], _)> =
                    tokens.iter().zip(caches.iter_mut()).map(|(t, kv)| (&t[..], kv)).collect();
                w.forward(&mut seqs)?;
            }
            Ok(t.elapsed().as_secs_f64())
        })?;
        let rate = Rate::of(b * DECODE_STEPS, &secs);
        let step_ms = 1e3 * b as f64 / rate.median;
        let kv_bytes = (b * (ctx + DECODE_STEPS)) as u64 * c.kv_bytes_per_token(net.llama.dtype.size_in_bytes());
        let roofline_step_ms = 1e3 * (net.llama.weight_bytes() + kv_bytes) as f64 / hw.mem_bandwidth;
        let pct_of_roofline = 100.0 * roofline_step_ms / step_ms;
        progress(&format!(
            "decode batch {b:>3} @ {ctx}: {:>9.0} tok/s  step {step_ms:7.3} ms  floor {roofline_step_ms:6.3} ms  {pct_of_roofline:5.1}% of roofline",
            rate.median
        ));
        decode.push(DecodePoint { batch: b, context: ctx, rate, step_ms, roofline_step_ms, pct_of_roofline });
    }
    Ok(DeviceReport {
        model: net.label.clone(),
        dtype: dtype_name(net.llama.dtype).into(),
        device: device.to_string(),
        hardware: hw.name.into(),
        weight_bytes: net.llama.weight_bytes(),
        reps,
        prefill,
        decode,
    })
}

/// Matrix FLOPs of one `n`-token prompt: 2 per weight per token, plus causal attention
/// (QKᵀ and AV over the lower triangle: 2 × 2 × n²/2 × heads × head_dim per layer).
pub fn prefill_flops(net: &DeviceNet, n: usize) -> f64 {
    let c = &net.llama.config;
    let params = net.llama.weight_bytes() as f64 / net.llama.dtype.size_in_bytes() as f64;
    let attention = 2.0 * (n * n) as f64 * (c.heads * c.head_dim * c.layers) as f64;
    2.0 * params * n as f64 + attention
}
