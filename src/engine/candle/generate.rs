//! A plain generation loop over one prompt: prefill, then decode token by token.

use std::time::{Duration, Instant};

use candle_core::Result;

use super::forward::Forward;
use super::sampler::{Sampler, Sampling};

/// What a generation produced, with its timings.
#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    /// Logits after the prompt and after each generated token but the last.
    pub logits: Vec<Vec<f32>>,
    pub prefill: Duration,
    pub decode: Duration,
}

/// Generates up to `max_tokens` tokens after `prompt`. Stops at the model's EOS unless
/// `ignore_eos`. `keep_logits` keeps every step's logits (memory: vocab floats per step).
pub fn generate<F: Forward>(
    net: &F,
    prompt: &[u32],
    max_tokens: usize,
    sampling: Sampling,
    ignore_eos: bool,
    keep_logits: bool,
) -> Result<Generation> {
    let mut kv = net.new_kv(prompt.len() + max_tokens)?;
    let mut sampler = Sampler::new(sampling, 0);
    let mut out = Generation { ids: Vec::new(), logits: Vec::new(), prefill: Duration::ZERO, decode: Duration::ZERO };
    let t0 = Instant::now();
    let mut logits = net.forward(&mut [(prompt, &mut kv)])?;
    out.prefill = t0.elapsed();
    let t1 = Instant::now();
    while out.ids.len() < max_tokens {
        let row = logits.swap_remove(0);
        let next = sampler.sample(&row);
        if keep_logits {
            out.logits.push(row);
        }
        out.ids.push(next);
        if (!ignore_eos && Some(next) == net.eos()) || out.ids.len() == max_tokens {
            break;
        }
        logits = net.forward(&mut [(&[next], &mut kv)])?;
    }
    out.decode = t1.elapsed();
    Ok(out)
}
