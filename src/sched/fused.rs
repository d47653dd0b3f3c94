//! The fused worker's scheduler: one worker, prefill and decode, under a policy.
//!
//! - `prefill_first`: whenever prompts wait and fit, run a prefill-only batch; decode otherwise
//!   (vLLM's original scheduler). Good TTFT; long prompts stall every running decode.
//! - `decode_first`: while any request decodes, run decode steps; prefill a new batch only when
//!   the decode batch has drained (request-level batching, as in FasterTransformer). Smooth
//!   TPOT; TTFT suffers.
//! - `chunked`: every step carries all running decodes plus prompt chunks up to `chunk_tokens`
//!   tokens in total (Sarathi-Serve). Long prompts are split across steps.
//!
//! A request takes a batch slot and reserves its whole KV (prompt + output) when its prefill
//! starts, and frees both when it finishes.

use std::collections::VecDeque;

use super::decode_set::{DecodeSet, Running};
use super::kv_budget::KvBudget;
use super::prefill_queue::{PrefillLimits, PrefillQueue};
use super::{SeqLens, Tracked};
use crate::engine::step::{PromptChunk, StepPlan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedPolicy {
    PrefillFirst,
    DecodeFirst,
    Chunked { chunk_tokens: u64 },
}

impl FusedPolicy {
    pub fn name(self) -> &'static str {
        match self {
            FusedPolicy::PrefillFirst => "prefill_first",
            FusedPolicy::DecodeFirst => "decode_first",
            FusedPolicy::Chunked { .. } => "chunked",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FusedLimits {
    pub prefill_token_budget: u64,
    pub max_batch: usize,
    pub kv_capacity_tokens: u64,
}

/// A request whose prompt is being (or about to be) prefilled.
#[derive(Debug)]
struct Prefilling<T> {
    lens: SeqLens,
    done: u64,
    payload: T,
}

#[derive(Debug)]
pub struct FusedScheduler<T> {
    policy: FusedPolicy,
    prefill_token_budget: u64,
    kv: KvBudget,
    queue: PrefillQueue<(SeqLens, T)>,
    prefilling: VecDeque<Prefilling<T>>,
    set: DecodeSet<T>,
    /// The step being run: how many of `prefilling` have a chunk in it, and whether the decode
    /// batch is in it.
    in_flight: Option<(Vec<u64>, bool)>,
}

/// What a completed step produced.
#[derive(Debug)]
pub struct FusedCompletion<T> {
    /// Requests whose prompt finished this step (their first token), in order. Those with more
    /// tokens to go have joined the decode batch; see `finished` for the rest.
    pub prefilled: usize,
    /// Requests that produced their last token this step.
    pub finished: Vec<Running<T>>,
}

impl<T: Tracked> FusedScheduler<T> {
    pub fn new(policy: FusedPolicy, limits: FusedLimits) -> FusedScheduler<T> {
        FusedScheduler {
            policy,
            prefill_token_budget: limits.prefill_token_budget,
            kv: KvBudget::new(limits.kv_capacity_tokens),
            queue: PrefillQueue::default(),
            prefilling: VecDeque::new(),
            set: DecodeSet::new(limits.max_batch),
            in_flight: None,
        }
    }

    pub fn submit(&mut self, lens: SeqLens, payload: T) {
        self.queue.push(lens.prompt_tokens, (lens, payload));
    }

    /// Requests held, in any state.
    pub fn load(&self) -> usize {
        self.queue.len() + self.prefilling.len() + self.set.len()
    }

    /// Prompts not yet admitted.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    pub fn kv(&self) -> &KvBudget {
        &self.kv
    }

    /// Removes the requests that started (prefilling or decoding) and frees their KV: the
    /// worker failed under them. Queued prompts keep their place.
    pub fn drain_started(&mut self) -> Vec<T> {
        self.in_flight = None;
        let mut lost = Vec::new();
        for p in self.prefilling.drain(..) {
            self.kv.release(p.lens.kv_reservation());
            lost.push(p.payload);
        }
        for r in self.set.drain() {
            self.kv.release(r.lens.kv_reservation());
            lost.push(r.payload);
        }
        lost
    }

    /// Empties the scheduler (its worker crashed): every request, started or queued.
    pub fn drain_all(&mut self) -> Vec<T> {
        let mut all = self.drain_started();
        all.extend(self.queue.drain().into_iter().map(|(_, p)| p));
        all
    }

    /// Plans the next step into `plan` (cleared first). Returns false when there is nothing to
    /// run. `on_prefill_start` sees each request whose first prompt chunk is in this step;
    /// `on_decode_start` each request in its first decode step.
    pub fn plan(
        &mut self,
        plan: &mut StepPlan,
        mut on_prefill_start: impl FnMut(&mut T),
        mut on_decode_start: impl FnMut(&mut T),
    ) -> bool {
        assert!(self.in_flight.is_none(), "plan() called while a step is in flight");
        plan.clear();
        let (chunk_budget, with_decode) = match self.policy {
            FusedPolicy::PrefillFirst => {
                self.admit(self.prefill_token_budget, false, &mut on_prefill_start);
                if self.prefilling.is_empty() {
                    (0, true)
                } else {
                    (u64::MAX, false)
                }
            }
            FusedPolicy::DecodeFirst => {
                if self.set.is_empty() {
                    self.admit(self.prefill_token_budget, false, &mut on_prefill_start);
                    (u64::MAX, false)
                } else {
                    (0, true)
                }
            }
            FusedPolicy::Chunked { chunk_tokens } => {
                let left = chunk_tokens.saturating_sub(self.set.len() as u64);
                let open: u64 = self.prefilling.iter().map(|p| p.lens.prompt_tokens - p.done).sum();
                if left > open {
                    self.admit(left - open, true, &mut on_prefill_start);
                }
                (left, true)
            }
        };
        let mut left = chunk_budget;
        let mut chunks = Vec::new();
        for p in self.prefilling.iter() {
            if left == 0 {
                break;
            }
            let tokens = (p.lens.prompt_tokens - p.done).min(left);
            left -= tokens;
            chunks.push(tokens);
            plan.prefill.push(PromptChunk { request: p.payload.request_id(), offset: p.done, tokens });
        }
        let decode = with_decode && !self.set.is_empty();
        if decode {
            for r in self.set_running_mut() {
                if r.produced == 1 {
                    on_decode_start(&mut r.payload);
                }
            }
            self.set.fill_plan(plan);
        }
        if plan.is_empty() {
            return false;
        }
        self.in_flight = Some((chunks, decode));
        true
    }

    fn set_running_mut(&mut self) -> impl Iterator<Item = &mut Running<T>> {
        self.set.running_mut()
    }

    /// Admits waiting prompts (FIFO) into `prefilling` while they fit `tokens` prompt tokens,
    /// the batch-slot limit and the KV capacity. The first prompt is admitted even when longer
    /// than `tokens` (whole-prompt policies then run it alone). With `partial`, the last prompt
    /// admitted may overflow `tokens` too: chunked prefill gives it only the chunk that fits.
    fn admit(&mut self, tokens: u64, partial: bool, on_prefill_start: &mut impl FnMut(&mut T)) {
        let mut left = tokens;
        while left > 0 {
            let slots = self.set.max_batch().saturating_sub(self.set.len() + self.prefilling.len());
            if slots == 0 {
                return;
            }
            let limits = if partial {
                PrefillLimits { token_budget: u64::MAX, max_requests: 1 }
            } else {
                PrefillLimits { token_budget: left, max_requests: slots }
            };
            let batch = self.queue.next_batch(limits, &mut self.kv, |(l, _)| l.kv_reservation());
            if batch.is_empty() {
                return;
            }
            for (lens, mut payload) in batch {
                left = left.saturating_sub(lens.prompt_tokens);
                on_prefill_start(&mut payload);
                self.prefilling.push_back(Prefilling { lens, done: 0, payload });
            }
            if !partial {
                return;
            }
        }
    }

    /// Records that the planned step finished. `on_prefill_end` sees each request whose prompt
    /// completed (its first token is out).
    /// `stopped` lists requests whose token this step was end-of-sequence.
    pub fn complete(&mut self, stopped: &[u64], mut on_prefill_end: impl FnMut(&mut T)) -> FusedCompletion<T> {
        let (chunks, decode) = self.in_flight.take().expect("complete() without a planned step");
        // Decodes first: requests that just finished prefill must not also count this step.
        let mut finished = if decode { self.set.complete_step(stopped) } else { Vec::new() };
        for (p, tokens) in self.prefilling.iter_mut().zip(&chunks) {
            p.done += tokens;
        }
        let mut prefilled = 0;
        while self.prefilling.front().is_some_and(|p| p.done == p.lens.prompt_tokens) {
            let mut p = self.prefilling.pop_front().expect("front exists");
            prefilled += 1;
            on_prefill_end(&mut p.payload);
            if p.lens.output_tokens <= 1 || stopped.contains(&p.payload.request_id()) {
                finished.push(Running { lens: p.lens, produced: 1, payload: p.payload });
            } else {
                self.set.join(p.lens, 1, p.payload);
            }
        }
        for r in &finished {
            self.kv.release(r.lens.kv_reservation());
        }
        FusedCompletion { prefilled, finished }
    }
}

#[cfg(test)]
mod tests;
