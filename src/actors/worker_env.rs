//! What every worker shares: the clock, the collector, its load gauge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{IterationCompleted, RequestFinished, RunAborted};
use super::metrics_collector::MetricsCollector;
use crate::clock::RunClock;
use crate::engine::step::StepPlan;
use crate::engine::EngineError;
use crate::metrics::iteration::{IterationRow, StepKind};
use crate::metrics::record::RequestRecord;

/// A worker's load as routers see it (requests or tokens held, depending on the pool).
pub type LoadGauge = Arc<AtomicU64>;

pub fn read_load(g: &LoadGauge) -> u64 {
    g.load(Ordering::Relaxed)
}

/// Defers a worker's next scheduling decision until the messages that arrived at the same
/// instant are all in: requests arriving together then share a batch, as they would in a
/// serving engine's scheduler loop. `arm` returns true when the caller should schedule the
/// deferred call (a zero-length timer, which fires after the mailbox drains).
#[derive(Debug, Default)]
pub struct Kick {
    armed: bool,
}

impl Kick {
    pub fn arm(&mut self) -> bool {
        !std::mem::replace(&mut self.armed, true)
    }

    pub fn fired(&mut self) {
        self.armed = false;
    }
}

/// A worker that schedules its steps: it can be kicked (see [`Kick`]).
pub trait Scheduling: Actor<Context = Context<Self>> {
    fn kick_state(&mut self) -> &mut Kick;

    fn env(&self) -> &WorkerEnv;

    /// Starts the next step if the worker is idle and has work.
    fn schedule(&mut self, ctx: &mut Context<Self>);

    /// Called when the step started by [`Scheduling::launch`] has finished.
    fn step_done(&mut self, ctx: &mut Context<Self>);

    /// Waits out a step the engine has run (its modeled time, in simulate mode), then calls
    /// [`Scheduling::step_done`]; an engine failure aborts the run.
    /// `result` is the engine's wait in nanoseconds.
    fn launch(&mut self, ctx: &mut Context<Self>, result: Result<u64, EngineError>) {
        match result {
            Ok(0) if !self.env().clock.is_simulated() => {
                // The engine already computed; finish on the next turn of the context.
                ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| act.step_done(ctx)));
            }
            Ok(wait_ns) => {
                ctx.run_later(self.env().clock.wait(wait_ns), |act, ctx| act.step_done(ctx));
            }
            Err(e) => self.env().abort(e.to_string()),
        }
    }

    /// Schedules once the messages of this instant are in. On the virtual clock that is a
    /// zero-length timer (it fires after everything due at this instant); on the wall clock a
    /// timer would round up to tokio's next millisecond tick, so the call is queued on the
    /// actor's context instead.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.kick_state().arm() {
            let fire = |act: &mut Self, ctx: &mut Context<Self>| {
                act.kick_state().fired();
                act.schedule(ctx);
            };
            if self.env().clock.is_simulated() {
                ctx.run_later(std::time::Duration::ZERO, fire);
            } else {
                ctx.spawn(actix::fut::ready(()).map(move |(), act, ctx| fire(act, ctx)));
            }
        }
    }
}

/// A worker's state when a step started, for its iteration row.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStamp {
    pub start_ns: u64,
    pub kv_used_tokens: u64,
    pub queued: u64,
}

/// The environment a worker runs in.
#[derive(Clone)]
pub struct WorkerEnv {
    /// e.g. `prefill-0`.
    pub name: String,
    pub index: u32,
    pub clock: RunClock,
    pub collector: Addr<MetricsCollector>,
    pub load: LoadGauge,
}

impl WorkerEnv {
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn set_load(&self, v: u64) {
        self.load.store(v, Ordering::Relaxed);
    }

    /// A request made its last token at `end_ns`, `token_count` tokens in all; `text` is what
    /// it generated, when the engine makes text.
    pub fn finished(&self, mut record: Box<RequestRecord>, end_ns: u64, token_count: u64, text: Option<String>) {
        record.end_ns = end_ns;
        record.token_count = token_count;
        self.collector.do_send(RequestFinished { record, text });
    }

    pub fn abort(&self, reason: String) {
        self.collector.do_send(RunAborted { reason: format!("{}: {reason}", self.name) });
    }

    /// Notes the state of the worker as a step starts.
    pub fn stamp(&self, kv_used_tokens: u64, queued: u64) -> StepStamp {
        StepStamp { start_ns: self.now(), kv_used_tokens, queued }
    }

    /// Logs a completed step.
    pub fn iteration(&self, plan: &StepPlan, stamp: StepStamp) {
        let StepStamp { start_ns, kv_used_tokens, queued } = stamp;
        let s = plan.shape();
        self.collector.do_send(IterationCompleted {
            row: IterationRow {
                worker: self.name.clone(),
                kind: StepKind::of(s.prefill_tokens, s.decode_seqs),
                batch_size: s.prefill_seqs + s.decode_seqs,
                prefill_tokens: s.prefill_tokens,
                decode_tokens: s.decode_seqs,
                context_tokens: s.decode_context,
                kv_used_tokens,
                queued,
                start_ns,
                end_ns: self.now(),
            },
        });
    }
}
