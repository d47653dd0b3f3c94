//! What a step pays after a pause: the wake-up charge of calibration profiles.
//!
//! On a KVM guest the first step after a pause runs slower the longer the pause (on a 2-vCPU
//! Xeon with AMX, +10 ms after 200 ms and +60–75 ms after several seconds): the host takes
//! memory that sat idle out of its page tables, and the next touch of each page goes through
//! the hypervisor. Part of that memory is the worker's own (its threads, stacks, buffers) and
//! part is shared by every worker of the process (the weights), which another worker stepping
//! through the pause keeps in use: in the executed split runs of 2026-11-30 20:00–20:39 UTC,
//! the one-thread prefill worker paid +0–16 ms after 0.1–1 s of its own idle while the decode
//! worker had just computed, where `calibrate`, with the whole process idle, read +18–32 ms.

use serde::Serialize;

/// A step after the worker sat idle at least `after_idle_ms` takes `extra_ms` longer: what
/// `pdsim calibrate` measures when a CPU worker's threads have gone to sleep (on the build
/// machine, 10–17 ms for a two-thread pool after a pause of 100 ms or more; nothing for one
/// thread). Where the charge grows with the pause, `by_pause` holds it measured after several
/// pauses, (pause ms, extra ms) by increasing pause: a step after `idle` ms pays the linear
/// interpolation between them, the first one's below it and the last one's beyond it (on a
/// 2-vCPU Xeon with AMX the charge kept growing for seconds: see `WAKE_LONGER_PAUSES_MS` in
/// `calibrate`).
///
/// `beside_by_pause`, where measured, is the same curve with another engine computing through
/// the pause (and stopped just before the step): the worker's own part of the wake-up. A step
/// whose worker sat idle `p` while the machine's last computing ended `q ≤ p` before it pays
/// its own part after `p` and the shared part after `q`: `beside(p) + alone(q) − beside(q)`,
/// the whole `alone(p)` when nothing computed through the pause and `beside(p)` when something
/// computed up to its end.
///
/// `by_step_tokens`, where measured, says how much more (or less) than the probe a step of
/// other sizes pays after the shortest pause, `(tokens in the step, ms)` by increasing tokens,
/// the probe's own size at 0: interpolated in log tokens, the ends' values beyond them, and
/// added to the charge (never below 0). On the AMX Xeon in a calm hour a two-thread pool paid
/// +0–3 ms after a pause for 16–32-token prompts, +8–10 for 64 and +13–17 for 256–512, the
/// fused runs' prompts likewise (−1 to +5 ms, +6–8 and +13–21).
///
/// `decode_after`, where measured, says how much slower the decode steps just after the wake
/// step run than those well after it, `(k, fraction)` by increasing k for the k-th step after
/// it: interpolated, the first point's fraction below it, nothing beyond the last. The machine
/// does not come back at once: in the executed runs of 2026-12-01 00:34–03:18 UTC (seven
/// rounds, 2-vCPU Xeon with AMX) the fused worker's batch-1 decode steps after a pause and a
/// prefill ran +4–17% over the steps 50 and more after it at the first, +1–8% at the eighth
/// and +0.5–3.5% at the 9th–19th; the split decode worker's +1–7% at the first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wake {
    pub after_idle_ms: f64,
    pub extra_ms: f64,
    pub by_pause: Vec<(f64, f64)>,
    pub beside_by_pause: Vec<(f64, f64)>,
    pub by_step_tokens: Vec<(f64, f64)>,
    pub decode_after: Vec<(f64, f64)>,
}

impl Wake {
    /// The charge at one pause, the same after any pause from `after_idle_ms` on.
    pub fn flat(after_idle_ms: f64, extra_ms: f64) -> Wake {
        Wake {
            after_idle_ms,
            extra_ms,
            by_pause: Vec::new(),
            beside_by_pause: Vec::new(),
            by_step_tokens: Vec::new(),
            decode_after: Vec::new(),
        }
    }

    /// Whether a step after its worker sat idle `idle_ns` (`u64::MAX`: its first step) is a
    /// wake step: one that pays the charge.
    pub fn wakes(&self, idle_ns: u64) -> bool {
        idle_ns as f64 >= self.after_idle_ms * 1e6
    }

    /// How much slower, as a fraction, a decode step `k` steps after its worker's wake step runs
    /// (the wake step itself is 0; it pays [`Wake::extra_on_machine`]).
    pub fn decode_after(&self, k: u64) -> f64 {
        match self.decode_after.last() {
            Some(&(last, _)) if k >= 1 && k as f64 <= last => curve(&self.decode_after, 0.0, k as f64),
            _ => 0.0,
        }
    }

