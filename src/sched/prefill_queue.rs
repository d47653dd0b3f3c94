//! The queue of prompts waiting for prefill, and how a prefill batch is formed.

use std::collections::VecDeque;

use super::kv_budget::KvBudget;

/// Limits a prefill batch must respect.
#[derive(Debug, Clone, Copy)]
pub struct PrefillLimits {
    /// Most prompt tokens in one batch. A single prompt longer than this runs alone.
    pub token_budget: u64,
    /// Most requests in one batch.
    pub max_requests: usize,
}

/// First-come-first-served prompt queue. A batch takes prompts from the head while they fit
/// the token budget and KV capacity; it never skips the head (no starvation of long prompts).
#[derive(Debug)]
pub struct PrefillQueue<T> {
    waiting: VecDeque<(u64, T)>,
    queued_tokens: u64,
}

impl<T> Default for PrefillQueue<T> {
    fn default() -> Self {
        PrefillQueue { waiting: VecDeque::new(), queued_tokens: 0 }
    }
}

impl<T> PrefillQueue<T> {
    /// Appends a prompt of `prompt_tokens` tokens.
    pub fn push(&mut self, prompt_tokens: u64, item: T) {
        self.queued_tokens += prompt_tokens;
        self.waiting.push_back((prompt_tokens, item));
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Prompt tokens waiting.
    pub fn queued_tokens(&self) -> u64 {
        self.queued_tokens
    }

    /// Empties the queue, returning what waited in order.
    pub fn drain(&mut self) -> Vec<T> {
        self.queued_tokens = 0;
        self.waiting.drain(..).map(|(_, t)| t).collect()
    }

    pub fn front(&self) -> Option<&T> {
        self.waiting.front().map(|(_, t)| t)
    }

    /// Forms the next batch. `kv_need(item)` is what each admitted item reserves in `kv`.
    pub fn next_batch(&mut self, limits: PrefillLimits, kv: &mut KvBudget, kv_need: impl Fn(&T) -> u64) -> Vec<T> {
        let mut batch = Vec::new();
        let mut tokens = 0u64;
        while let Some((len, item)) = self.waiting.front() {
            if batch.len() >= limits.max_requests {
                break;
            }
            if !batch.is_empty() && tokens + len > limits.token_budget {
                break;
            }
            if !kv.try_reserve(kv_need(item)) {
                break;
            }
            tokens += len;
            let (len, item) = self.waiting.pop_front().expect("front exists");
            self.queued_tokens -= len;
            batch.push(item);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(lens: &[u64]) -> PrefillQueue<u64> {
        let mut q = PrefillQueue::default();
        for &l in lens {
            q.push(l, l);
        }
        q
    }

    const WIDE: PrefillLimits = PrefillLimits { token_budget: 100, max_requests: usize::MAX };

    #[test]
    fn batch_fills_the_token_budget_in_order() {
        let mut q = queue(&[40, 50, 20, 5]);
        let mut kv = KvBudget::new(1000);
        assert_eq!(q.next_batch(WIDE, &mut kv, |&l| l), vec![40, 50]);
        assert_eq!(kv.used(), 90);
        assert_eq!(q.queued_tokens(), 25);
        assert_eq!(q.next_batch(WIDE, &mut kv, |&l| l), vec![20, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn an_oversized_prompt_runs_alone() {
        let mut q = queue(&[300, 10]);
        let mut kv = KvBudget::new(1000);
        assert_eq!(q.next_batch(WIDE, &mut kv, |&l| l), vec![300]);
        assert_eq!(q.next_batch(WIDE, &mut kv, |&l| l), vec![10]);
    }

    #[test]
    fn kv_capacity_and_request_cap_stop_the_batch_without_skipping() {
        let mut q = queue(&[30, 30, 5]);
        let mut kv = KvBudget::new(50);
        // Second prompt does not fit the KV left; the small third one must not jump ahead.
        assert_eq!(q.next_batch(WIDE, &mut kv, |&l| l), vec![30]);
        assert!(q.next_batch(WIDE, &mut kv, |&l| l).is_empty());
        kv.release(30);
        let one = PrefillLimits { token_budget: 100, max_requests: 1 };
        assert_eq!(q.next_batch(one, &mut kv, |&l| l), vec![30]);
    }
}
