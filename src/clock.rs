//! The run clock. Actors read time and size their waits only through here, never with
//! `Instant::now()` or raw `Duration`s.
//!
//! It wraps tokio's clock. In simulate mode the runtime starts with a paused clock, so the same
//! actor code reads virtual time that jumps from one timer to the next. tokio's timer wheel
//! counts whole milliseconds, which would round every modeled step up to the next millisecond
//! (a 9.75 ms decode step would become 10 ms). The simulated clock therefore runs tokio time
//! 1000× slower than simulated time: one tokio millisecond is one simulated microsecond, the
//! resolution of every simulated timestamp. In execute mode the scale is 1 and the clock is wall
//! time. Times are integer nanoseconds since the run started.

use std::time::Duration;

/// Tokio nanoseconds per simulated nanosecond in simulate mode.
pub const SIMULATED_TIME_SCALE: u64 = 1000;

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: tokio::time::Instant,
    scale: u64,
}

impl RunClock {
    /// A clock for simulate mode (on a paused runtime). Call from inside the run's runtime.
    pub fn simulated() -> RunClock {
        RunClock { start: tokio::time::Instant::now(), scale: SIMULATED_TIME_SCALE }
    }

    /// A wall clock for execute mode.
    pub fn wall() -> RunClock {
        RunClock { start: tokio::time::Instant::now(), scale: 1 }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos() / self.scale as u128).unwrap_or(u64::MAX)
    }

    /// Whether time is virtual (simulate mode).
    pub fn is_simulated(&self) -> bool {
        self.scale != 1
    }

    /// `ns` rounded up to the clock's resolution: the microsecond in simulate mode (one tokio
    /// millisecond), as is in execute mode.
    pub fn on_tick(&self, ns: u64) -> u64 {
        if !self.is_simulated() {
            return ns;
        }
        let tick = 1_000_000 / self.scale;
        ns.div_ceil(tick).saturating_mul(tick)
    }

    /// The runtime duration to wait for `ns` nanoseconds of run time.
    pub fn wait(&self, ns: u64) -> Duration {
        Duration::from_nanos(ns.saturating_mul(self.scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_up_to_the_simulated_microsecond_and_stay_as_they_are_on_the_wall() {
        let start = tokio::time::Instant::now();
        let sim = RunClock { start, scale: SIMULATED_TIME_SCALE };
        assert_eq!((sim.on_tick(369_290_321), sim.on_tick(369_291_000), sim.on_tick(0)), (369_291_000, 369_291_000, 0));
        assert_eq!(RunClock { start, scale: 1 }.on_tick(369_290_321), 369_290_321);
    }
}
