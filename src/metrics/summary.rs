//! The per-topology summary: counts, throughput, latency percentiles and SLO attainment.

use std::collections::BTreeMap;

use serde::Serialize;

use super::format::{csv_field, f3, share};
use super::outcome::DropReason;
use super::percentile::Spread;
use super::record::RequestRecord;
use super::steady::Steady;

/// Service-level objectives a request is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    /// Share of requests that must meet both for the topology to pass (e.g. 0.9).
    pub attainment: f64,
}

impl Slo {
    pub fn ttft_met(&self, r: &RequestRecord) -> bool {
        r.ttft_ns() as f64 <= self.ttft_ms * 1e6
    }

    /// One-token outputs have no TPOT and meet the TPOT objective trivially.
    pub fn tpot_met(&self, r: &RequestRecord) -> bool {
        r.tpot_ns().is_none_or(|t| t <= self.tpot_ms * 1e6)
    }
}

/// Collects what the summary needs, one request at a time (a few numbers per request).
#[derive(Debug)]
pub struct Accumulator {
    slo: Slo,
    ttft_ms: Vec<f64>,
    tpot_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
    queue_ms: Vec<f64>,
    kv_transfer_ms: Vec<f64>,
    completed: u64,
    rejected: u64,
    failed: u64,
    retries: u64,
    worker_failures: u64,
    dropped: BTreeMap<DropReason, u64>,
    output_tokens: u64,
    decoded_tokens: u64,
    kv_bytes: u64,
    first_arrival_ns: u64,
    last_end_ns: u64,
    met_ttft: u64,
    met_tpot: u64,
    met_both: u64,
    steady: Steady,
}

impl Accumulator {
    pub fn new(slo: Slo) -> Accumulator {
        Accumulator {
            slo,
            ttft_ms: Vec::new(),
            tpot_ms: Vec::new(),
            e2e_ms: Vec::new(),
            queue_ms: Vec::new(),
            kv_transfer_ms: Vec::new(),
            completed: 0,
            rejected: 0,
            failed: 0,
            retries: 0,
            worker_failures: 0,
            dropped: BTreeMap::new(),
            output_tokens: 0,
            decoded_tokens: 0,
            kv_bytes: 0,
            first_arrival_ns: u64::MAX,
            last_end_ns: 0,
            met_ttft: 0,
            met_tpot: 0,
            met_both: 0,
            steady: Steady::default(),
        }
    }

    pub fn add(&mut self, r: &RequestRecord) {
        self.completed += 1;
        self.retries += u64::from(r.retries);
        self.ttft_ms.push(r.ttft_ns() as f64 / 1e6);
        if let Some(t) = r.tpot_ns() {
            self.tpot_ms.push(t / 1e6);
        }
        self.e2e_ms.push(r.e2e_ns() as f64 / 1e6);
        self.queue_ms.push(r.queue_ns() as f64 / 1e6);
        if let Some(k) = r.kv_transfer_ns() {
            self.kv_transfer_ms.push(k as f64 / 1e6);
        }
        self.output_tokens += r.token_count;
        self.decoded_tokens += r.token_count.saturating_sub(1);
        self.kv_bytes += r.kv_bytes;
        self.first_arrival_ns = self.first_arrival_ns.min(r.enqueue_ns());
        self.last_end_ns = self.last_end_ns.max(r.end_ns);
        let (a, b) = (self.slo.ttft_met(r), self.slo.tpot_met(r));
        self.met_ttft += a as u64;
        self.met_tpot += b as u64;
        self.met_both += (a && b) as u64;
        self.steady.completed(r.enqueue_ns(), r.end_ns, a && b);
    }

    /// A request that was rejected or failed at `at_ns`. It counts against SLO attainment (it
    /// met no objective) but has no latencies; the makespan runs until it was given up, so that
    /// a topology whose workers died does not show the throughput of its first seconds.
    pub fn add_dropped(&mut self, r: &RequestRecord, reason: DropReason, at_ns: u64) {
        if reason.is_rejection() {
            self.rejected += 1;
        } else {
            self.failed += 1;
        }
        self.retries += u64::from(r.retries);
        *self.dropped.entry(reason).or_default() += 1;
        self.steady.dropped(r.enqueue_ns());
        self.first_arrival_ns = self.first_arrival_ns.min(r.enqueue_ns());
        self.last_end_ns = self.last_end_ns.max(at_ns);
    }

