//! The fitted cost model: DistServe's polynomial form.
//!
//! prefill(ms) = base + per_token · ΣL + per_token_sq · ΣL²
//! decode(ms)  = base + per_ctx_token · Σctx + per_seq · B
//!
//! A mixed step (chunked prefill) costs both parts with one fixed overhead: the larger base.
//! Calibration profiles replace the decode plane by lines measured per batch size
//! ([`BatchLines`]).

use super::batch_lines::BatchLines;
use super::noise::Noise;
pub use super::wake::Wake;
use crate::engine::step::StepShape;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillCoeffs {
    pub base_ms: f64,
    pub per_token_ms: f64,
    pub per_token_sq_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeCoeffs {
    pub base_ms: f64,
    pub per_ctx_token_ms: f64,
    pub per_seq_ms: f64,
}

/// Coefficients, optionally with a second decode regime for large batches (DistServe fits
/// batches of ≥ 95 separately), and a wake-up charge after idle time.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCost {
    pub prefill: PrefillCoeffs,
    pub decode: DecodeCoeffs,
    pub large_batch_decode: Option<(u64, DecodeCoeffs)>,
    /// Decode time per measured batch size (calibration profiles): when present, decode steps
    /// take it instead of `decode` and `large_batch_decode`.
    pub decode_by_batch: Option<BatchLines>,
    pub wake: Option<Wake>,
    pub co_run: Option<CoRun>,
    /// The machine's unsteadiness (calibration profiles): applied per worker by the simulated
    /// engine, which keeps the process's state; `step_ms` is the median time.
    pub noise: Option<Noise>,
}

/// How much slower steps run while another worker computes on the same machine (shared memory
/// bandwidth and caches): prefill and decode steps × (1 + the factor), measured by `pdsim
/// calibrate` with another engine decoding or prefilling beside the timed one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CoRun {
    pub prefill: f64,
    pub decode: f64,
    /// A prefill's factor while the other worker runs a single-sequence decode step, when
    /// measured (`prefill` otherwise): a batch-1 decode streams the weights through a
    /// matrix-vector kernel and contends for memory far more than a batch does.
    pub prefill_beside_single: Option<f64>,
}

impl LinearCost {
    /// Every prefill coefficient × `prefill`, every decode coefficient × `decode`.
    pub fn scaled(&self, prefill: f64, decode: f64) -> LinearCost {
        let p = |c: PrefillCoeffs| PrefillCoeffs {
            base_ms: c.base_ms * prefill,
            per_token_ms: c.per_token_ms * prefill,
            per_token_sq_ms: c.per_token_sq_ms * prefill,
        };
        let d = |c: DecodeCoeffs| DecodeCoeffs {
            base_ms: c.base_ms * decode,
            per_ctx_token_ms: c.per_ctx_token_ms * decode,
            per_seq_ms: c.per_seq_ms * decode,
        };
        LinearCost {
            prefill: p(self.prefill),
            decode: d(self.decode),
            large_batch_decode: self.large_batch_decode.map(|(n, c)| (n, d(c))),
            decode_by_batch: self.decode_by_batch.as_ref().map(|l| l.scaled(decode)),
            ..self.clone()
        }
    }

    pub fn step_ms(&self, s: &StepShape) -> f64 {
        let p = &self.prefill;
        let prefill_var = p.per_token_ms * s.prefill_tokens as f64 + p.per_token_sq_ms * s.prefill_tokens_sq as f64;
        let (decode_base, decode_var) = self.decode_parts(s.decode_seqs, s.decode_context);
        let wake = match &self.wake {
            // A worker's first step: its threads have not run, the machine has (execute mode
            // warms up just before the clock starts): the charge after the shortest pause.
            Some(w) => {
                let machine = s.machine_idle_ns.map_or(f64::INFINITY, |ns| ns as f64 / 1e6);
                let charge = match s.idle_ns {
                    u64::MAX => w.first_step(machine),
                    ns => w.extra_on_machine(ns as f64 / 1e6, machine),
                };
                w.for_step(charge, s.tokens())
            }
            None => 0.0,
        };
        let (fp, fd) = match self.co_run {
            Some(c) if s.co_running > 0 => {
                let prefill = match c.prefill_beside_single {
                    Some(f) if s.beside_single_decode => f,
                    _ => c.prefill,
                };
                (1.0 + prefill, 1.0 + c.decode)
            }
            _ => (1.0, 1.0),
        };
        match (s.prefill_seqs > 0, s.decode_seqs > 0) {
            (true, false) => wake + (p.base_ms + prefill_var) * fp,
            (false, true) => wake + (decode_base + decode_var) * fd,
            (true, true) => wake + (p.base_ms.max(decode_base) + prefill_var + decode_var) * fp.max(fd),
            (false, false) => 0.0,
        }
    }

