//! The weights of a [`super::DeviceLlama`]: from a GGUF file (dequantized) or synthetic, in one
//! dtype, on one device. Matrices are stored transposed (`[in, out]`, contiguous) so every
//! projection is a plain `x · W` on any backend; Q/K/V are one matrix, and so are gate/up.

use std::path::Path;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Result, Tensor};

use super::super::config::LlamaConfig;
use super::super::synthetic::SyntheticSpec;
use super::super::LoadError;

pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub wqkv: Tensor,
    pub wo: Tensor,
    pub ffn_norm: Tensor,
    pub w_gate_up: Tensor,
    pub w_down: Tensor,
}

pub struct Weights {
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,
    pub lm_head: Tensor,
}

/// Host f32 values (`[rows, cols]` as given) → `dtype` on `device`. Converted on the device, where
/// a GPU does it in parallel.
fn place(values: Vec<f32>, shape: (usize, usize), dtype: DType, device: &Device) -> Result<Tensor> {
    let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
    if device.is_cpu() {
        t.to_dtype(dtype)
    } else {
        t.to_device(device)?.to_dtype(dtype)
    }
}

/// Loads a GGUF file's llama weights.
pub fn from_gguf(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> std::result::Result<(LlamaConfig, Weights, gguf_file::Content), LoadError> {
    let mut file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| LoadError::Gguf(e.to_string()))?;
    let config = LlamaConfig::from_metadata(&content.metadata)?;
    let c = |e: candle_core::Error| LoadError::Gguf(e.to_string());
    let mut tensor = |name: &str| -> std::result::Result<QTensor, LoadError> {
        content.tensor(&mut file, name, &Device::Cpu).map_err(|e| LoadError::Gguf(format!("tensor `{name}`: {e}")))
    };
    // Rows of the stored matrices ([out, in]) stacked, then transposed to [in, out].
    let matrix = |parts: Vec<QTensor>| -> std::result::Result<Tensor, LoadError> {
        let f = parts.iter().map(|q| q.dequantize(&Device::Cpu)).collect::<Result<Vec<_>>>().map_err(c)?;
        let t = Tensor::cat(&f, 0).and_then(|t| t.t()?.contiguous()).map_err(c)?;
        t.to_device(device).and_then(|t| t.to_dtype(dtype)).map_err(c)
    };
    let as_is = |q: QTensor| q.dequantize(&Device::Cpu).and_then(|t| t.to_device(device)?.to_dtype(dtype)).map_err(c);
    let embed_q = tensor("token_embd.weight")?;
    let embed = as_is(embed_q)?;
    let lm_head = match tensor("output.weight") {
        Ok(q) => matrix(vec![q])?,
        // Tied embeddings: the output head is the embedding matrix.
        Err(_) => embed.t().and_then(|t| t.contiguous()).map_err(c)?,
    };
    let mut layers = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let mut t = |n: &str| tensor(&format!("blk.{i}.{n}.weight"));
        layers.push(LayerWeights {
            attn_norm: as_is(t("attn_norm")?)?,
            wqkv: matrix(vec![t("attn_q")?, t("attn_k")?, t("attn_v")?])?,
            wo: matrix(vec![t("attn_output")?])?,
            ffn_norm: as_is(t("ffn_norm")?)?,
            w_gate_up: matrix(vec![t("ffn_gate")?, t("ffn_up")?])?,
            w_down: matrix(vec![t("ffn_down")?])?,
        });
    }
    let norm = as_is(tensor("output_norm.weight")?)?;
    Ok((config, Weights { embed, layers, norm, lm_head }, content))
}

/// Seeded random weights of `spec`'s shape. Matrices are uniform with standard deviation
/// 1/√in (activations keep their scale through each projection); norms are ones.
pub fn synthetic(spec: &SyntheticSpec, dtype: DType, device: &Device) -> Result<(LlamaConfig, Weights)> {
    let c = spec.config();
    let (hd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
    let matrix = |id: u64, inp: usize, out: usize| {
        place(spec.values(id, inp * out, 1.0 / (inp as f32).sqrt()), (inp, out), dtype, device)
    };
    let ones = |n: usize| Tensor::ones(n, dtype, device);
    let embed = place(spec.values(0, c.vocab * c.hidden, 1.0), (c.vocab, c.hidden), dtype, device)?;
    let lm_head = matrix(1, c.hidden, c.vocab)?;
    let mut layers = Vec::with_capacity(c.layers);
    for i in 0..c.layers as u64 {
        let id = 16 + 8 * i;
        layers.push(LayerWeights {
            attn_norm: ones(c.hidden)?,
            wqkv: matrix(id, c.hidden, hd + 2 * kvd)?,
            wo: matrix(id + 1, hd, c.hidden)?,
            ffn_norm: ones(c.hidden)?,
            w_gate_up: matrix(id + 2, c.hidden, 2 * c.ffn)?,
            w_down: matrix(id + 3, c.ffn, c.hidden)?,
        });
    }
    Ok((c.clone(), Weights { embed, layers, norm: ones(c.hidden)?, lm_head }))
}
