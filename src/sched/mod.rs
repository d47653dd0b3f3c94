//! Scheduling logic as plain data: batch formation, KV-capacity accounting, routing and the
//! fused-worker policies. Nothing here knows about actors or clocks; the actors in
//! [`crate::actors`] are thin shells that call into these structs, and the tests below each
//! file drive them directly.

pub mod decode_admission;
pub mod decode_set;
pub mod fused;
pub mod kv_budget;
pub mod link;
pub mod prefill_queue;
pub mod router;

/// Token counts of a request as a scheduler sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqLens {
    pub prompt_tokens: u64,
    /// Output tokens to produce in total, the first (from prefill) included.
    pub output_tokens: u64,
}

impl SeqLens {
    /// KV tokens reserved for the request's whole life: the prompt plus every output token
    /// whose KV is stored (the last token's KV is never needed, but reserving it keeps the
    /// rule simple and errs on the safe side).
    pub fn kv_reservation(&self) -> u64 {
        self.prompt_tokens + self.output_tokens
    }
}

/// What the schedulers need to know of the items they carry.
pub trait Tracked {
    fn request_id(&self) -> u64;
}
