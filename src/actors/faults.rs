//! How a worker fails and recovers. Two kinds of failure:
//!
//! - **crash** (a scenario fault): the worker goes down at once. Every request it holds is lost
//!   and goes back to the enqueuer, which starts it again on another worker (up to
//!   `max_retries`) or reports it failed. Routers skip the worker while it is down; with
//!   `down_s` it comes back empty after that long, otherwise it stays down.
//! - **engine failure** (an engine error or a panic inside an engine call, real or injected):
//!   the engine's state is not trusted, so the worker replaces it with a fresh one at once. The
//!   requests whose state was in the engine are lost (and retried); requests still waiting in
//!   the worker's queue keep their place. The run goes on.
//!
//! Every failure and restart is a row of `events.csv`; the summary counts them.

use actix::prelude::*;

use super::worker_env::Scheduling;
use crate::engine::{EngineError, InjectedFault};
use crate::metrics::record::RequestRecord;
use crate::scenario::{FaultKind, FaultSpec};

/// What a worker must offer to fail and recover; the failure logic itself is provided.
pub trait Recover: Scheduling {
    /// A crash: empties the worker and returns every request it held.
    fn drain_all(&mut self) -> Vec<Box<RequestRecord>>;

    /// An engine failure: removes and returns the requests whose state is in the engine,
    /// freeing their KV reservations.
    fn drain_started(&mut self) -> Vec<Box<RequestRecord>>;

    /// Replaces the engine with a fresh one and bumps the epoch (stale timers then do
    /// nothing). `crashed`: everything went, transfers in flight included.
    fn reset(&mut self, crashed: bool);

    /// Arms the engine to fail its next step.
    fn inject(&mut self, fault: InjectedFault);

    /// The worker's scenario faults that have not fired yet.
    fn pending_faults(&mut self) -> &mut Vec<FaultSpec>;

    /// Sets a timer for each pending fault. A worker that is busy computing step after step
    /// (execute mode) may not see a timer for a while, so [`Recover::fire_due`] also runs at
    /// the start of every step: a fault fires at its time or at the first step after it.
    fn arm_faults(&mut self, ctx: &mut Context<Self>) {
        let now = self.env().now();
        let times: Vec<u64> = self.pending_faults().iter().map(|f| f.at_ns).collect();
        for at in times {
            self.env().clock.later(ctx, at.saturating_sub(now), |act: &mut Self, ctx| act.fire_due(ctx));
        }
    }

    /// Fires every pending fault whose time has come, in order.
    fn fire_due(&mut self, ctx: &mut Context<Self>) {
        let now = self.env().now();
        let pending = self.pending_faults();
        if pending.iter().all(|f| f.at_ns > now) {
            return;
        }
        let (due, later): (Vec<FaultSpec>, Vec<FaultSpec>) = pending.drain(..).partition(|f| f.at_ns <= now);
        *pending = later;
        for f in due {
            match f.kind {
                FaultKind::Crash { down_ns } => self.crash(ctx, down_ns),
                FaultKind::StepError => self.inject(InjectedFault::Error),
                FaultKind::Panic => self.inject(InjectedFault::Panic),
            }
        }
    }

    /// The worker goes down; see the module doc.
    fn crash(&mut self, ctx: &mut Context<Self>, down_ns: Option<u64>) {
        if !self.env().gauge.is_up() {
            return;
        }
        self.env().gauge.set_up(false);
        let lost = self.drain_all();
        self.reset(true);
        let back = match down_ns {
            Some(d) => format!("back in {:.3} s", d as f64 / 1e9),
            None => "down for the rest of the run".into(),
        };
        let detail = format!("{}; {back}", held(lost.len()));
        eprintln!("pdsim: {}: crashed (scenario fault); {detail}", self.env().name);
        self.env().event("crashed", detail);
        self.env().lost(lost, "worker crashed");
        self.env().set_load(0);
        if let Some(d) = down_ns {
            self.env().clock.later(ctx, d, |act: &mut Self, ctx| {
                act.env().gauge.set_up(true);
                act.env().event("restarted", "back up, empty".into());
                act.kick(ctx);
            });
        }
    }

    /// The engine failed; see the module doc.
    fn engine_failed(&mut self, ctx: &mut Context<Self>, error: EngineError) {
        let lost = self.drain_started();
        self.reset(false);
        let detail = format!("{error}; engine replaced, {}", held(lost.len()));
        eprintln!("pdsim: {}: {detail}", self.env().name);
        self.env().event("engine_failed", detail);
        self.env().lost(lost, &error.to_string());
        self.kick(ctx);
    }

    /// Waits out a step the engine has run (its modeled time, in simulate mode), then calls
    /// [`Scheduling::step_done`]; an engine failure restarts the engine.
    /// `result` is the engine's wait in nanoseconds.
    fn launch(&mut self, ctx: &mut Context<Self>, result: Result<u64, EngineError>) {
        let epoch = self.epoch();
        let done = move |act: &mut Self, ctx: &mut Context<Self>| {
            if act.epoch() == epoch {
                act.step_done(ctx);
            }
        };
        match result {
            // Executed, the engine has already computed (0): done on the context's next turn.
            Ok(wait_ns) => self.env().clock.later(ctx, wait_ns, done),
            Err(e) => self.engine_failed(ctx, e),
        }
    }
}

/// What becomes of the requests a failed worker held.
fn held(n: usize) -> String {
    match n {
        0 => "it held no requests".into(),
        1 => "the request it held goes back to be retried".into(),
        n => format!("the {n} requests it held go back to be retried"),
    }
}
