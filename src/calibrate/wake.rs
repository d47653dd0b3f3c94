//! The wake-up `pdsim calibrate` measures: how much longer a step takes after its worker sat
//! idle than right after another step, after pauses of 0.3 to 8 s, with the whole process idle
//! and with another engine computing through the pause (the worker's own part), for steps of
//! several sizes, and how much slower the decode steps just after it run (see
//! [`crate::engine::sim::wake`]).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{bench, Bench, Options};
use crate::engine::candle::Model;
use crate::engine::sim::linear::Wake;
use crate::engine::step::DecodeSlot;
use crate::engine::EngineError;

/// The wake-up of `b`'s pool after each pause, alone and beside a neighbour, and by the step's
/// size after the shortest pause: `4·reps + 3` pairs after the shortest pause (of each size),
/// `reps + 2` after each longer one (one with `--quick`).
pub(super) fn measure(model: &Arc<Model>, b: &mut Bench, opts: &Options) -> Result<Wake, EngineError> {
    let samples = |pause: u64| match pause {
        WAKE_PAUSE_MS => 4 * opts.reps + 3,
        _ if opts.quick => 1,
        _ => opts.reps + 2,
    };
    let mut by_pause = Vec::new();
    for pause in std::iter::once(WAKE_PAUSE_MS).chain(WAKE_LONGER_PAUSES_MS) {
        by_pause.push((pause as f64, wake_ms(b, pause, samples(pause), None)?));
    }
    let neighbour = Neighbour::start(model);
    let mut beside_by_pause = Vec::new();
    for pause in std::iter::once(WAKE_PAUSE_MS).chain(WAKE_BESIDE_LONGER_PAUSES_MS) {
        match wake_ms(b, pause, samples(pause), Some(&neighbour)) {
            Ok(ms) => beside_by_pause.push((pause as f64, ms)),
            Err(e) => {
                neighbour.stop()?;
                return Err(e);
            }
        }
    }
    neighbour.stop()?;
    let by_step_tokens = by_step_tokens(b, samples(WAKE_PAUSE_MS))?;
    let decode_after = decode_after(b, samples(WAKE_PAUSE_MS))?;
    Ok(Wake {
        after_idle_ms: WAKE_AFTER_IDLE_MS,
        extra_ms: by_pause[0].1,
        by_pause,
        beside_by_pause,
        by_step_tokens,
        decode_after,
    })
}

/// How much slower the first [`DECODE_AFTER_STEPS`] decode steps after the shortest pause and
/// the probe's prefill run than steps well after them at the same contexts, `(k, fraction)`
/// for k = 1, 2, …: over `samples` sequences, each a prompt prefilled before the pause and
/// decoded as many steps right after the probe's, the trimmed mean of each step's ratio.
fn decode_after(b: &mut Bench, samples: usize) -> Result<Vec<(f64, f64)>, EngineError> {
    let steps = DECODE_AFTER_STEPS as usize;
    let mut fractions = vec![Vec::new(); steps];
    for _ in 0..samples {
        // The one compared with: prefilled now, decoded after the other's steps, at their
        // contexts, 25–48 steps after the wake.
        let (_, well_after) = b.prefill(&[WAKE_PROBE_TOKENS], steps + 1)?;
        std::thread::sleep(Duration::from_millis(WAKE_PAUSE_MS));
        let (_, woken) = b.prefill(&[WAKE_PROBE_TOKENS], steps + 1)?;
        let mut times = [Vec::with_capacity(steps), Vec::with_capacity(steps)];
        for (ids, times) in [&woken, &well_after].into_iter().zip(&mut times) {
            for k in 1..=steps as u64 {
                let context_tokens = WAKE_PROBE_TOKENS as u64 + k;
                times.push(b.decode(vec![DecodeSlot { request: ids[0], context_tokens }])?);
            }
            b.finish(ids);
        }
        for (k, f) in fractions.iter_mut().enumerate() {
            f.push(times[0][k] / times[1][k] - 1.0);
        }
    }
    Ok(fractions.into_iter().enumerate().map(|(k, f)| ((k + 1) as f64, trimmed_mean(f))).collect())
}

/// The decode steps after a wake-up that are timed. In the executed runs of 2026-12-01
/// 00:34–03:18 UTC on a 2-vCPU Xeon with AMX, the fused worker's batch-1 decode steps after a
/// pause and a prefill ran +4–17% over the steps 50 and more after it at the first, +1–8% at
/// the eighth, +0.5–3.5% at the 9th–19th and within 1% from the 20th.
const DECODE_AFTER_STEPS: u64 = 24;

