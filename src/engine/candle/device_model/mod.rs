//! The llama forward pass in candle tensor operations, for any device: CUDA (where it runs on
//! cuBLAS and candle's kernels), or the CPU for synthetic models and cross-checks. (On the CPU
//! with a GGUF file, [`super::model::Llama`] with pdsim's own kernels is the fast path.)
//!
//! The weights live on one device and are shared by every worker there; each worker passes its
//! own device handle (its own CUDA stream) for activations and KV caches, so workers on one GPU
//! overlap. Like the CPU model, one call runs any mix of prompts and decode tokens: every
//! projection runs once over all the step's tokens, attention per sequence over its own cache.

pub mod kv;
pub mod weights;

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

use super::config::LlamaConfig;
use super::device::DeviceSpec;
use super::synthetic::SyntheticSpec;
use super::LoadError;
use kv::DeviceKv;
use weights::Weights;

/// Queries per block of causal prompt attention: block [a, b) attends to keys up to start + b
/// only, which skips most of the masked triangle and bounds the score matrix's size.
const PROMPT_BLOCK: usize = 512;

/// A llama model as candle tensors on one device.
pub struct DeviceLlama {
    pub config: LlamaConfig,
    pub dtype: DType,
    pub home: DeviceSpec,
    w: Weights,
    /// cos and sin of position × frequency, `[context, head_dim/2]`, in `dtype`.
    cos: Tensor,
    sin: Tensor,
}

/// One sequence's part of a forward call: `tokens` go at the end of its `kv` cache.
pub struct DeviceSeq<'a> {
    pub tokens: &'a [u32],
    pub kv: &'a mut DeviceKv,
}

/// `f32`, `bf16` or `f16`.
pub fn parse_dtype(s: &str) -> Option<DType> {
    match s {
        "f32" => Some(DType::F32),
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        _ => None,
    }
}

impl DeviceLlama {
    pub fn from_gguf(
        path: &Path,
        dtype: DType,
        home: DeviceSpec,
    ) -> std::result::Result<(DeviceLlama, candle_core::quantized::gguf_file::Content), LoadError> {
        let device = home.open().map_err(|e| LoadError::Unsupported(e.to_string()))?;
        let (config, w, content) = weights::from_gguf(path, dtype, &device)?;
        let m = DeviceLlama::assemble(config, dtype, home, w, &device).map_err(|e| LoadError::Gguf(e.to_string()))?;
        Ok((m, content))
    }

    pub fn synthetic(spec: &SyntheticSpec, dtype: DType, home: DeviceSpec) -> Result<DeviceLlama> {
        if home == DeviceSpec::Cpu {
            check_host_memory(spec, dtype)?;
        }
        let device = home.open()?;
        let (config, w) = weights::synthetic(spec, dtype, &device)?;
        DeviceLlama::assemble(config, dtype, home, w, &device)
    }

    fn assemble(config: LlamaConfig, dtype: DType, home: DeviceSpec, mut w: Weights, device: &Device) -> Result<Self> {
        // Attention scores are q·k/√d: scaling the query weights once saves an operation per
        // sequence per layer at every step.
        let hd = config.heads * config.head_dim;
        let scale = 1.0 / (config.head_dim as f64).sqrt();
        for l in &mut w.layers {
            let rest = l.wqkv.dim(1)? - hd;
            l.wqkv = Tensor::cat(&[(l.wqkv.narrow(1, 0, hd)? * scale)?, l.wqkv.narrow(1, hd, rest)?], 1)?;
        }
        let half = config.head_dim / 2;
        let inv: Vec<f32> =
            (0..half).map(|i| 1.0 / config.rope_base.powf(2.0 * i as f32 / config.head_dim as f32)).collect();
        let angles: Vec<f32> = (0..config.context).flat_map(|t| inv.iter().map(move |f| t as f32 * f)).collect();
        let table = |f: fn(f32) -> f32| -> Result<Tensor> {
            let v: Vec<f32> = angles.iter().map(|&a| f(a)).collect();
            Tensor::from_vec(v, (config.context, half), &Device::Cpu)?.to_device(device)?.to_dtype(dtype)
        };
        let (cos, sin) = (table(f32::cos)?, table(f32::sin)?);
        Ok(DeviceLlama { config, dtype, home, w, cos, sin })
    }

