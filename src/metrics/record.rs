//! What happened to one request, and the metrics derived from it (definitions in the README and
//! DESIGN §3).

use crate::workload::RequestSpec;

/// Timestamps of one request, nanoseconds since the run started. Workers fill them in as the
/// request moves; the record travels with the request and reaches the collector at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub spec: RequestSpec,
    /// The worker that ran the prefill (the fused worker in a fused topology).
    pub prefill_worker: u32,
    /// The decode worker (split topologies only).
    pub decode_worker: Option<u32>,
    pub prefill_start_ns: u64,
    /// The first token exists at prefill end.
    pub prefill_end_ns: u64,
    pub kv_transfer_start_ns: Option<u64>,
    pub kv_transfer_end_ns: Option<u64>,
    pub kv_bytes: u64,
    /// First decode step that includes the request.
    pub decode_start_ns: Option<u64>,
    pub end_ns: u64,
    /// Output tokens produced, the first one included.
    pub token_count: u64,
    /// Times the request was started again after its worker failed.
    pub retries: u32,
}

impl RequestRecord {
    pub fn new(spec: RequestSpec) -> RequestRecord {
        RequestRecord {
            spec,
            prefill_worker: 0,
            decode_worker: None,
            prefill_start_ns: 0,
            prefill_end_ns: 0,
            kv_transfer_start_ns: None,
            kv_transfer_end_ns: None,
            kv_bytes: 0,
            decode_start_ns: None,
            end_ns: 0,
            token_count: 0,
            retries: 0,
        }
    }

    /// Forgets the progress of a failed attempt (the arrival time stays: the time lost counts
    /// in TTFT and E2E) and counts one more retry.
    pub fn restart(&mut self) {
        let (spec, retries) = (self.spec, self.retries + 1);
        *self = RequestRecord::new(spec);
        self.retries = retries;
    }

    pub fn enqueue_ns(&self) -> u64 {
        self.spec.arrival_ns
    }

    pub fn first_token_ns(&self) -> u64 {
        self.prefill_end_ns
    }

    /// Time waiting before the prefill started.
    pub fn queue_ns(&self) -> u64 {
        self.prefill_start_ns - self.enqueue_ns()
    }

    /// TTFT = prefill_end − enqueue_time.
    pub fn ttft_ns(&self) -> u64 {
        self.prefill_end_ns - self.enqueue_ns()
    }

    /// TPOT = (end_time − first_token_time) / (token_count − 1); `None` for one-token outputs.
    pub fn tpot_ns(&self) -> Option<f64> {
        (self.token_count > 1).then(|| (self.end_ns - self.first_token_ns()) as f64 / (self.token_count - 1) as f64)
    }

    /// E2E = end_time − enqueue_time.
    pub fn e2e_ns(&self) -> u64 {
        self.end_ns - self.enqueue_ns()
    }

    pub fn kv_transfer_ns(&self) -> Option<u64> {
        Some(self.kv_transfer_end_ns? - self.kv_transfer_start_ns?)
    }

    /// Per-request decode rate: (token_count − 1) / (end_time − first_token_time), tokens/s.
    pub fn decode_tokens_per_s(&self) -> Option<f64> {
        let span = self.end_ns - self.first_token_ns();
        (self.token_count > 1 && span > 0).then(|| (self.token_count - 1) as f64 * 1e9 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_metrics_follow_the_definitions() {
        let spec = RequestSpec { id: 0, arrival_ns: 1_000, class: 0, prompt_tokens: 8, output_tokens: 5, prompt: None };
        let mut r = RequestRecord::new(spec);
        r.prefill_start_ns = 1_500;
        r.prefill_end_ns = 3_000;
        r.end_ns = 11_000;
        r.token_count = 5;
        assert_eq!(r.queue_ns(), 500);
        assert_eq!(r.ttft_ns(), 2_000);
        assert_eq!(r.tpot_ns(), Some(2_000.0));
        assert_eq!(r.e2e_ns(), 10_000);
        assert_eq!(r.decode_tokens_per_s(), Some(4.0 * 1e9 / 8_000.0));
        r.token_count = 1;
        assert_eq!(r.tpot_ns(), None);
        assert_eq!(r.decode_tokens_per_s(), None);
        assert_eq!(r.kv_transfer_ns(), None);
    }
}
