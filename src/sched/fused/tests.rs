use super::*;

#[derive(Debug, PartialEq)]
struct R {
    id: u64,
    prefill_started: bool,
    prefill_ended: bool,
    decode_started: bool,
}

impl Tracked for R {
    fn request_id(&self) -> u64 {
        self.id
    }
}

fn r(id: u64) -> R {
    R { id, prefill_started: false, prefill_ended: false, decode_started: false }
}

fn lens(p: u64, o: u64) -> SeqLens {
    SeqLens { prompt_tokens: p, output_tokens: o }
}

fn limits() -> FusedLimits {
    FusedLimits { prefill_token_budget: 100, max_batch: 8, kv_capacity_tokens: 10_000 }
}

/// Runs one step; returns (prefill chunks as (id, offset, tokens), decode ids, finished ids).
/// (prefill chunks as (id, offset, tokens), decode ids, finished ids)
type Step = (Vec<(u64, u64, u64)>, Vec<u64>, Vec<u64>);

fn step(s: &mut FusedScheduler<R>) -> Option<Step> {
    let mut plan = StepPlan::default();
    if !s.plan(&mut plan, |r| r.prefill_started = true, |r| r.decode_started = true) {
        return None;
    }
    let done = s.complete(&[], |r| r.prefill_ended = true);
    Some((
        plan.prefill.iter().map(|c| (c.request, c.offset, c.tokens)).collect(),
        plan.decode.iter().map(|d| d.request).collect(),
        done.finished.iter().map(|f| f.payload.id).collect(),
    ))
}

#[test]
fn prefill_first_interrupts_decodes_for_new_prompts() {
    let mut s = FusedScheduler::new(FusedPolicy::PrefillFirst, limits());
    s.submit(lens(50, 3), r(0));
    assert_eq!(step(&mut s), Some((vec![(0, 0, 50)], vec![], vec![])));
    s.submit(lens(60, 2), r(1));
    // The new prompt goes before request 0's next decode.
    assert_eq!(step(&mut s), Some((vec![(1, 0, 60)], vec![], vec![])));
    assert_eq!(step(&mut s), Some((vec![], vec![0, 1], vec![1])));
    assert_eq!(step(&mut s), Some((vec![], vec![0], vec![0])));
    assert_eq!(step(&mut s), None);
    assert_eq!(s.kv().used(), 0);
}

#[test]
fn prefill_first_batches_prompts_up_to_the_token_budget() {
    let mut s = FusedScheduler::new(FusedPolicy::PrefillFirst, limits());
    for i in 0..3 {
        s.submit(lens(40, 2), r(i));
    }
    assert_eq!(step(&mut s).unwrap().0, vec![(0, 0, 40), (1, 0, 40)]);
    assert_eq!(step(&mut s).unwrap().0, vec![(2, 0, 40)]);
}

#[test]
fn decode_first_waits_for_the_batch_to_drain() {
    let mut s = FusedScheduler::new(FusedPolicy::DecodeFirst, limits());
    s.submit(lens(10, 3), r(0));
    assert_eq!(step(&mut s).unwrap().0, vec![(0, 0, 10)]);
    s.submit(lens(10, 2), r(1));
    assert_eq!(step(&mut s), Some((vec![], vec![0], vec![])));
    assert_eq!(step(&mut s), Some((vec![], vec![0], vec![0])));
    assert_eq!(step(&mut s).unwrap().0, vec![(1, 0, 10)]);
}

#[test]
fn chunked_mixes_decodes_with_prompt_chunks() {
    let policy = FusedPolicy::Chunked { chunk_tokens: 32 };
    let mut s = FusedScheduler::new(policy, limits());
    s.submit(lens(20, 3), r(0));
    s.submit(lens(50, 2), r(1));
    // Step 1: 20 tokens of prompt 0, then 12 of prompt 1.
    assert_eq!(step(&mut s), Some((vec![(0, 0, 20), (1, 0, 12)], vec![], vec![])));
    // Step 2: request 0 decodes (1 token of budget), prompt 1 continues with 31.
    assert_eq!(step(&mut s), Some((vec![(1, 12, 31)], vec![0], vec![])));
    // Step 3: the last 7 prompt tokens ride with request 0's final decode.
    assert_eq!(step(&mut s), Some((vec![(1, 43, 7)], vec![0], vec![0])));
    assert_eq!(step(&mut s), Some((vec![], vec![1], vec![1])));
    assert_eq!(step(&mut s), None);
}

#[test]
fn single_token_outputs_finish_at_prefill_end() {
    let mut s = FusedScheduler::new(FusedPolicy::PrefillFirst, limits());
    s.submit(lens(10, 1), r(0));
    assert_eq!(step(&mut s), Some((vec![(0, 0, 10)], vec![], vec![0])));
    assert_eq!(s.load(), 0);
}

#[test]
fn kv_capacity_holds_prompts_back() {
    let l = FusedLimits { kv_capacity_tokens: 25, ..limits() };
    let mut s = FusedScheduler::new(FusedPolicy::PrefillFirst, l);
    s.submit(lens(10, 3), r(0));
    s.submit(lens(10, 3), r(1));
    assert_eq!(step(&mut s).unwrap().0, vec![(0, 0, 10)], "13 + 13 > 25: one at a time");
    assert_eq!(step(&mut s).unwrap().1, vec![0]);
    assert_eq!(step(&mut s), Some((vec![], vec![0], vec![0])));
    assert_eq!(step(&mut s).unwrap().0, vec![(1, 0, 10)]);
}

#[test]
fn callbacks_stamp_each_phase_once() {
    let mut s = FusedScheduler::new(FusedPolicy::PrefillFirst, limits());
    s.submit(lens(10, 3), r(0));
    step(&mut s);
    step(&mut s);
    let done = loop {
        let mut plan = StepPlan::default();
        assert!(s.plan(&mut plan, |_| {}, |_| {}));
        let c = s.complete(&[], |_| {});
        if !c.finished.is_empty() {
            break c.finished;
        }
    };
    let p = &done[0].payload;
    assert!(p.prefill_started && p.prefill_ended && p.decode_started);
}

#[test]
fn a_failure_drains_started_requests_and_keeps_the_queue() {
    let limits = FusedLimits { prefill_token_budget: 10, max_batch: 8, kv_capacity_tokens: 100 };
    let mut s: FusedScheduler<R> = FusedScheduler::new(FusedPolicy::PrefillFirst, limits);
    s.submit(SeqLens { prompt_tokens: 8, output_tokens: 4 }, r(1));
    s.submit(SeqLens { prompt_tokens: 8, output_tokens: 4 }, r(2));
    let mut plan = StepPlan::default();
    assert!(s.plan(&mut plan, |_| {}, |_| {}));
    assert_eq!(s.kv().used(), 12);
    assert_eq!(s.drain_started().iter().map(|x| x.id).collect::<Vec<_>>(), vec![1]);
    assert_eq!((s.kv().used(), s.waiting()), (0, 1));
    assert!(s.plan(&mut plan, |_| {}, |_| {}), "the scheduler plans again after a failure");
    assert_eq!(s.drain_all().iter().map(|x| x.id).collect::<Vec<_>>(), vec![2]);
    assert_eq!(s.load(), 0);
}