    /// Bytes of the weights every token's forward pass reads (the input embedding excluded).
    pub fn weight_bytes(&self) -> u64 {
        let n = |t: &Tensor| t.elem_count() as u64;
        let per_layer: u64 = self.w.layers.iter().map(|l| n(&l.wqkv) + n(&l.wo) + n(&l.w_gate_up) + n(&l.w_down)).sum();
        (per_layer + n(&self.w.lm_head)) * self.dtype.size_in_bytes() as u64
    }

    /// A cache for one request of up to `capacity` tokens, on `device` (the worker's).
    pub fn new_kv(&self, capacity: usize, device: &Device) -> Result<DeviceKv> {
        DeviceKv::new(&self.config, capacity, self.dtype, device)
    }

    /// Runs the sequences' new tokens through the model on `device`, appending to their caches;
    /// returns the logits after each sequence's last token (`[sequences, vocab]`, f32, on the
    /// CPU).
    pub fn forward(&self, device: &Device, seqs: &mut [DeviceSeq<'_>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(seqs.len());
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                candle_core::bail!("a sequence with no tokens");
            }
            let start = s.kv.len();
            if start + s.tokens.len() > c.context {
                candle_core::bail!("{} tokens exceed the model's context of {}", start + s.tokens.len(), c.context);
            }
            spans.push((ids.len(), s.tokens.len(), start));
            ids.extend_from_slice(s.tokens);
            positions.extend((start..start + s.tokens.len()).map(|p| p as u32));
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, device)?;
        let positions = Tensor::from_vec(positions, total, device)?;
        let half = c.head_dim / 2;
        let gather = |t: &Tensor| t.index_select(&positions, 0)?.reshape((total, 1, half));
        let (cos, sin) = (gather(&self.cos)?, gather(&self.sin)?);
        let mut x = self.w.embed.index_select(&ids, 0)?;
        let eps = c.rms_eps as f32;
        let (hd, kvd, d) = (c.heads * c.head_dim, c.kv_heads * c.head_dim, c.head_dim);
        for (li, layer) in self.w.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let qkv = h.matmul(&layer.wqkv)?;
            // Each token as its own rope batch ([tokens, heads, 1, d], its own cos/sin row), so
            // decode tokens need no transposes; rotated in interleaved pairs, as GGUF llama
            // weights expect. (The queries' 1/√d is folded into their weights.)
            let rotated = |from: usize, n: usize| -> Result<Tensor> {
                let x = qkv.narrow(1, from, n * d)?.contiguous()?.reshape((total, n, 1, d))?;
                candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?.reshape((total, n, d))
            };
            let q = rotated(0, c.heads)?;
            let k = rotated(hd, c.kv_heads)?;
            let v = qkv.narrow(1, hd + kvd, kvd)?.reshape((total, c.kv_heads, d))?;
            let mut outs = Vec::with_capacity(seqs.len());
            for (s, &(offset, n, start)) in seqs.iter_mut().zip(&spans) {
                // [heads, n, d] views; copies only where n > 1 (a size-1 dim has no stride).
                let per_head = |t: &Tensor| t.narrow(0, offset, n)?.transpose(0, 1)?.contiguous();
                s.kv.write(li, &per_head(&k)?, &per_head(&v)?)?;
                let q = per_head(&q)?;
                for a in (0..n).step_by(PROMPT_BLOCK) {
                    let b = (a + PROMPT_BLOCK).min(n);
                    let (keys, values) = s.kv.layer(li, start + b)?;
                    outs.push(self.attend(&q.narrow(1, a, b - a)?, &keys, &values, start + a)?);
                }
            }
            let attn = Tensor::cat(&outs, 0)?;
            x = (x + attn.matmul(&layer.wo)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate_up = h.matmul(&layer.w_gate_up)?;
            let act = (candle_nn::ops::silu(&gate_up.narrow(1, 0, c.ffn)?)? * gate_up.narrow(1, c.ffn, c.ffn)?)?;
            x = (x + act.matmul(&layer.w_down)?)?;
        }
        for (s, &(_, n, _)) in seqs.iter_mut().zip(&spans) {
            s.kv.advance(n);
        }
        let last: Vec<u32> = spans.iter().map(|&(offset, n, _)| (offset + n - 1) as u32).collect();
        let last = Tensor::from_vec(last, spans.len(), device)?;
        let x = candle_nn::ops::rms_norm(&x.index_select(&last, 0)?, &self.w.norm, eps)?;
        let logits = x.matmul(&self.w.lm_head)?.to_dtype(DType::F32)?;
        logits.to_device(&Device::Cpu)?.to_vec2::<f32>()
    }

    /// Causal attention of `q` (`[heads, n, d]`, positions `start..start+n`, already scaled by
    /// 1/√d) over `keys` and `values` (`[kv_heads, len, d]`); returns `[n, heads·d]`. Softmax
    /// accumulates in f32.
    fn attend(&self, q: &Tensor, keys: &Tensor, values: &Tensor, start: usize) -> Result<Tensor> {
        let c = &self.config;
        let n = q.dim(1)?;
        let len = keys.dim(1)?;
        let group = c.heads / c.kv_heads;
        // Query heads h·group..(h+1)·group share KV head h: stack them as one matrix.
        let q = q.contiguous()?.reshape((c.kv_heads, group * n, c.head_dim))?;
        let mut att = q.matmul(&keys.t()?)?;
        // candle's CUDA softmax accumulates in f32 whatever the type; its CPU one in the type.
        if !att.device().is_cuda() {
            att = att.to_dtype(DType::F32)?;
        }
        if n > 1 {
            let mask: Vec<f32> = (0..n)
                .flat_map(|i| (0..len).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (n, len), q.device())?.to_dtype(att.dtype())?;
            att = att.reshape((c.kv_heads, group, n, len))?.broadcast_add(&mask)?.reshape((
                c.kv_heads,
                group * n,
                len,
            ))?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?.to_dtype(self.dtype)?;
        let out = att.matmul(values)?; // [kv_heads, group·n, d]
        out.reshape((c.heads, n, c.head_dim))?.transpose(0, 1)?.reshape((n, c.heads * c.head_dim))
    }
}

/// A synthetic model on the CPU must fit in memory (with the f32 copy of its largest tensor
/// while it is made): a clear error instead of the kernel killing the process.
fn check_host_memory(spec: &SyntheticSpec, dtype: DType) -> Result<()> {
    let Some(available) = super::device::available_host_memory() else { return Ok(()) };
    let c = spec.config();
    let largest = (c.vocab * c.hidden).max(c.hidden * 2 * c.ffn) as u64 * 4;
    let need = spec.weight_bytes(dtype.size_in_bytes()) + largest;
    if need <= available {
        return Ok(());
    }
    let fits = spec.layers_fitting(available.saturating_sub(largest), dtype.size_in_bytes());
    let gb = |b: u64| b as f64 / 1e9;
    let hint = if fits > 0 {
        format!("keep at most {fits} layers (`layers` in a scenario's [model], `--layers` on the command line), ")
    } else {
        String::new()
    };
    candle_core::bail!(
        "{} needs {:.1} GB of memory on the CPU and {:.1} GB are available: {hint}use a smaller shape, or a GPU",
        spec.describe(),
        gb(need),
        gb(available)
    )
}