    /// A worker crashed or its engine failed.
    pub fn add_worker_failure(&mut self) {
        self.worker_failures += 1;
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Requests whose outcome is known: completed, rejected or failed.
    pub fn settled(&self) -> u64 {
        self.completed + self.rejected + self.failed
    }

    pub fn finish(mut self, topology: TopologyInfo) -> Summary {
        let makespan_ns = self.last_end_ns.saturating_sub(self.first_arrival_ns.min(self.last_end_ns));
        let per_s = |x: u64| {
            if makespan_ns == 0 {
                0.0
            } else {
                x as f64 * 1e9 / makespan_ns as f64
            }
        };
        // Shares are of every arrival: a rejected or failed request met no objective.
        let arrived = self.settled();
        let share_of = |x: u64| {
            if arrived == 0 {
                0.0
            } else {
                x as f64 / arrived as f64
            }
        };
        let attainment = share_of(self.met_both);
        Summary {
            topology,
            arrived,
            completed: self.completed,
            rejected: self.rejected,
            failed: self.failed,
            retries: self.retries,
            worker_failures: self.worker_failures,
            dropped: self.dropped.iter().map(|(r, n)| (r.code().to_owned(), *n)).collect(),
            makespan_ns,
            throughput_req_per_s: per_s(self.completed),
            output_tokens_per_s: per_s(self.output_tokens),
            decode_tokens_per_s: per_s(self.decoded_tokens),
            ttft_ms: Spread::of(&mut self.ttft_ms),
            tpot_ms: Spread::of(&mut self.tpot_ms),
            e2e_ms: Spread::of(&mut self.e2e_ms),
            queue_ms: Spread::of(&mut self.queue_ms),
            kv_transfer_ms: Spread::of(&mut self.kv_transfer_ms),
            kv_bytes_total: self.kv_bytes,
            slo: self.slo,
            slo_ttft_attainment: share_of(self.met_ttft),
            slo_tpot_attainment: share_of(self.met_tpot),
            slo_attainment: attainment,
            slo_passed: attainment >= self.slo.attainment,
            slo_met_req_per_s: per_s(self.met_both),
            slo_attainment_late: self.steady.late_attainment(),
            steady_req_per_s: self.steady.steady_rate(),
        }
    }
}

/// Which topology a summary describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopologyInfo {
    pub scenario: String,
    pub topology: String,
    /// `fused` or `split`.
    pub kind: String,
    /// e.g. `2 fused, prefill_first` or `1 prefill + 1 decode, round_robin`.
    pub layout: String,
    pub workers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub topology: TopologyInfo,
    /// Every request that arrived: completed + rejected + failed.
    pub arrived: u64,
    pub completed: u64,
    /// Never started: admission or queue limit (reasons in `dropped`).
    pub rejected: u64,
    /// Lost to worker failures with no retry left.
    pub failed: u64,
    /// Restarts after a worker failure, over all requests.
    pub retries: u64,
    /// Worker crashes and engine failures (each in `events.csv`).
    pub worker_failures: u64,
    /// Rejected and failed requests by reason code.
    pub dropped: BTreeMap<String, u64>,
    pub makespan_ns: u64,
    pub throughput_req_per_s: f64,
    pub output_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub ttft_ms: Option<Spread>,
    pub tpot_ms: Option<Spread>,
    pub e2e_ms: Option<Spread>,
    pub queue_ms: Option<Spread>,
    pub kv_transfer_ms: Option<Spread>,
    pub kv_bytes_total: u64,
    pub slo: Slo,
    pub slo_ttft_attainment: f64,
    pub slo_tpot_attainment: f64,
    pub slo_attainment: f64,
    pub slo_passed: bool,
    pub slo_met_req_per_s: f64,
    /// Attainment over the last quarter of arrivals ([`Steady::late_attainment`]): for goodput,
    /// not written to the CSVs.
    #[serde(skip)]
    pub slo_attainment_late: f64,
    /// Completions per second in the middle half of the run ([`Steady::steady_rate`]): for a
    /// topology's capacity, not written to the CSVs.
    #[serde(skip)]
    pub steady_req_per_s: Option<f64>,
}

const SPREADS: [&str; 5] = ["ttft_ms", "tpot_ms", "e2e_ms", "queue_ms", "kv_transfer_ms"];

impl Summary {
    pub fn csv_header() -> String {
        let mut cols: Vec<String> = [
            "scenario",
            "topology",
            "kind",
            "layout",
            "workers",
            "arrived",
            "completed",
            "rejected",
            "failed",
            "retries",
            "worker_failures",
            "makespan_s",
            "throughput_req_per_s",
            "output_tokens_per_s",
            "decode_tokens_per_s",
        ]
        .map(String::from)
        .to_vec();
        for s in SPREADS {
            for p in ["p50", "p90", "p99", "mean"] {
                cols.push(format!("{s}_{p}"));
            }
        }
        cols.extend(
            [
                "kv_bytes_total",
                "slo_ttft_ms",
                "slo_tpot_ms",
                "slo_target",
                "slo_ttft_attainment",
                "slo_tpot_attainment",
                "slo_attainment",
                "slo_passed",
                "slo_met_req_per_s",
            ]
            .map(String::from),
        );
        cols.join(",")
    }

