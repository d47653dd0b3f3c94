//! The analytic roofline cost model: a step takes as long as the slower of its FLOPs over the
//! device's usable compute and its bytes over the usable memory bandwidth, plus tensor-parallel
//! communication and a fixed per-step overhead.
//!
//! - FLOPs: 2 × the layers' matmul parameters × tokens, 2 × the output projection's × the
//!   sequences in the step (logits for each one's last token only, as vLLM and DistServe compute
//!   them: for every prompt token they would add 7% to a Llama-3-8B prefill, whose vocabulary
//!   is 128k), plus attention: 4 × layers × heads × head_dim per (query, key) pair attended
//!   (QKᵀ and AV, 2 FLOPs per multiply-add each).
//! - Bytes: every weight once per step, plus the KV cache each token reads and writes.
//! - Tensor parallelism over `tp` GPUs divides both; each layer then does two all-reduces of
//!   the step's activations (ring: 2·(tp−1)/tp × bytes over the interconnect, plus a fixed
//!   latency per all-reduce).
//! - Efficiency factors (defaults 0.6 of peak FLOP/s, 0.8 of peak bandwidth) are what
//!   well-tuned serving engines reach on large GEMMs and on decode's weight streaming; set them
//!   in the scenario to match another engine.

use super::hardware::Hardware;
use crate::engine::shape::ModelShape;
use crate::engine::step::StepShape;

pub const DEFAULT_COMPUTE_EFFICIENCY: f64 = 0.6;
pub const DEFAULT_MEMORY_EFFICIENCY: f64 = 0.8;
/// Scheduler, sampling and kernel-launch time per iteration.
pub const DEFAULT_STEP_OVERHEAD_MS: f64 = 1.0;
/// Fixed cost of one NCCL all-reduce of a small message over NVLink.
pub const ALLREDUCE_LATENCY_US: f64 = 10.0;
/// GPUs one NVLink domain joins (an HGX node): the all-reduce's bandwidth holds within it.
pub const NVLINK_GPUS: u32 = 8;
/// Share of device memory a serving engine may use (vLLM's default `gpu_memory_utilization`).
pub const MEMORY_UTILIZATION: f64 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct Roofline {
    pub hardware: &'static Hardware,
    pub model: &'static ModelShape,
    pub tp: u32,
    pub compute_efficiency: f64,
    pub memory_efficiency: f64,
    pub step_overhead_ms: f64,
}

impl Roofline {
    pub fn step_ms(&self, s: &StepShape) -> f64 {
        if s.tokens() == 0 {
            return 0.0;
        }
        let m = self.model;
        let tp = self.tp as f64;
        let attn_per_pair = 4.0 * (m.layers * m.heads * m.head_dim) as f64;
        let layers = m.matmul_params() - m.output_params();
        let flops = 2.0 * layers as f64 * s.tokens() as f64
            + 2.0 * m.output_params() as f64 * (s.prefill_seqs + s.decode_seqs) as f64
            + attn_per_pair * (s.prefill_attended + s.decode_context) as f64;
        let bytes = m.weight_bytes() as f64 + (m.kv_bytes_per_token() * (s.prefill_context + s.decode_context)) as f64;
        let compute_s = flops / (tp * self.hardware.peak_flops * self.compute_efficiency);
        let memory_s = bytes / (tp * self.hardware.mem_bandwidth * self.memory_efficiency);
        let comm_s = if self.tp > 1 {
            let message = (s.tokens() * m.hidden * m.dtype_bytes) as f64;
            let one =
                2.0 * (tp - 1.0) / tp * message / self.hardware.interconnect_bandwidth + ALLREDUCE_LATENCY_US * 1e-6;
            2.0 * m.layers as f64 * one
        } else {
            0.0
        };
        (compute_s.max(memory_s) + comm_s) * 1e3 + self.step_overhead_ms
    }