/// How much more than the probe ([`WAKE_PROBE_TOKENS`]) a prefill of each of
/// [`WAKE_STEP_TOKENS`] pays after the shortest pause: `samples` pairs of each, the sizes taking
/// turns so that the machine's drift falls on all alike; `(tokens, ms)`, the probe's at 0.
fn by_step_tokens(b: &mut Bench, samples: usize) -> Result<Vec<(f64, f64)>, EngineError> {
    let mut extra = vec![Vec::new(); WAKE_STEP_TOKENS.len()];
    for _ in 0..samples {
        for (i, &tokens) in WAKE_STEP_TOKENS.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(WAKE_PAUSE_MS));
            extra[i].push(pair(b, tokens)?);
        }
    }
    let each: Vec<f64> = extra.into_iter().map(wake_estimate).collect();
    let probe = WAKE_STEP_TOKENS.iter().position(|&t| t == WAKE_PROBE_TOKENS).expect("the probe's size is measured");
    Ok(WAKE_STEP_TOKENS.iter().zip(&each).map(|(&t, &ms)| (t as f64, ms - each[probe])).collect())
}

/// A prefill of `tokens` right after the caller's pause, less one of the same right after it.
fn pair(b: &mut Bench, tokens: usize) -> Result<f64, EngineError> {
    let mut pair = [0.0; 2];
    for ms in &mut pair {
        let (t, ids) = b.prefill(&[tokens], 2)?;
        b.finish(&ids);
        *ms = t;
    }
    Ok(pair[0] - pair[1])
}

/// The pause before the wake-up measurement.
const WAKE_PAUSE_MS: u64 = 300;

/// Longer pauses the wake-up is also measured after (fewer pairs each: they take seconds). On a
/// 2-vCPU Xeon with AMX what a pause cost kept growing with it, and only the first step after
/// it paid (the decode step after it ran at its usual time): a 64-token prefill (70 ms) with one
/// thread took +10 ms after 200 ms idle, +20 after 850 ms, +30–80 after 1.9 s, +75 after 2.9 s,
/// +80–120 after 3.9 s, +125 after 5.9 s and +130–160 after 7.8 s; with two (58 ms) +15, +30,
/// +30–50, +50, +60, +75 and +92. The runs' prefills after 1–2 s idle paid +28–48 ms over the
/// fit, +45–75 after 2 s or more, long prompts about as much as short ones; runs of the shipped
/// scenarios wait seconds between requests. A step after a longer pause than the last is
/// charged the last one's.
const WAKE_LONGER_PAUSES_MS: [u64; 4] = [1000, 2000, 4000, 8000];

/// Longer pauses the worker's own part is measured after, with a neighbour computing through
/// them; beyond the last the last one's counts. In the executed split runs of 2026-11-30
/// 20:00–20:39 UTC (one thread each, a 2-vCPU Xeon with AMX), a worker whose neighbour had
/// computed within the last 100 ms paid +0–16 ms after 0.1–2 s of its own idle (the prefill
/// worker; the decode worker +1–5 ms) and +13–40 ms after 2 s or more, where `calibrate`, with
/// the whole process idle, read +18–52 ms.
const WAKE_BESIDE_LONGER_PAUSES_MS: [u64; 3] = [1000, 2000, 4000];

/// The prompt the wake-up is timed with. What a pause costs grows with the step for a while:
/// measured after 300 ms on the build machine, +2–8 ms for 16 tokens (a ~20 ms step), +12–14 ms
/// for 40 and +14–19 ms for 64, and +19–29 ms for 256. A 16-token probe read 0–6 ms while runs'
/// 16–64-token prefills after a pause took 1.2–1.6× the profile; 64 tokens is near the plateau.
pub(super) const WAKE_PROBE_TOKENS: usize = 64;

/// The prompt sizes the wake-up is also timed at, after the shortest pause, the probe's among
/// them. On the AMX Xeon in a calm hour (2026-11-30 22:35 UTC), after 1 s, a two-thread pool's
/// 16-, 32-, 64-, 128-, 256- and 512-token prefills paid +0.2–1.7, +1.9–2.7, +8.0–9.5,
/// +10.9–11.7, +12.9–13.6 and +13.9–16.8 ms (two passes), a one-thread pool's +1–3 ms at every
/// size; the fused runs' prompts after a pause paid −1 to +5 ms at 16–32 tokens, +6–8 at 32–128 and
/// +13–21 at 128–600, where one 64-token probe charged them all +9–11.
const WAKE_STEP_TOKENS: [usize; 3] = [16, 64, 256];

/// From how long a pause the wake-up is charged. On the build machine a two-thread pool's
/// short prefill took no longer after 50 ms idle, ~10 ms longer after 100 ms and 10–17 ms
/// after 150 ms to 1 s; a one-thread pool took no longer after any pause.
const WAKE_AFTER_IDLE_MS: f64 = 100.0;

