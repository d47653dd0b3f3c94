//! Admission to a split-topology decode worker: KV handoffs wait until the worker has both a
//! batch slot and KV capacity for them, then their transfer starts, then they join the batch.

use std::collections::VecDeque;

use super::decode_set::DecodeSet;
use super::kv_budget::KvBudget;
use super::{SeqLens, Tracked};

/// The decode side of a split topology. Offers queue in arrival order; while one waits here its
/// KV stays (and is counted) on the prefill worker that made it.
#[derive(Debug)]
pub struct DecodeAdmission<T> {
    kv: KvBudget,
    offers: VecDeque<(SeqLens, T)>,
    /// Admitted: capacity reserved, KV on its way.
    inbound: usize,
    /// Arrived, joining at the next step.
    ready: Vec<(SeqLens, T)>,
    pub set: DecodeSet<T>,
}

impl<T> DecodeAdmission<T> {
    pub fn new(kv_capacity_tokens: u64, max_batch: usize) -> DecodeAdmission<T> {
        DecodeAdmission {
            kv: KvBudget::new(kv_capacity_tokens),
            offers: VecDeque::new(),
            inbound: 0,
            ready: Vec::new(),
            set: DecodeSet::new(max_batch),
        }
    }

    pub fn offer(&mut self, lens: SeqLens, payload: T) {
        self.offers.push_back((lens, payload));
    }

    /// Requests waiting for admission.
    pub fn waiting(&self) -> usize {
        self.offers.len()
    }

    /// Requests held: waiting, in transfer, ready or decoding.
    pub fn load(&self) -> usize {
        self.offers.len() + self.inbound + self.ready.len() + self.set.len()
    }

    pub fn kv(&self) -> &KvBudget {
        &self.kv
    }

    /// Admits the head offer if a batch slot and its KV reservation are free. The caller starts
    /// its transfer and calls [`DecodeAdmission::arrived`] when it lands.
    pub fn admit_next(&mut self) -> Option<(SeqLens, T)> {
        let (lens, _) = self.offers.front()?;
        let slots_taken = self.set.len() + self.inbound + self.ready.len();
        if slots_taken >= self.set.max_batch() || !self.kv.try_reserve(lens.kv_reservation()) {
            return None;
        }
        self.inbound += 1;
        self.offers.pop_front()
    }

    pub fn arrived(&mut self, lens: SeqLens, payload: T) {
        debug_assert!(self.inbound > 0);
        self.inbound -= 1;
        self.ready.push((lens, payload));
    }

    /// A transfer that landed but could not be installed: its slot and KV are free again.
    pub fn abandon(&mut self, lens: SeqLens) {
        debug_assert!(self.inbound > 0);
        self.inbound -= 1;
        self.kv.release(lens.kv_reservation());
    }

    /// Moves arrived requests into the batch; returns true when there is a step to run.
    /// `on_join` sees each request as it joins (to stamp its decode start).
    pub fn begin_step(&mut self, mut on_join: impl FnMut(&mut T)) -> bool {
        for (lens, mut p) in self.ready.drain(..) {
            on_join(&mut p);
            self.set.join(lens, 1, p);
        }
        !self.set.is_empty()
    }

    /// Removes every offer still waiting for admission (their KV never left its prefill worker).
    pub fn drain_offers(&mut self) -> Vec<(SeqLens, T)> {
        self.offers.drain(..).collect()
    }

    /// Removes the requests whose KV is on this worker (arrived or decoding) and frees their
    /// reservations; transfers in flight are untouched.
    pub fn drain_started(&mut self) -> Vec<T> {
        let mut lost: Vec<(SeqLens, T)> = self.ready.drain(..).collect();
        lost.extend(self.set.drain().into_iter().map(|r| (r.lens, r.payload)));
        for (lens, _) in &lost {
            self.kv.release(lens.kv_reservation());
        }
        lost.into_iter().map(|(_, p)| p).collect()
    }

    /// Forgets transfers in flight (their worker crashed; call after the drains): their slots
    /// and KV are free again.
    pub fn forget_inbound(&mut self) {
        self.kv.release(self.kv.used());
        self.inbound = 0;
    }

    /// Completes the running step; finished requests release their KV.
    pub fn end_step(&mut self, stopped: &[u64]) -> Vec<super::decode_set::Running<T>>
    where
        T: Tracked,
    {
        let done = self.set.complete_step(stopped);
        for r in &done {
            self.kv.release(r.lens.kv_reservation());
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Tracked for char {
        fn request_id(&self) -> u64 {
            *self as u64
        }
    }

    impl Tracked for i32 {
        fn request_id(&self) -> u64 {
            *self as u64
        }
    }

    fn lens(p: u64, o: u64) -> SeqLens {
        SeqLens { prompt_tokens: p, output_tokens: o }
    }

    #[test]
    fn kv_capacity_holds_offers_back_until_a_request_finishes() {
        let mut d = DecodeAdmission::new(30, 8);
        d.offer(lens(10, 3), 'a');
        d.offer(lens(10, 3), 'b');
        d.offer(lens(10, 3), 'c');
        assert_eq!(d.admit_next().map(|x| x.1), Some('a'));
        assert_eq!(d.admit_next().map(|x| x.1), Some('b'));
        assert!(d.admit_next().is_none(), "26 of 30 tokens reserved: c needs 13");
        d.arrived(lens(10, 3), 'a');
        assert!(d.begin_step(|_| {}));
        assert!(d.end_step(&[]).is_empty());
        assert!(d.begin_step(|_| {}));
        let done = d.end_step(&[]);
        assert_eq!(done.len(), 1);
        assert_eq!(d.admit_next().map(|x| x.1), Some('c'));
        assert_eq!(d.load(), 2);
    }

    #[test]
    fn a_failure_frees_what_it_drains() {
        let mut d = DecodeAdmission::new(100, 8);
        for c in ['a', 'b', 'c'] {
            d.offer(lens(10, 10), c);
        }
        let (_, a) = d.admit_next().unwrap();
        d.arrived(lens(10, 10), a);
        assert!(d.begin_step(|_| {}));
        let _ = d.admit_next().unwrap(); // b in transfer
        assert_eq!(d.kv().used(), 40);
        assert_eq!(d.drain_started(), vec!['a']);
        assert_eq!(d.kv().used(), 20);
        assert_eq!(d.drain_offers().into_iter().map(|x| x.1).collect::<Vec<_>>(), vec!['c']);
        d.forget_inbound();
        assert_eq!((d.kv().used(), d.load()), (0, 0));
    }

    #[test]
    fn batch_slots_count_requests_in_transfer() {
        let mut d = DecodeAdmission::new(1_000, 1);
        d.offer(lens(1, 2), 1);
        d.offer(lens(1, 2), 2);
        assert!(d.admit_next().is_some());
        assert!(d.admit_next().is_none());
        assert_eq!(d.waiting(), 1);
    }
}