    /// Whether `tp` devices can split the model's attention: each takes whole query heads, and
    /// whole KV heads or copies of one (as vLLM does when tp exceeds the KV heads).
    pub fn check_split(&self) -> Result<(), String> {
        let (m, tp) = (self.model, u64::from(self.tp));
        if self.tp > NVLINK_GPUS {
            return Err(format!(
                "a tensor-parallel degree of {tp} spans more than one {NVLINK_GPUS}-GPU NVLink node, and the roofline \
                 charges every all-reduce at NVLink speed; use at most {NVLINK_GPUS} (more workers scale further)"
            ));
        }
        if m.heads % tp == 0 && (m.kv_heads % tp == 0 || tp % m.kv_heads == 0) {
            return Ok(());
        }
        let even: Vec<String> = (1..=m.heads.min(u64::from(NVLINK_GPUS)))
            .filter(|&t| m.heads % t == 0 && (m.kv_heads % t == 0 || t % m.kv_heads == 0))
            .map(|t| t.to_string())
            .collect();
        Err(format!(
            "{} has {} attention heads ({} KV heads), which {tp} devices cannot split evenly; use a \
             tensor-parallel degree of {}",
            m.name,
            m.heads,
            m.kv_heads,
            even.join(", ")
        ))
    }

    /// KV tokens that fit beside the weights on `tp` devices, or `None` when the weights alone
    /// do not fit.
    pub fn kv_capacity_tokens(&self) -> Option<u64> {
        let m = self.model;
        let weights = ((m.matmul_params() + m.vocab * m.hidden) * m.dtype_bytes) as f64;
        let free = self.tp as f64 * self.hardware.mem_bytes * MEMORY_UTILIZATION - weights;
        (free > 0.0).then(|| (free / m.kv_bytes_per_token() as f64) as u64).filter(|&t| t > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roofline(hw: &str, model: &str, tp: u32) -> Roofline {
        Roofline {
            hardware: Hardware::by_name(hw).unwrap(),
            model: ModelShape::by_name(model).unwrap(),
            tp,
            compute_efficiency: 1.0,
            memory_efficiency: 1.0,
            step_overhead_ms: 0.0,
        }
    }

    #[test]
    fn batch_one_decode_is_weight_streaming() {
        // 7B fp16 on an A100: ~13.2 GB of weights over 2.039 TB/s ≈ 6.5 ms per token.
        let r = roofline("a100-80gb", "llama-2-7b", 1);
        let ms = r.step_ms(&StepShape { decode_seqs: 1, decode_context: 1, ..Default::default() });
        let expect = r.model.weight_bytes() as f64 / 2.039e12 * 1e3;
        assert!((ms - expect).abs() / expect < 0.01, "{ms} vs {expect}");
    }

    #[test]
    fn long_prefill_is_compute_bound_and_tp_speeds_it_up() {
        let one = roofline("h100-sxm", "llama-2-13b", 1);
        let s = StepShape {
            prefill_seqs: 1,
            prefill_tokens: 4096,
            prefill_tokens_sq: 4096 * 4096,
            prefill_attended: 4096 * 4097 / 2,
            prefill_context: 4096,
            ..Default::default()
        };
        let m = one.model;
        let flops = 2.0 * (m.matmul_params() - m.output_params()) as f64 * 4096.0;
        assert!(one.step_ms(&s) > flops / 989e12 * 1e3);
        // Logits for the last token only: the output projection adds one row's FLOPs.
        let all_rows = flops + 2.0 * m.output_params() as f64 * 4096.0;
        let attn = 4.0 * (m.layers * m.heads * m.head_dim) as f64 * (4096.0 * 4097.0 / 2.0);
        let expect = (flops + 2.0 * m.output_params() as f64 + attn) / 989e12 * 1e3;
        assert!((one.step_ms(&s) - expect).abs() < 1e-9, "{} vs {expect}", one.step_ms(&s));
        assert!(one.step_ms(&s) < (all_rows + attn) / 989e12 * 1e3);
        let two = roofline("h100-sxm", "llama-2-13b", 2);
        let ratio = one.step_ms(&s) / two.step_ms(&s);
        assert!(ratio > 1.7 && ratio < 2.0, "tp2 speedup {ratio}");
    }

    #[test]
    fn memory_fit() {
        assert!(roofline("h100-sxm", "llama-3-70b", 1).kv_capacity_tokens().is_none());
        let tp4 = roofline("h100-sxm", "llama-3-70b", 4).kv_capacity_tokens().unwrap();
        // (4 × 81,559 MiB × 0.9 − 141 GB) / 320 KiB per token ≈ 509k tokens.
        assert!((500_000..520_000).contains(&tp4), "{tp4}");
        assert!(
            roofline("h200", "llama-2-7b", 1).kv_capacity_tokens().unwrap()
                > roofline("h100-sxm", "llama-2-7b", 1).kv_capacity_tokens().unwrap()
        );
    }
}
