//! What every worker shares: the clock, the collector, the enqueuer (for retries), its gauge.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{IterationCompleted, RequestDropped, RequestFinished, RequestLost, WorkerEvent};
use super::metrics_collector::MetricsCollector;
use crate::clock::RunClock;
use crate::engine::step::StepPlan;
use crate::metrics::iteration::{IterationRow, StepKind};
use crate::metrics::outcome::DropReason;
use crate::metrics::record::RequestRecord;

/// A worker as routers see it: its load (requests or tokens held, depending on the pool) and
/// whether it is up.
#[derive(Debug)]
pub struct Gauge {
    load: AtomicU64,
    up: AtomicBool,
}

pub type LoadGauge = Arc<Gauge>;

/// Builds a worker's engine: at start, and again after a failure.
pub type MakeEngine<E> = Arc<dyn Fn() -> E + Send + Sync>;

impl Gauge {
    pub fn new() -> LoadGauge {
        Arc::new(Gauge { load: AtomicU64::new(0), up: AtomicBool::new(true) })
    }

    /// The load, or `None` while the worker is down.
    pub fn read(&self) -> Option<u64> {
        self.up.load(Ordering::Relaxed).then(|| self.load.load(Ordering::Relaxed))
    }

    /// Counts an offer at once, so least-loaded routing sees it before the message lands.
    pub fn add(&self, n: u64) {
        self.load.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
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

    /// Bumped when the worker fails: timers set before then find a different epoch and do
    /// nothing.
    fn epoch(&self) -> u32;

    /// Schedules once the messages of this instant are in: a wait of 0 (see [`RunClock::later`]).
    fn kick(&mut self, ctx: &mut Context<Self>) {
        // A worker that is down schedules nothing; it kicks itself when it comes back.
        if self.env().gauge.is_up() && self.kick_state().arm() {
            let fire = |act: &mut Self, ctx: &mut Context<Self>| {
                act.kick_state().fired();
                act.schedule(ctx);
            };
            self.env().clock.later(ctx, 0, fire);
        }
    }
}

/// A worker's state when a step started, for its iteration row.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStamp {
    pub start_ns: u64,
    pub kv_used_tokens: u64,
    pub queued: u64,
    /// Time since the worker's previous step ended.
    pub idle_ns: u64,
    /// Time since the machine's last step ended, any worker's: 0 while another computes
    /// ([`StepPlan::machine_idle_ns`]).
    pub machine_idle_ns: Option<u64>,
    /// Other workers computing when the step started.
    pub co_running: u32,
    /// Whether one of them was in a single-sequence decode step.
    pub beside_single_decode: bool,
}

impl StepStamp {
    /// Notes on `plan` what the cost model may charge for: the worker's idle time, the
    /// machine's, and what the other workers were computing as the step started.
    pub fn mark(&self, plan: &mut StepPlan) {
        plan.idle_ns = self.idle_ns;
        plan.machine_idle_ns = self.machine_idle_ns;
        plan.co_running = self.co_running;
        plan.beside_single_decode = self.beside_single_decode;
    }
}

/// What the workers sharing one machine are computing right now.
#[derive(Debug, Default)]
pub struct MachineLoad {
    /// Workers in a step.
    pub busy: AtomicU32,
    /// Workers in a single-sequence decode step.
    pub single_decode: AtomicU32,
    /// One past when the machine's last step ended, any worker's (0 before the first).
    pub last_end_ns: AtomicU64,
}

/// The environment a worker runs in.
#[derive(Clone)]
pub struct WorkerEnv {
    /// e.g. `prefill-0`.
    pub name: String,
    pub index: u32,
    pub clock: RunClock,
    pub collector: Addr<MetricsCollector>,
    /// Where requests lost to a failure of this worker go to be retried.
    pub enqueuer: Recipient<RequestLost>,
    pub gauge: LoadGauge,
    /// When the worker's last step ended (`None` before its first).
    pub last_end_ns: std::cell::Cell<Option<u64>>,
    /// What the workers of the topology are computing right now (they share one machine in
    /// execute mode, which a calibrated cost model charges for), and whether this one is in a
    /// step, and in a single-sequence decode step.
    pub machine: Arc<MachineLoad>,
    pub busy: std::cell::Cell<bool>,
    pub single_decode: std::cell::Cell<bool>,
}