    /// What a step pays after its worker sat idle `idle_ms` with the whole machine idle too.
    pub fn extra(&self, idle_ms: f64) -> f64 {
        if idle_ms < self.after_idle_ms {
            return 0.0;
        }
        curve(&self.by_pause, self.extra_ms, idle_ms)
    }

    /// What a step pays after its worker sat idle `idle_ms`, the machine's last other
    /// computing having ended `machine_idle_ms` before it (0 while something computes; at most
    /// `idle_ms`, since the worker's own last step counts as the machine's).
    pub fn extra_on_machine(&self, idle_ms: f64, machine_idle_ms: f64) -> f64 {
        let alone = self.extra(idle_ms);
        if self.beside_by_pause.is_empty() || alone == 0.0 {
            return alone;
        }
        let own = curve(&self.beside_by_pause, self.extra_ms, idle_ms).min(alone);
        let q = machine_idle_ms.min(idle_ms);
        let shared = (self.extra(q) - self.own_at(q)).max(0.0);
        (own + shared).min(alone)
    }

    /// What a worker's first step pays: its threads have not run, the machine has (execute mode
    /// warms up just before the clock starts), so the charge after the shortest pause.
    pub fn first_step(&self, machine_idle_ms: f64) -> f64 {
        let shortest = self.by_pause.first().map_or(self.after_idle_ms, |&(pause, _)| pause);
        self.extra_on_machine(shortest, machine_idle_ms)
    }

    /// `charge` (what [`Wake::extra_on_machine`] or [`Wake::first_step`] gives) for a step of
    /// `tokens` tokens (prompt tokens and decode sequences): nothing after no pause.
    pub fn for_step(&self, charge: f64, tokens: u64) -> f64 {
        if charge == 0.0 || self.by_step_tokens.is_empty() {
            return charge;
        }
        let log = |t: f64| t.max(1.0).ln();
        (charge + curve_by(&self.by_step_tokens, 0.0, log(tokens as f64), log)).max(0.0)
    }

    /// The worker's own part after `idle_ms` (none before the threads sleep).
    fn own_at(&self, idle_ms: f64) -> f64 {
        if idle_ms < self.after_idle_ms {
            return 0.0;
        }
        curve(&self.beside_by_pause, self.extra_ms, idle_ms).min(self.extra(idle_ms))
    }
}

/// A worker's steps since its last wake step, for [`Wake::decode_after`]: the simulated engine
/// and `compare`'s reading of a run's pace count them alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinceWake(u64);

impl SinceWake {
    /// The factor on the worker's next step, which follows `idle_ns` of idle (`u64::MAX`: its
    /// first); `decode`: a step with no prompt in it.
    pub fn next(&mut self, w: &Wake, idle_ns: u64, decode: bool) -> f64 {
        self.0 = if w.wakes(idle_ns) { 0 } else { self.0.saturating_add(1) };
        if decode {
            1.0 + w.decode_after(self.0)
        } else {
            1.0
        }
    }
}

/// The linear interpolation of `points` (by increasing first value) at `x`: the first point's
/// value below it, the last one's beyond it, `flat` when there are none.
pub(super) fn curve(points: &[(f64, f64)], flat: f64, x: f64) -> f64 {
    curve_by(points, flat, x, |at| at)
}

