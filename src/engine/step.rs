//! What one worker iteration computes, as the engine sees it.

/// A slice of one request's prompt processed in a step: tokens `offset..offset + tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptChunk {
    pub request: u64,
    pub offset: u64,
    pub tokens: u64,
}

/// One decode slot: the request produces one token, attending over `context_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSlot {
    pub request: u64,
    pub context_tokens: u64,
}

/// One iteration: prompt chunks (whole prompts outside chunked prefill) and decode slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub prefill: Vec<PromptChunk>,
    pub decode: Vec<DecodeSlot>,
    /// How long the worker sat idle before this step (since its previous step ended;
    /// `u64::MAX` for its first step): a machine wakes up slowly after a pause, which a cost
    /// model may charge. A first step counts as after a pause because the worker's compute
    /// threads have not run yet: executed two-thread first prefills of 24 tokens took ×1.13–1.43
    /// of their calibration without the wake-up charge, ×0.87–1.04 with it (four rounds).
    pub idle_ns: u64,
    /// How long before the step the machine's last computing ended: 0 when another worker of
    /// the machine was computing as the step started, at most `idle_ns` (the worker's own last
    /// step counts); `None` where not known, taken as `idle_ns`. Part of the wake-up is memory
    /// every worker shares, which another worker's steps keep in use (see
    /// [`crate::engine::sim::wake`]).
    pub machine_idle_ns: Option<u64>,
    /// How many other workers sharing this worker's machine were computing when it started: a
    /// cost model may charge for the contention.
    pub co_running: u32,
    /// Whether one of them was running a single-sequence decode step, which contends for memory
    /// far more than a batched one (on the build machine a one-thread prefill ran 12–19% slower
    /// beside a batch-1 decode, 2% beside a batch of 4).
    pub beside_single_decode: bool,
}

impl StepPlan {
    pub fn is_empty(&self) -> bool {
        self.prefill.is_empty() && self.decode.is_empty()
    }

    pub fn clear(&mut self) {
        self.prefill.clear();
        self.decode.clear();
    }

    /// Aggregate sizes, what a cost model needs.
    pub fn shape(&self) -> StepShape {
        let mut s = StepShape::default();
        for c in &self.prefill {
            s.prefill_seqs += 1;
            s.prefill_tokens += c.tokens;
            s.prefill_tokens_sq += c.tokens * (c.offset + c.tokens);
            s.prefill_attended += c.tokens * c.offset + c.tokens * (c.tokens + 1) / 2;
            s.prefill_context += c.offset + c.tokens;
        }
        s.decode_seqs = self.decode.len() as u64;
        s.decode_context = self.decode.iter().map(|d| d.context_tokens).sum();
        s.idle_ns = self.idle_ns;
        s.machine_idle_ns = self.machine_idle_ns;
        s.co_running = self.co_running;
        s.beside_single_decode = self.beside_single_decode;
        s
    }
}

/// Sizes of a step, summed over its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepShape {
    pub prefill_seqs: u64,
    /// Σ chunk length.
    pub prefill_tokens: u64,
    /// Σ length × (offset + length): DistServe's Σ L² term, extended to chunks.
    pub prefill_tokens_sq: u64,
    /// Σ over chunk tokens of the positions each attends to (causal attention work).
    pub prefill_attended: u64,
    /// Σ (offset + length): KV tokens a chunk reads and writes.
    pub prefill_context: u64,
    pub decode_seqs: u64,
    /// Σ context tokens over decode slots.
    pub decode_context: u64,
    /// The worker's idle time before the step ([`StepPlan::idle_ns`]).
    pub idle_ns: u64,
    /// [`StepPlan::machine_idle_ns`].
    pub machine_idle_ns: Option<u64>,
    /// Other workers of the machine computing at the step's start ([`StepPlan::co_running`]).
    pub co_running: u32,
    /// [`StepPlan::beside_single_decode`].
    pub beside_single_decode: bool,
}

impl StepShape {
    /// Tokens whose activations go through the weights this step.
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + self.decode_seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_sums_chunks_and_slots() {
        let plan = StepPlan {
            prefill: vec![
                PromptChunk { request: 0, offset: 0, tokens: 4 },
                PromptChunk { request: 1, offset: 4, tokens: 2 },
            ],
            decode: vec![DecodeSlot { request: 2, context_tokens: 10 }, DecodeSlot { request: 3, context_tokens: 5 }],
            idle_ns: 7,
            machine_idle_ns: Some(3),
            co_running: 1,
            beside_single_decode: true,
        };
        let s = plan.shape();
        assert_eq!(s.prefill_tokens, 6);
        assert_eq!(s.prefill_tokens_sq, 16 + 2 * 6);
        // Chunk 0: positions 1..=4 → 10. Chunk 1 at offset 4: 2·4 + 3 = 11.
        assert_eq!(s.prefill_attended, 21);
        assert_eq!(s.prefill_context, 4 + 6);
        assert_eq!((s.decode_seqs, s.decode_context), (2, 15));
        assert_eq!(s.tokens(), 8);
        assert_eq!((s.idle_ns, s.machine_idle_ns, s.co_running, s.beside_single_decode), (7, Some(3), 1, true));
    }
}
