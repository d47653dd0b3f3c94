//! One worker iteration, as written to `iterations.csv`.

use super::format::{csv_field, ms, secs};

/// What a step ran, on which worker, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterationRow {
    /// e.g. `prefill-0`, `decode-3`, `fused-1`.
    pub worker: String,
    pub kind: StepKind,
    /// Requests in the step (prefill chunks plus decode slots).
    pub batch_size: u64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    /// Σ context tokens of the decode slots.
    pub context_tokens: u64,
    /// KV tokens reserved on the worker during the step (this batch included).
    pub kv_used_tokens: u64,
    /// Requests left waiting on the worker when the step started (not in this batch).
    pub queued: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Prefill,
    Decode,
    /// Prompt chunks and decodes together (chunked prefill).
    Mixed,
}

impl StepKind {
    pub fn of(prefill_tokens: u64, decode_tokens: u64) -> StepKind {
        match (prefill_tokens > 0, decode_tokens > 0) {
            (true, true) => StepKind::Mixed,
            (true, false) => StepKind::Prefill,
            _ => StepKind::Decode,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StepKind::Prefill => "prefill",
            StepKind::Decode => "decode",
            StepKind::Mixed => "mixed",
        }
    }
}

pub const ITERATIONS_HEADER: &str = "worker,kind,batch_size,prefill_tokens,decode_tokens,context_tokens,kv_used_tokens,queued,start_s,end_s,duration_ms";

impl IterationRow {
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&self.worker),
            self.kind.name(),
            self.batch_size,
            self.prefill_tokens,
            self.decode_tokens,
            self.context_tokens,
            self.kv_used_tokens,
            self.queued,
            secs(self.start_ns),
            secs(self.end_ns),
            ms(self.end_ns - self.start_ns)
        )
    }
}
