//! The behaviour pdsim exists to show, checked on the simulator with the shipped cost model
//! (A100 × Llama-2-7B roofline), not with numbers picked to pass.

use pdsim::scenario::TopologyKind;
use pdsim::workload::{Source, StopAfter};

use crate::common::{run, shipped};

/// Long prompts stall a fused worker's decodes; a split decode worker never sees a prefill.
#[test]
fn prefill_interference_raises_fused_tpot_tail_on_heavy_light() {
    let mut s = shipped("sim/heavy_light.toml");
    s.workload.stop = StopAfter::Requests(1000);
    let fused = run(&s, "fused").summary;
    let split = run(&s, "split").summary;
    let (f, p) = (fused.tpot_ms.unwrap().p90, split.tpot_ms.unwrap().p90);
    assert!(f > 1.3 * p, "fused p90 TPOT {f:.2} ms vs split {p:.2} ms");
    // The prefill-only iterations are what interrupts the fused decodes.
    assert!(fused.completed == 1000 && split.completed == 1000);
}

/// With one decode worker for a decode-heavy load, split loses: four fused workers decode on
/// four GPUs, while 3P + 1D leaves three mostly idle prefill GPUs and one overloaded decoder.
#[test]
fn split_with_too_few_decode_workers_loses_to_fused() {
    let mut s = shipped("sim/light_heavy.toml");
    s.workload.stop = StopAfter::Requests(1000);
    if let Source::Synthetic { arrival, .. } = &mut s.workload.source {
        *arrival = pdsim::workload::arrival::ArrivalPattern::Poisson { rate_per_s: 8.0 };
    }
    for t in &mut s.topologies {
        match &mut t.kind {
            TopologyKind::Fused { workers, .. } => *workers = 4,
            TopologyKind::Split { prefill_workers, .. } => *prefill_workers = 3,
        }
    }
    // A TPOT objective of 15 ms: ~50% above what four fused workers reach at p90 here.
    s.slo.tpot_ms = 15.0;
    let fused = run(&s, "fused").summary;
    let split = run(&s, "split").summary;
    let (f, p) = (fused.tpot_ms.unwrap().p90, split.tpot_ms.unwrap().p90);
    assert!(p > 1.5 * f, "split p90 TPOT {p:.2} ms should exceed fused {f:.2} ms");
    assert!(split.e2e_ms.unwrap().p90 > fused.e2e_ms.unwrap().p90);
    assert!(
        split.slo_attainment < fused.slo_attainment,
        "attainment: split {} vs fused {}",
        split.slo_attainment,
        fused.slo_attainment
    );
}

fn with_link_slowed(factor: f64) -> pdsim::scenario::Scenario {
    let mut s = shipped("sim/heavy_light.toml");
    s.workload.stop = StopAfter::Requests(300);
    for t in &mut s.topologies {
        if let TopologyKind::Split { link: Some(l), .. } = &mut t.kind {
            l.bandwidth_bytes_per_s /= factor;
        }
    }
    s
}

/// A slower KV link that still keeps up only adds to TPOT: the transfer sits between the
/// first token and the first decode step.
#[test]
fn a_slower_link_raises_tpot_not_ttft() {
    let fast = run(&with_link_slowed(1.0), "split").summary;
    let slow = run(&with_link_slowed(2.0), "split").summary;
    assert!(slow.kv_transfer_ms.unwrap().p50 > 1.8 * fast.kv_transfer_ms.unwrap().p50);
    assert!(slow.tpot_ms.unwrap().p50 > fast.tpot_ms.unwrap().p50);
    assert_eq!(slow.ttft_ms.unwrap().p50, fast.ttft_ms.unwrap().p50);
}

/// A link that cannot keep up (10 Gb/s for ~1 GB of KV per request at 4 req/s) backs up into
/// the prefill worker: its KV stays put, its capacity fills, prompts queue, and TTFT explodes.
/// Nothing is dropped.
#[test]
fn a_saturated_link_backs_up_into_prefill() {
    let fast = run(&with_link_slowed(1.0), "split").summary;
    let jammed = run(&with_link_slowed(20.0), "split").summary;
    assert_eq!(jammed.completed, 300);
    assert!(jammed.ttft_ms.unwrap().p50 > 10.0 * fast.ttft_ms.unwrap().p50);
    assert!(jammed.queue_ms.unwrap().p90 > 1000.0);
}