    pub fn csv_row(&self) -> String {
        let t = &self.topology;
        let mut f = vec![
            csv_field(&t.scenario),
            csv_field(&t.topology),
            t.kind.clone(),
            csv_field(&t.layout),
            t.workers.to_string(),
            self.arrived.to_string(),
            self.completed.to_string(),
            self.rejected.to_string(),
            self.failed.to_string(),
            self.retries.to_string(),
            self.worker_failures.to_string(),
            format!("{:.9}", self.makespan_ns as f64 / 1e9),
            f3(self.throughput_req_per_s),
            f3(self.output_tokens_per_s),
            f3(self.decode_tokens_per_s),
        ];
        for s in [self.ttft_ms, self.tpot_ms, self.e2e_ms, self.queue_ms, self.kv_transfer_ms] {
            match s {
                Some(s) => f.extend([s.p50, s.p90, s.p99, s.mean].map(|x| format!("{x:.6}"))),
                None => f.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        f.extend([
            self.kv_bytes_total.to_string(),
            self.slo.ttft_ms.to_string(),
            self.slo.tpot_ms.to_string(),
            self.slo.attainment.to_string(),
            share(self.slo_ttft_attainment),
            share(self.slo_tpot_attainment),
            share(self.slo_attainment),
            self.slo_passed.to_string(),
            f3(self.slo_met_req_per_s),
        ]);
        f.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::RequestSpec;

    fn rec(id: u64, arrival: u64, end_prefill: u64, end: u64, tokens: u64) -> RequestRecord {
        let spec =
            RequestSpec { id, arrival_ns: arrival, class: 0, prompt_tokens: 4, output_tokens: tokens, prompt: None };
        let mut r = RequestRecord::new(spec);
        r.prefill_start_ns = arrival;
        r.prefill_end_ns = end_prefill;
        r.end_ns = end;
        r.token_count = tokens;
        r
    }

    #[test]
    fn attainment_and_throughput() {
        let slo = Slo { ttft_ms: 1.0, tpot_ms: 1.0, attainment: 0.5 };
        let mut a = Accumulator::new(slo);
        a.add(&rec(0, 0, 500_000, 2_500_000, 3)); // ttft 0.5 ms, tpot 1 ms: meets both
        a.add(&rec(1, 0, 2_000_000, 2_000_000, 1)); // ttft 2 ms: misses; no tpot: meets
        let info = TopologyInfo {
            scenario: "s".into(),
            topology: "t".into(),
            kind: "fused".into(),
            layout: "1".into(),
            workers: 1,
        };
        let s = a.finish(info);
        assert_eq!(s.completed, 2);
        assert_eq!(s.makespan_ns, 2_500_000);
        assert!((s.throughput_req_per_s - 800.0).abs() < 1e-9);
        assert!((s.decode_tokens_per_s - 800.0).abs() < 1e-9);
        assert_eq!((s.slo_ttft_attainment, s.slo_tpot_attainment, s.slo_attainment), (0.5, 1.0, 0.5));
        assert!(s.slo_passed);
        assert_eq!(s.tpot_ms.unwrap().p50, 1.0);

        // A rejection counts as an arrival that met no objective.
        let mut a = Accumulator::new(slo);
        a.add(&rec(0, 0, 500_000, 2_500_000, 3));
        a.add_dropped(&rec(1, 0, 0, 0, 3), DropReason::QueueFull, 1_000_000);
        assert_eq!(a.settled(), 2);
        let info = s.topology.clone();
        let s = a.finish(info.clone());
        assert_eq!((s.arrived, s.completed, s.rejected, s.failed), (2, 1, 1, 0));
        assert_eq!(s.makespan_ns, 2_500_000, "a request given up before the last completion");
        assert_eq!(s.slo_attainment, 0.5);
        assert_eq!(s.dropped.get("queue_full"), Some(&1));
        assert_eq!(Summary::csv_header().split(',').count(), s.csv_row().split(',').count());

        // Requests given up after the last completion (every worker down) lengthen the run: its
        // throughput is what it served over the time it was asked to serve.
        let mut a = Accumulator::new(slo);
        a.add(&rec(0, 0, 500_000, 2_500_000, 3));
        a.add_dropped(&rec(1, 0, 0, 0, 3), DropReason::NoLiveWorker, 10_000_000);
        let s = a.finish(info);
        assert_eq!(s.makespan_ns, 10_000_000);
        assert!((s.throughput_req_per_s - 100.0).abs() < 1e-9);
    }
}
