//! The run clock. Actors read time and set their timers only through here, never with
//! `Instant::now()`, raw `Duration`s or `ctx.run_later`.
//!
//! In simulate mode time is virtual ([`virtual_time`]): it jumps from one timer to the next
//! when every actor is idle, so the same actor code runs a simulation. Simulated times keep the
//! microsecond: a timer fires on the microsecond at or after its deadline. In execute mode the
//! clock is wall time (tokio's). Times are integer nanoseconds since the run started.

pub mod virtual_time;

use actix::{Actor, ActorFutureExt, AsyncContext};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// `None` in simulate mode.
    start: Option<tokio::time::Instant>,
}

/// The resolution of simulated time.
const SIMULATED_TICK_NS: u64 = 1_000;

impl RunClock {
    /// A clock for simulate mode: starts virtual time at 0 on this thread and its driver on the
    /// run's runtime ([`virtual_time::runtime`]). Call from inside that runtime.
    pub fn simulated() -> RunClock {
        virtual_time::start();
        RunClock { start: None }
    }

    /// A wall clock for execute mode.
    pub fn wall() -> RunClock {
        RunClock { start: Some(tokio::time::Instant::now()) }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        match self.start {
            None => virtual_time::now_ns(),
            Some(start) => u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Whether time is virtual (simulate mode).
    pub fn is_simulated(&self) -> bool {
        self.start.is_none()
    }

    /// `ns` rounded up to the clock's resolution: the microsecond in simulate mode, as is in
    /// execute mode.
    pub fn on_tick(&self, ns: u64) -> u64 {
        if !self.is_simulated() {
            return ns;
        }
        ns.div_ceil(SIMULATED_TICK_NS).saturating_mul(SIMULATED_TICK_NS)
    }

    /// Calls `f` on the actor `ns` nanoseconds from now. A wait of 0 fires, in simulate mode,
    /// after everything due at this instant; on the wall clock on the actor's next turn (a
    /// timer there would round up to tokio's next millisecond, as any longer wait does).
    pub fn later<A, F>(&self, ctx: &mut A::Context, ns: u64, f: F)
    where
        A: Actor,
        A::Context: AsyncContext<A>,
        F: FnOnce(&mut A, &mut A::Context) + 'static,
    {
        if self.is_simulated() {
            let at = self.on_tick(self.now_ns().saturating_add(ns));
            ctx.spawn(
                actix::fut::wrap_future::<_, A>(virtual_time::sleep_until(at)).map(move |(), act, ctx| f(act, ctx)),
            );
        } else if ns == 0 {
            ctx.spawn(actix::fut::ready(()).map(move |(), act, ctx| f(act, ctx)));
        } else {
            ctx.run_later(std::time::Duration::from_nanos(ns), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_up_to_the_simulated_microsecond_and_stay_as_they_are_on_the_wall() {
        let sim = RunClock { start: None };
        assert_eq!((sim.on_tick(369_290_321), sim.on_tick(369_291_000), sim.on_tick(0)), (369_291_000, 369_291_000, 0));
        assert_eq!(RunClock { start: Some(tokio::time::Instant::now()) }.on_tick(369_290_321), 369_290_321);
    }
}