    /// A decode part of `seqs` sequences over `ctx_sum` context tokens: (fixed, variable) ms.
    fn decode_parts(&self, seqs: u64, ctx_sum: u64) -> (f64, f64) {
        if let Some(lines) = &self.decode_by_batch {
            return lines.parts(seqs, ctx_sum);
        }
        let d = match self.large_batch_decode {
            Some((threshold, ref large)) if seqs >= threshold => large,
            _ => &self.decode,
        };
        (d.base_ms, d.per_ctx_token_ms * ctx_sum as f64 + d.per_seq_ms * seqs as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> LinearCost {
        LinearCost {
            prefill: PrefillCoeffs { base_ms: 10.0, per_token_ms: 0.1, per_token_sq_ms: 0.001 },
            decode: DecodeCoeffs { base_ms: 5.0, per_ctx_token_ms: 0.01, per_seq_ms: 0.5 },
            large_batch_decode: Some((4, DecodeCoeffs { base_ms: 1.0, per_ctx_token_ms: 0.0, per_seq_ms: 0.0 })),
            decode_by_batch: None,
            wake: Some(Wake::flat(100.0, 15.0)),
            co_run: Some(CoRun { prefill: 0.5, decode: 0.25, prefill_beside_single: Some(1.0) }),
            noise: None,
        }
    }

    #[test]
    fn prefill_decode_and_mixed() {
        let m = model();
        let prefill = StepShape { prefill_seqs: 2, prefill_tokens: 30, prefill_tokens_sq: 500, ..Default::default() };
        assert!((m.step_ms(&prefill) - (10.0 + 3.0 + 0.5)).abs() < 1e-12);
        let decode = StepShape { decode_seqs: 2, decode_context: 100, ..Default::default() };
        assert!((m.step_ms(&decode) - (5.0 + 1.0 + 1.0)).abs() < 1e-12);
        let mixed = StepShape { decode_seqs: 2, decode_context: 100, ..prefill };
        assert!((m.step_ms(&mixed) - (10.0 + 3.5 + 2.0)).abs() < 1e-12);
        let big = StepShape { decode_seqs: 4, decode_context: 100, ..Default::default() };
        assert_eq!(m.step_ms(&big), 1.0);
    }

    #[test]
    fn lines_per_batch_size_replace_the_decode_plane() {
        use crate::engine::sim::batch_lines::{BatchLine, BatchLines};
        let lines = BatchLines::new(vec![
            BatchLine { batch: 1, base_ms: 4.0, per_ctx_token_ms: 0.01 },
            BatchLine { batch: 2, base_ms: 6.0, per_ctx_token_ms: 0.01 },
        ])
        .unwrap();
        let m = LinearCost { decode_by_batch: Some(lines), ..model() };
        // Batch 4 is past the large-batch threshold: the lines still decide (extrapolated).
        let decode = StepShape { decode_seqs: 4, decode_context: 400, ..Default::default() };
        assert!((m.step_ms(&decode) - (10.0 + 4.0)).abs() < 1e-12);
        // A mixed step shares the larger fixed part: prefill's 10 against decode's 6.
        let mixed = StepShape {
            prefill_seqs: 1,
            prefill_tokens: 10,
            prefill_tokens_sq: 100,
            decode_seqs: 2,
            decode_context: 200,
            ..Default::default()
        };
        assert!((m.step_ms(&mixed) - (10.0 + 1.1 + 2.0)).abs() < 1e-12);
        // Scaling a model scales its lines.
        assert!((m.scaled(1.0, 2.0).step_ms(&decode) - 28.0).abs() < 1e-12);
    }

    #[test]
    fn a_step_after_a_pause_pays_the_wake_up() {
        let m = model();
        let s = StepShape { decode_seqs: 4, decode_context: 100, idle_ns: 99_999_999, ..Default::default() };
        assert_eq!(m.step_ms(&s), 1.0);
        assert_eq!(m.step_ms(&StepShape { idle_ns: 100_000_000, ..s }), 16.0);
        assert_eq!(m.step_ms(&StepShape { idle_ns: u64::MAX, ..Default::default() }), 0.0, "no step, no charge");
    }

    #[test]
    fn a_wake_up_measured_after_several_pauses_is_charged_by_the_pause() {
        let w = Wake { by_pause: vec![(300.0, 10.0), (1000.0, 24.0), (3000.0, 64.0)], ..Wake::flat(100.0, 10.0) };
        let m = LinearCost { wake: Some(w.clone()), ..model() };
        let s = StepShape { decode_seqs: 4, decode_context: 100, idle_ns: 2_000_000_000, ..Default::default() };
        assert!((m.step_ms(&s) - 45.0).abs() < 1e-12);
        // A worker's first step pays the charge after the shortest pause, not the longest.
        assert_eq!(m.step_ms(&StepShape { idle_ns: u64::MAX, ..s }), 11.0);
        // With the worker's own part measured, a neighbour computing up to the step leaves it.
        let beside = Wake { beside_by_pause: vec![(300.0, 2.0), (3000.0, 12.0)], ..w };
        let m = LinearCost { wake: Some(beside), ..model() };
        assert!(
            (m.step_ms(&StepShape { machine_idle_ns: Some(0), ..s }) - (1.0 + 2.0 + 10.0 * 1700.0 / 2700.0)).abs()
                < 1e-9
        );
        assert!((m.step_ms(&s) - 45.0).abs() < 1e-12);
    }

    #[test]
    fn steps_beside_another_worker_run_slower() {
        let m = model();
        let prefill = StepShape { prefill_seqs: 2, prefill_tokens: 30, prefill_tokens_sq: 500, ..Default::default() };
        assert!((m.step_ms(&StepShape { co_running: 1, ..prefill }) - 13.5 * 1.5).abs() < 1e-12);
        let decode = StepShape { decode_seqs: 2, decode_context: 100, co_running: 2, ..Default::default() };
        assert!((m.step_ms(&decode) - 7.0 * 1.25).abs() < 1e-12);
        // Beside a single-sequence decode a prefill takes its own factor (here 1.0: × 2).
        let beside_single = StepShape { co_running: 1, beside_single_decode: true, ..prefill };
        assert!((m.step_ms(&beside_single) - 13.5 * 2.0).abs() < 1e-12);
        // A decode step's factor does not depend on what is beside it.
        assert!((m.step_ms(&StepShape { beside_single_decode: true, ..decode }) - 7.0 * 1.25).abs() < 1e-12);
    }
}