impl WorkerEnv {
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn set_load(&self, v: u64) {
        self.gauge.load.store(v, Ordering::Relaxed);
    }

    /// A request this worker cannot serve ends here, rejected or failed.
    pub fn dropped(&self, record: Box<RequestRecord>, reason: DropReason, detail: String) {
        self.collector.do_send(RequestDropped { record, reason, detail, at_ns: self.now() });
    }

    /// Requests this worker lost to a failure go back to the enqueuer for a retry.
    pub fn lost(&self, records: impl IntoIterator<Item = Box<RequestRecord>>, detail: &str) {
        self.lost_for(records, DropReason::WorkerFailed, detail);
    }

    /// Requests this worker could not serve (it is down, or no decode worker is up to take them
    /// on) go back to the enqueuer for a retry; with none left they count as `NoLiveWorker`.
    pub fn unserved(&self, records: impl IntoIterator<Item = Box<RequestRecord>>, detail: &str) {
        self.lost_for(records, DropReason::NoLiveWorker, detail);
    }

    fn lost_for(&self, records: impl IntoIterator<Item = Box<RequestRecord>>, reason: DropReason, detail: &str) {
        for record in records {
            self.enqueuer.do_send(RequestLost { record, reason, detail: format!("{}: {detail}", self.name) });
        }
    }

    /// Logs a failure or a restart in `events.csv`.
    pub fn event(&self, event: &'static str, detail: String) {
        self.collector.do_send(WorkerEvent { at_ns: self.now(), worker: self.name.clone(), event, detail });
    }

    /// A request made its last token at `end_ns`, `token_count` tokens in all; `text` is what
    /// it generated, when the engine makes text.
    pub fn finished(&self, mut record: Box<RequestRecord>, end_ns: u64, token_count: u64, text: Option<String>) {
        record.end_ns = end_ns;
        record.token_count = token_count;
        self.collector.do_send(RequestFinished { record, text });
    }

    /// Notes the state of the worker as `plan` starts.
    pub fn stamp(&self, plan: &StepPlan, kv_used_tokens: u64, queued: u64) -> StepStamp {
        let start_ns = self.now();
        let m = &self.machine;
        // A step that never ended (the worker crashed in it) still counts this worker as busy.
        let was_busy = self.busy.replace(true);
        let others = if was_busy {
            m.busy.load(Ordering::Relaxed).saturating_sub(1)
        } else {
            m.busy.fetch_add(1, Ordering::Relaxed)
        };
        if self.single_decode.replace(false) {
            m.single_decode.fetch_sub(1, Ordering::Relaxed);
        }
        let single = plan.prefill.is_empty() && plan.decode.len() == 1;
        let others_single = if single {
            self.single_decode.set(true);
            m.single_decode.fetch_add(1, Ordering::Relaxed)
        } else {
            m.single_decode.load(Ordering::Relaxed)
        };
        StepStamp {
            start_ns,
            kv_used_tokens,
            queued,
            // A worker's first step comes after an unbounded pause: its compute threads have
            // not run yet (execute mode warms the model up on threads of their own), and
            // executed two-thread first prefills paid the wake-up (see StepPlan::idle_ns).
            idle_ns: self.last_end_ns.get().map_or(u64::MAX, |end| start_ns.saturating_sub(end)),
            machine_idle_ns: match m.last_end_ns.load(Ordering::Relaxed) {
                _ if others > 0 => Some(0),
                0 => None,
                end => Some(start_ns.saturating_sub(end - 1)),
            },
            co_running: others,
            beside_single_decode: others_single > 0,
        }
    }

    /// Logs a completed step.
    pub fn iteration(&self, plan: &StepPlan, stamp: StepStamp) {
        let StepStamp { start_ns, kv_used_tokens, queued, .. } = stamp;
        self.last_end_ns.set(Some(self.now()));
        self.machine.last_end_ns.fetch_max(self.now() + 1, Ordering::Relaxed);
        if self.busy.replace(false) {
            self.machine.busy.fetch_sub(1, Ordering::Relaxed);
        }
        if self.single_decode.replace(false) {
            self.machine.single_decode.fetch_sub(1, Ordering::Relaxed);
        }
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
