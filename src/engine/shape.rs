//! Model shapes: the architecture numbers that size FLOPs, weight bytes and KV bytes.

/// A decoder-only transformer (llama/OPT family) as far as cost models care.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    pub name: &'static str,
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// Feed-forward inner size.
    pub ffn: u64,
    /// Feed-forward matrices per layer: 3 for gated (SwiGLU, llama), 2 for plain (OPT).
    pub ffn_matrices: u64,
    pub vocab: u64,
    /// Bytes per weight and per KV element (2 for fp16/bf16).
    pub dtype_bytes: u64,
    /// Rotary embedding base (θ) and trained context: what a synthetic model of this shape
    /// ([`crate::engine::candle::synthetic`]) needs besides the sizes.
    pub rope_base: f64,
    pub context: u64,
}

/// Shapes pdsim knows by name (from each model's published config.json).
pub const MODELS: &[ModelShape] = &[
    ModelShape {
        name: "llama-2-7b",
        layers: 32,
        hidden: 4096,
        heads: 32,
        kv_heads: 32,
        head_dim: 128,
        ffn: 11008,
        ffn_matrices: 3,
        vocab: 32000,
        dtype_bytes: 2,
        rope_base: 10000.0,
        context: 4096,
    },
    ModelShape {
        name: "llama-2-13b",
        layers: 40,
        hidden: 5120,
        heads: 40,
        kv_heads: 40,
        head_dim: 128,
        ffn: 13824,
        ffn_matrices: 3,
        vocab: 32000,
        dtype_bytes: 2,
        rope_base: 10000.0,
        context: 4096,
    },
    ModelShape {
        name: "llama-3.2-1b",
        layers: 16,
        hidden: 2048,
        heads: 32,
        kv_heads: 8,
        head_dim: 64,
        ffn: 8192,
        ffn_matrices: 3,
        vocab: 128256,
        dtype_bytes: 2,
        rope_base: 500000.0,
        context: 8192,
    },
    ModelShape {
        name: "llama-3-8b",
        layers: 32,
        hidden: 4096,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        ffn: 14336,
        ffn_matrices: 3,
        vocab: 128256,
        dtype_bytes: 2,
        rope_base: 500000.0,
        context: 8192,
    },
    ModelShape {
        name: "llama-3-70b",
        layers: 80,
        hidden: 8192,
        heads: 64,
        kv_heads: 8,
        head_dim: 128,
        ffn: 28672,
        ffn_matrices: 3,
        vocab: 128256,
        dtype_bytes: 2,
        rope_base: 500000.0,
        context: 8192,
    },
    ModelShape {
        name: "opt-13b",
        layers: 40,
        hidden: 5120,
        heads: 40,
        kv_heads: 40,
        head_dim: 128,
        ffn: 20480,
        ffn_matrices: 2,
        vocab: 50272,
        dtype_bytes: 2,
        rope_base: 10000.0,
        context: 2048,
    },
    ModelShape {
        name: "opt-66b",
        layers: 64,
        hidden: 9216,
        heads: 72,
        kv_heads: 72,
        head_dim: 128,
        ffn: 36864,
        ffn_matrices: 2,
        vocab: 50272,
        dtype_bytes: 2,
        rope_base: 10000.0,
        context: 2048,
    },
    ModelShape {
        name: "smollm2-135m",
        layers: 30,
        hidden: 576,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        ffn: 1536,
        ffn_matrices: 3,
        vocab: 49152,
        dtype_bytes: 2,
        rope_base: 100000.0,
        context: 8192,
    },
];

impl ModelShape {
    pub fn by_name(name: &str) -> Option<&'static ModelShape> {
        MODELS.iter().find(|m| m.name == name)
    }

    pub fn names() -> Vec<&'static str> {
        MODELS.iter().map(|m| m.name).collect()
    }

    /// Parameters in the matrices each token passes through: attention, feed-forward and the
    /// output projection (the input embedding is a lookup, no FLOPs).
    pub fn matmul_params(&self) -> u64 {
        let attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2;
        let ffn = self.hidden * self.ffn * self.ffn_matrices;
        self.layers * (attn + ffn) + self.vocab * self.hidden
    }

    /// Parameters of the output projection (hidden → vocabulary), which only the rows that
    /// make logits pass through: each sequence's last token in a step.
    pub fn output_params(&self) -> u64 {
        self.vocab * self.hidden
    }

    /// Bytes of weights read per forward pass (input embedding excluded: only a few rows are read).
    pub fn weight_bytes(&self) -> u64 {
        self.matmul_params() * self.dtype_bytes
    }

    /// KV bytes per token: 2 (K and V) × layers × kv_heads × head_dim × bytes per element.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_published_sizes() {
        let within = |name: &str, billions: f64| {
            let m = ModelShape::by_name(name).unwrap();
            // matmul_params counts the output head but not the input embedding.
            let total = (m.matmul_params() + m.vocab * m.hidden) as f64 / 1e9;
            assert!((total - billions).abs() / billions < 0.02, "{name}: {total} B params");
        };
        within("llama-2-7b", 6.74);
        within("llama-2-13b", 13.0);
        within("llama-3-70b", 70.6);
        within("llama-3-8b", 8.03);
        // Llama-3.2-1B ties its output head to the embedding: 1.24 B parameters, one vocab × hidden.
        let m = ModelShape::by_name("llama-3.2-1b").unwrap();
        assert!(((m.matmul_params() as f64 / 1e9) - 1.24).abs() < 0.03);
    }

    #[test]
    fn kv_bytes_per_token_follow_the_formula() {
        // Llama-2-7B fp16: 2 × 32 × 32 × 128 × 2 = 512 KiB per token.
        assert_eq!(ModelShape::by_name("llama-2-7b").unwrap().kv_bytes_per_token(), 524_288);
        // Llama-3-70B uses grouped-query attention (8 KV heads): 320 KiB per token.
        assert_eq!(ModelShape::by_name("llama-3-70b").unwrap().kv_bytes_per_token(), 327_680);
    }
}
