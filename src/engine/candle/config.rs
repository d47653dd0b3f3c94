//! Llama hyper-parameters, read from a GGUF file's metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::LoadError;

/// The architecture numbers a llama forward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context: usize,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

impl LlamaConfig {
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<LlamaConfig, LoadError> {
        let arch =
            md.get("general.architecture").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("llama");
        if arch != "llama" {
            return Err(LoadError::Unsupported(format!(
                "architecture `{arch}` (only llama-family models are supported)"
            )));
        }
        let get = |key: &str| -> Result<&Value, LoadError> {
            md.get(&format!("llama.{key}")).ok_or_else(|| LoadError::Metadata(format!("missing `llama.{key}`")))
        };
        let uint = |key: &str| -> Result<usize, LoadError> {
            get(key)?.to_u32().map(|v| v as usize).map_err(|e| LoadError::Metadata(format!("`llama.{key}`: {e}")))
        };
        let float = |key: &str| -> Result<f32, LoadError> {
            get(key)?.to_f32().map_err(|e| LoadError::Metadata(format!("`llama.{key}`: {e}")))
        };
        let hidden = uint("embedding_length")?;
        let heads = uint("attention.head_count")?;
        let vocab = match md.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()) {
            Some(t) => t.len(),
            None => uint("vocab_size")?,
        };
        let token = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        Ok(LlamaConfig {
            layers: uint("block_count")?,
            hidden,
            heads,
            kv_heads: uint("attention.head_count_kv").unwrap_or(heads),
            head_dim: hidden / heads,
            ffn: uint("feed_forward_length")?,
            vocab,
            rope_base: float("rope.freq_base").unwrap_or(10_000.0),
            rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
            context: uint("context_length").unwrap_or(4096),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
        })
    }

    /// KV bytes per token at `bytes_per_element`: 2 × layers × kv_heads × head_dim × bytes.
    pub fn kv_bytes_per_token(&self, bytes_per_element: usize) -> u64 {
        (2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element) as u64
    }
}
