//! The running decode batch (continuous batching): requests join at the next step and leave
//! the step they produce their last token.

use super::{SeqLens, Tracked};
use crate::engine::step::{DecodeSlot, StepPlan};

/// One request in the running batch.
#[derive(Debug)]
pub struct Running<T> {
    pub lens: SeqLens,
    /// Output tokens produced so far, the first (from prefill) included.
    pub produced: u64,
    pub payload: T,
}

impl<T> Running<T> {
    /// Tokens this request attends over in its next decode step: the prompt and every output
    /// token so far (the newest one is the step's input).
    pub fn context_tokens(&self) -> u64 {
        self.lens.prompt_tokens + self.produced
    }
}

/// The shape of one decode step, what a cost model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeShape {
    pub seqs: u64,
    pub context_tokens: u64,
}

/// Requests decoding together, at most `max_batch` of them.
#[derive(Debug)]
pub struct DecodeSet<T> {
    max_batch: usize,
    running: Vec<Running<T>>,
    context_tokens: u64,
}

impl<T> DecodeSet<T> {
    pub fn new(max_batch: usize) -> DecodeSet<T> {
        DecodeSet { max_batch, running: Vec::new(), context_tokens: 0 }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn has_room(&self) -> bool {
        self.running.len() < self.max_batch
    }

    pub fn running_mut(&mut self) -> impl Iterator<Item = &mut Running<T>> {
        self.running.iter_mut()
    }

    /// Adds a request that has produced `produced` tokens (1 after a prefill). The caller checks
    /// [`DecodeSet::has_room`] first.
    pub fn join(&mut self, lens: SeqLens, produced: u64, payload: T) {
        debug_assert!(self.has_room(), "decode batch over its limit of {}", self.max_batch);
        debug_assert!(produced < lens.output_tokens, "a finished request joined a decode batch");
        let r = Running { lens, produced, payload };
        self.context_tokens += r.context_tokens();
        self.running.push(r);
    }

    /// Empties the batch (its worker failed), returning the requests in batch order.
    pub fn drain(&mut self) -> Vec<Running<T>> {
        self.context_tokens = 0;
        std::mem::take(&mut self.running)
    }

    /// The step that would run now over every running request.
    pub fn shape(&self) -> DecodeShape {
        DecodeShape { seqs: self.running.len() as u64, context_tokens: self.context_tokens }
    }

    /// Adds one decode slot per running request to `plan`.
    pub fn fill_plan(&self, plan: &mut StepPlan)
    where
        T: Tracked,
    {
        plan.decode.extend(
            self.running
                .iter()
                .map(|r| DecodeSlot { request: r.payload.request_id(), context_tokens: r.context_tokens() }),
        );
    }

    /// Records that one step ran: every running request produced one token. Returns the requests
    /// that are now complete (their last requested token, or an end-of-sequence token: the ids
    /// in `stopped`), in batch order; the others stay.
    pub fn complete_step(&mut self, stopped: &[u64]) -> Vec<Running<T>>
    where
        T: Tracked,
    {
        let mut done = Vec::new();
        let mut keep = Vec::with_capacity(self.running.len());
        for mut r in self.running.drain(..) {
            r.produced += 1;
            if r.produced >= r.lens.output_tokens || stopped.contains(&r.payload.request_id()) {
                done.push(r);
            } else {
                keep.push(r);
            }
        }
        self.running = keep;
        self.context_tokens = self.running.iter().map(Running::context_tokens).sum();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Tracked for &str {
        fn request_id(&self) -> u64 {
            self.len() as u64
        }
    }

    impl Tracked for () {
        fn request_id(&self) -> u64 {
            0
        }
    }

    fn lens(p: u64, o: u64) -> SeqLens {
        SeqLens { prompt_tokens: p, output_tokens: o }
    }

    #[test]
    fn requests_leave_after_their_last_token() {
        let mut s = DecodeSet::new(4);
        s.join(lens(10, 2), 1, "a");
        s.join(lens(20, 4), 1, "b");
        assert_eq!(s.shape(), DecodeShape { seqs: 2, context_tokens: 11 + 21 });
        let done = s.complete_step(&[]);
        assert_eq!(done.iter().map(|r| r.payload).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(done[0].produced, 2);
        assert_eq!(s.shape(), DecodeShape { seqs: 1, context_tokens: 22 });
        s.complete_step(&[]);
        let done = s.complete_step(&[]);
        assert_eq!(done[0].produced, 4);
        assert!(s.is_empty());
    }

    #[test]
    fn room_is_bounded_by_max_batch() {
        let mut s = DecodeSet::new(1);
        assert!(s.has_room());
        s.join(lens(1, 3), 1, ());
        assert!(!s.has_room());
    }
}