/// [`curve`] with the points' first values mapped by `key` (increasing) first, `x` already
/// mapped: a step's charge by size interpolates in log tokens, without a copy of the points on
/// every step.
fn curve_by(points: &[(f64, f64)], flat: f64, x: f64, key: impl Fn(f64) -> f64) -> f64 {
    match points.iter().position(|&(at, _)| key(at) > x) {
        _ if points.is_empty() => flat,
        Some(0) => points[0].1,
        None => points[points.len() - 1].1,
        Some(i) => {
            let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
            let (x0, x1) = (key(x0), key(x1));
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve_of(by_pause: Vec<(f64, f64)>) -> Wake {
        Wake { by_pause, ..Wake::flat(100.0, 10.0) }
    }

    #[test]
    fn a_wake_up_measured_after_several_pauses_is_interpolated_between_them() {
        let w = curve_of(vec![(300.0, 10.0), (1000.0, 24.0), (3000.0, 64.0)]);
        assert_eq!(w.extra(99.0), 0.0, "before the threads sleep");
        assert_eq!(w.extra(100.0), 10.0, "the first pause's charge below it");
        assert_eq!(w.extra(300.0), 10.0);
        assert!((w.extra(650.0) - 17.0).abs() < 1e-12);
        assert!((w.extra(2000.0) - 44.0).abs() < 1e-12);
        assert_eq!(w.extra(3000.0), 64.0);
        assert_eq!(w.extra(60_000.0), 64.0, "the last pause's charge beyond it");
        assert_eq!(Wake::flat(100.0, 10.0).extra(60_000.0), 10.0);
    }

    #[test]
    fn without_a_curve_beside_the_machine_does_not_matter() {
        let w = curve_of(vec![(300.0, 10.0), (3000.0, 64.0)]);
        for q in [0.0, 500.0, 3000.0] {
            assert_eq!(w.extra_on_machine(3000.0, q), 64.0);
        }
    }

    #[test]
    fn another_worker_computing_through_the_pause_leaves_the_own_part() {
        let w = Wake {
            beside_by_pause: vec![(300.0, 2.0), (3000.0, 20.0)],
            ..curve_of(vec![(300.0, 10.0), (3000.0, 64.0)])
        };
        // Something computed up to the step: only the worker's own part.
        assert_eq!(w.extra_on_machine(3000.0, 0.0), 20.0);
        // Nothing computed since the worker's own last step: the whole charge.
        assert_eq!(w.extra_on_machine(3000.0, 3000.0), 64.0);
        assert_eq!(w.extra_on_machine(3000.0, 1e9), 64.0, "the machine idles no longer than the worker");
        // The machine idle 300 ms: own after 3 s, and the shared part after 300 ms (10 − 2).
        assert_eq!(w.extra_on_machine(3000.0, 300.0), 28.0);
        // Under `after_idle_ms` nothing is charged, whatever the machine did.
        assert_eq!(w.extra_on_machine(99.0, 0.0), 0.0);
        assert_eq!(w.extra_on_machine(99.0, 99.0), 0.0);
    }

    #[test]
    fn a_step_pays_more_or_less_than_the_probe_by_its_size() {
        let w = Wake { by_step_tokens: vec![(16.0, -6.0), (64.0, 0.0), (256.0, 4.0)], ..Wake::flat(100.0, 8.0) };
        assert_eq!(w.for_step(8.0, 64), 8.0);
        assert_eq!(w.for_step(8.0, 16), 2.0);
        assert_eq!(w.for_step(8.0, 4), 2.0, "below the smallest probe, its value");
        assert_eq!(w.for_step(8.0, 1024), 12.0, "beyond the largest, its value");
        // Halfway between 64 and 256 tokens in log tokens: 128.
        assert!((w.for_step(8.0, 128) - 10.0).abs() < 1e-9);
        assert_eq!(w.for_step(5.0, 16), 0.0, "never below nothing");
        assert_eq!(w.for_step(0.0, 256), 0.0, "no pause, no charge");
        assert_eq!(Wake::flat(100.0, 8.0).for_step(8.0, 16), 8.0, "not measured: the probe's charge");
    }

    #[test]
    fn the_own_part_never_exceeds_the_whole() {
        // A noisy calibration can read more beside than alone: the charge stays the whole one.
        let w = Wake { beside_by_pause: vec![(300.0, 30.0)], ..curve_of(vec![(300.0, 10.0), (3000.0, 64.0)]) };
        assert_eq!(w.extra_on_machine(300.0, 0.0), 10.0);
        assert_eq!(w.extra_on_machine(3000.0, 0.0), 30.0);
        assert_eq!(w.extra_on_machine(3000.0, 3000.0), 64.0);
    }

    #[test]
    fn decode_steps_just_after_the_wake_step_run_slower() {
        let w = Wake { decode_after: vec![(1.0, 0.2), (3.0, 0.1), (10.0, 0.02)], ..Wake::flat(100.0, 8.0) };
        assert_eq!(w.decode_after(0), 0.0, "the wake step pays the charge instead");
        assert_eq!(w.decode_after(1), 0.2);
        assert!((w.decode_after(2) - 0.15).abs() < 1e-12);
        assert_eq!(w.decode_after(10), 0.02);
        assert_eq!(w.decode_after(11), 0.0, "beyond the last step measured");
        assert_eq!(Wake::flat(100.0, 8.0).decode_after(1), 0.0, "not measured");
        assert!(w.wakes(100_000_000) && w.wakes(u64::MAX) && !w.wakes(99_999_999));
    }
}
