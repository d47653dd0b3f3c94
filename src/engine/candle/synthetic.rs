//! Synthetic models: seeded random weights in the shapes of a real architecture
//! (`model = { synthetic = "llama-2-7b", dtype = "bf16" }`), so timing studies run on real
//! shapes where no weights can be downloaded. Their tokens mean nothing: runs on them report
//! timings only and produce no text.
//!
//! The weights are a pure function of (seed, tensor, element): the same on every device, thread
//! count and run, so a CPU and a GPU build of the same synthetic model can be compared.

use rayon::prelude::*;

use super::config::LlamaConfig;
use crate::engine::shape::ModelShape;

/// A synthetic model: which shape, optionally fewer layers, and the seed of its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub shape: &'static ModelShape,
    /// Keep only this many layers (every layer has the real sizes): for quick checks.
    pub layers: Option<usize>,
    pub seed: u64,
}

/// Shapes a synthetic model can take: the llama-family ones (gated feed-forward).
pub fn shape_names() -> Vec<&'static str> {
    crate::engine::shape::MODELS.iter().filter(|m| is_llama(m)).map(|m| m.name).collect()
}

fn is_llama(m: &ModelShape) -> bool {
    m.ffn_matrices == 3
}

impl SyntheticSpec {
    /// `None` when `name` is not a llama-family shape pdsim knows.
    pub fn new(name: &str, layers: Option<usize>, seed: u64) -> Option<SyntheticSpec> {
        let shape = ModelShape::by_name(name).filter(|m| is_llama(m))?;
        Some(SyntheticSpec { shape, layers, seed })
    }

    /// The same model keeping `layers` of its layers (`None`: all); the error says the range.
    pub fn with_layers(self, layers: Option<usize>) -> Result<SyntheticSpec, String> {
        let full = self.shape.layers as usize;
        match layers {
            Some(n) if n == 0 || n > full => Err(format!("must be in 1..={full} for {}, got {n}", self.shape.name)),
            _ => Ok(SyntheticSpec { layers, ..self }),
        }
    }

    pub fn config(&self) -> LlamaConfig {
        let m = self.shape;
        LlamaConfig {
            layers: self.layers.unwrap_or(m.layers as usize),
            hidden: m.hidden as usize,
            heads: m.heads as usize,
            kv_heads: m.kv_heads as usize,
            head_dim: m.head_dim as usize,
            ffn: m.ffn as usize,
            vocab: m.vocab as usize,
            rope_base: m.rope_base as f32,
            rms_eps: 1e-5,
            context: m.context as usize,
            bos: None,
            // No end-of-sequence token: a synthetic model generates exactly the requested lengths.
            eos: None,
        }
    }

    /// e.g. `synthetic llama-2-7b` or `synthetic llama-2-7b (2 of 32 layers)`.
    pub fn describe(&self) -> String {
        match self.layers {
            Some(n) if n != self.shape.layers as usize => {
                format!("synthetic {} ({n} of {} layers)", self.shape.name, self.shape.layers)
            }
            _ => format!("synthetic {}", self.shape.name),
        }
    }

    /// Bytes of all its weights at `dtype_bytes` per value (embedding and output head included).
    pub fn weight_bytes(&self, dtype_bytes: usize) -> u64 {
        let c = self.config();
        let (hd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let layer = c.hidden * (hd + 2 * kvd) + hd * c.hidden + 3 * c.hidden * c.ffn + 2 * c.hidden;
        ((2 * c.vocab * c.hidden + c.layers * layer + c.hidden) * dtype_bytes) as u64
    }

    /// The most layers whose weights fit in `bytes` (0: not even the embedding and head).
    pub fn layers_fitting(&self, bytes: u64, dtype_bytes: usize) -> usize {
        let one = SyntheticSpec { layers: Some(1), ..self.clone() };
        let two = SyntheticSpec { layers: Some(2), ..self.clone() };
        let (base, per_layer) =
            (one.weight_bytes(dtype_bytes), two.weight_bytes(dtype_bytes) - one.weight_bytes(dtype_bytes));
        if bytes < base {
            return 0;
        }
        ((bytes - base) / per_layer + 1) as usize
    }

    /// `n` values of weight tensor number `tensor`, uniform with standard deviation `std`.
    pub fn values(&self, tensor: u64, n: usize, std: f32) -> Vec<f32> {
        let half_width = std * 3f32.sqrt();
        let key = splitmix(self.seed ^ tensor.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut out = vec![0f32; n];
        out.par_chunks_mut(1 << 16).enumerate().for_each(|(c, chunk)| {
            let base = (c as u64) << 16;
            for (i, x) in chunk.iter_mut().enumerate() {
                // 24 random bits → [-1, 1).
                let u = (splitmix(key ^ (base + i as u64)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                *x = u * half_width;
            }
        });
        out
    }
}

/// SplitMix64's finaliser: a good 64-bit mix of a counter.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_a_function_of_the_seed() {
        let a = SyntheticSpec::new("llama-2-7b", Some(1), 7).unwrap();
        let b = SyntheticSpec::new("llama-2-7b", Some(1), 8).unwrap();
        let x = a.values(3, 200_000, 0.02);
        assert_eq!(x, a.values(3, 200_000, 0.02));
        assert_ne!(x, b.values(3, 200_000, 0.02));
        assert_ne!(x[..1000], a.values(4, 1000, 0.02)[..]);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let std = (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3, "mean {mean}, std {std}");
    }

    #[test]
    fn only_llama_shapes_and_the_real_sizes() {
        assert!(SyntheticSpec::new("opt-13b", None, 0).is_none());
        assert!(shape_names().contains(&"llama-3.2-1b"));
        let c = SyntheticSpec::new("llama-3-8b", None, 0).unwrap().config();
        assert_eq!((c.layers, c.hidden, c.kv_heads, c.ffn, c.vocab), (32, 4096, 8, 14336, 128256));
        let s = SyntheticSpec::new("llama-2-7b", Some(2), 0).unwrap();
        assert_eq!(s.config().layers, 2);
        // Llama-2-7B: 6.74 B parameters, 13.5 GB in bf16.
        let full = SyntheticSpec::new("llama-2-7b", None, 0).unwrap();
        assert!((full.weight_bytes(2) as f64 / 13.48e9 - 1.0).abs() < 0.01, "{}", full.weight_bytes(2));
        assert_eq!(full.layers_fitting(full.weight_bytes(4), 4), 32);
        assert_eq!(full.layers_fitting(s.weight_bytes(4) + 1, 4), 2);
        assert_eq!(full.layers_fitting(1000, 4), 0);
        assert_eq!(s.describe(), "synthetic llama-2-7b (2 of 32 layers)");
    }
}
