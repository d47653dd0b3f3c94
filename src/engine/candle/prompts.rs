//! Where an execute-mode request's prompt tokens come from: real text prompts of its class
//! (tokenized once before the run), or synthetic token ids of the requested length.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::workload::RequestSpec;

/// First id drawn for synthetic prompts: ids below are special tokens in SmolLM2's vocabulary
/// (0–16), which would change the model's behaviour.
const FIRST_ORDINARY_ID: u32 = 17;
/// Keeps prompt draws apart from other draws made with the scenario's seed.
const PROMPT_SALT: u64 = 0x5eed_f0a1_17e4_7000;

#[derive(Debug, Clone)]
pub enum PromptSource {
    /// Seeded random ordinary token ids: the same seed and request id give the same prompt.
    Synthetic { seed: u64, vocab: u32 },
    /// Tokenized text prompts per class; a request's `prompt` indexes its class's list.
    Text { per_class: Vec<Vec<Vec<u32>>>, seed: u64, vocab: u32 },
}

impl PromptSource {
    /// The prompt token ids of `spec` (exactly `spec.prompt_tokens` of them).
    pub fn prompt(&self, spec: &RequestSpec) -> Vec<u32> {
        match self {
            PromptSource::Text { per_class, .. } if spec.prompt.is_some() => {
                per_class[spec.class as usize][spec.prompt.unwrap_or(0) as usize].clone()
            }
            PromptSource::Synthetic { seed, vocab } | PromptSource::Text { seed, vocab, .. } => {
                let mut rng = ChaCha8Rng::seed_from_u64(*seed ^ PROMPT_SALT);
                rng.set_stream(spec.id);
                (0..spec.prompt_tokens).map(|_| rng.gen_range(FIRST_ORDINARY_ID..*vocab)).collect()
            }
        }
    }
}