/// How much longer a short prefill takes after the worker sat idle `pause_ms` (its pool's
/// threads asleep, their cores idle) than right after another step, over `samples` pairs of
/// the two; with `neighbour`, another engine computes through the pause and stops just before
/// the first step of each pair.
fn wake_ms(b: &mut Bench, pause_ms: u64, samples: usize, neighbour: Option<&Neighbour>) -> Result<f64, EngineError> {
    let mut extra = Vec::new();
    for _ in 0..samples {
        if let Some(n) = neighbour {
            n.compute();
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
        if let Some(n) = neighbour {
            n.hold()?;
        }
        extra.push(pair(b, WAKE_PROBE_TOKENS)?);
    }
    Ok(wake_estimate(extra))
}

/// Another engine (one thread) that decodes a sequence back to back while told to compute, as
/// a split topology's decode worker does while the prefill worker waits for prompts: its steps
/// stream the shared weights.
struct Neighbour {
    /// [`IDLE`], [`COMPUTE`] or [`QUIT`].
    state: Arc<AtomicU8>,
    /// Whether it is in a step.
    stepping: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(), EngineError>>,
}

const IDLE: u8 = 0;
const COMPUTE: u8 = 1;
const QUIT: u8 = 2;

impl Neighbour {
    fn start(model: &Arc<Model>) -> Neighbour {
        let state = Arc::new(AtomicU8::new(IDLE));
        let stepping = Arc::new(AtomicBool::new(false));
        let (m, st, busy) = (model.clone(), state.clone(), stepping.clone());
        let thread = std::thread::spawn(move || -> Result<(), EngineError> {
            let mut b = bench(&m, 1);
            let mut seq = Vec::new();
            let mut k = 0u64;
            loop {
                match st.load(Ordering::SeqCst) {
                    QUIT => return Ok(()),
                    COMPUTE => {
                        busy.store(true, Ordering::SeqCst);
                        // A fresh sequence every few hundred steps: its cache holds 512 tokens.
                        if seq.is_empty() || k >= 500 {
                            b.finish(&seq);
                            seq = b.prefill(&[128], 512)?.1;
                            k = 1;
                        }
                        b.decode(vec![DecodeSlot { request: seq[0], context_tokens: 128 + k }])?;
                        k += 1;
                    }
                    _ => {
                        busy.store(false, Ordering::SeqCst);
                        std::thread::park_timeout(Duration::from_millis(50));
                    }
                }
            }
        });
        Neighbour { state, stepping, thread }
    }

    fn compute(&self) {
        self.state.store(COMPUTE, Ordering::SeqCst);
        self.thread.thread().unpark();
    }

    /// Stops computing; returns once its last step has ended.
    fn hold(&self) -> Result<(), EngineError> {
        self.state.store(IDLE, Ordering::SeqCst);
        while self.stepping.load(Ordering::SeqCst) {
            if self.thread.is_finished() {
                return Err(EngineError::Step("the neighbour engine of the wake-up measurement stopped".into()));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn stop(self) -> Result<(), EngineError> {
        self.state.store(QUIT, Ordering::SeqCst);
        self.thread.thread().unpark();
        self.thread.join().map_err(|_| EngineError::Panicked("the neighbour engine panicked".into()))?
    }
}

/// The mean of the pairs' differences without the highest and lowest tenth, at least 0. Not
/// their median: a pause does not always cost, and the costs spread widely. On the build
/// machine 15 pairs after 300 ms read −1.5, 0.1, 3.7, 4.1, 6.8, 11.8 … 24.3 ms, and another
/// calibration's seven read 0.5, 16.7, 2.7, −2.7, 16.2, 1.2 and 17.6: a median of seven flips
/// between ~2 and ~17 ms with the draw (four calibrations read 9.7, 23.7, 16.4 and 2.7 ms), while
/// short prefills after an idle spell in fused runs paid 14–17 ms on average, round after round.
fn wake_estimate(extra: Vec<f64>) -> f64 {
    trimmed_mean(extra).max(0.0)
}

/// The mean without the highest and lowest tenth (0 for none).
fn trimmed_mean(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    let cut = x.len() / 10;
    let kept = &x[cut..x.len() - cut];
    if kept.is_empty() {
        return 0.0;
    }
    kept.iter().sum::<f64>() / kept.len() as f64
}

#[cfg(test)]
mod tests {
    use super::wake_estimate;

    #[test]
    fn the_wake_up_is_a_trimmed_mean_of_the_pairs() {
        // Seven pairs measured on the build machine: their median (2.7 ms) missed the cost that
        // three of them paid.
        let pairs = vec![0.5, 16.7, 2.7, -2.7, 16.2, 1.2, 17.6];
        assert!((wake_estimate(pairs) - 52.2 / 7.0).abs() < 1e-9);
        // With ten or more pairs the highest and lowest tenth go: one hiccup does not count.
        let mut pairs = vec![15.0; 18];
        pairs.extend([250.0, -40.0]);
        assert!((wake_estimate(pairs) - 15.0).abs() < 1e-9);
        assert_eq!(wake_estimate(vec![-3.0, -1.0]), 0.0, "never below nothing");
        assert_eq!(wake_estimate(Vec::new()), 0.0);
    }
}
