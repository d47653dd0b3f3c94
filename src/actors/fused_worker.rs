//! FusedWorker: one worker doing both prefill and decode, scheduled by a policy
//! ([`crate::sched::fused`]), like `model.generate()` or a colocated vLLM instance.

use actix::prelude::*;

use super::faults::Recover;
use super::messages::Submit;
use super::worker_env::{Kick, MakeEngine, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::StepPlan;
use crate::engine::{admit_and_step, Engine, InjectedFault};
use crate::metrics::outcome::DropReason;
use crate::metrics::record::RequestRecord;
use crate::scenario::FaultSpec;
use crate::sched::fused::{FusedLimits, FusedPolicy, FusedScheduler};
use crate::sched::{SeqLens, Tracked};
use crate::workload::RequestSpec;

impl Tracked for Box<RequestRecord> {
    fn request_id(&self) -> u64 {
        self.spec.id
    }
}

/// How a fused worker is set up.
pub struct FusedWorkerConfig<E: Engine> {
    pub env: WorkerEnv,
    pub make_engine: MakeEngine<E>,
    pub policy: FusedPolicy,
    pub limits: FusedLimits,
    /// Prompts that may wait here before more are rejected.
    pub max_queued: Option<u64>,
    pub faults: Vec<FaultSpec>,
}

pub struct FusedWorker<E: Engine> {
    c: FusedWorkerConfig<E>,
    engine: E,
    sched: FusedScheduler<Box<RequestRecord>>,
    plan: StepPlan,
    busy: bool,
    kick: Kick,
    stamp: StepStamp,
    /// Requests whose prefill starts in the planned step, for the engine to admit.
    admitted: Vec<RequestSpec>,
    /// Requests the running step ended with an end-of-sequence token.
    stopped: Vec<u64>,
    epoch: u32,
}

impl<E: Engine> FusedWorker<E> {
    pub fn new(c: FusedWorkerConfig<E>) -> Self {
        FusedWorker {
            engine: (c.make_engine)(),
            sched: FusedScheduler::new(c.policy, c.limits),
            c,
            plan: StepPlan::default(),
            busy: false,
            kick: Kick::default(),
            stamp: StepStamp::default(),
            admitted: Vec::new(),
            stopped: Vec::new(),
            epoch: 0,
        }
    }

    fn try_step(&mut self, ctx: &mut Context<Self>) {
        self.fire_due(ctx);
        if self.busy || !self.c.env.gauge.is_up() {
            return;
        }
        let now = self.c.env.now();
        let index = self.c.env.index;
        let admitted = &mut self.admitted;
        let planned = self.sched.plan(
            &mut self.plan,
            |r| {
                r.prefill_start_ns = now;
                r.prefill_worker = index;
                admitted.push(r.spec);
            },
            |r| r.decode_start_ns = Some(now),
        );
        if !planned {
            return;
        }
        self.busy = true;
        self.stamp = self.c.env.stamp(&self.plan, self.sched.kv().used(), self.sched.waiting() as u64);
        self.stamp.mark(&mut self.plan);
        let specs = std::mem::take(&mut self.admitted);
        let result = admit_and_step(&mut self.engine, &specs, &self.plan).map(|out| {
            self.stopped = out.stopped;
            out.wait_ns
        });
        self.launch(ctx, result);
    }

    fn end_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.c.env.now();
        let done = self.sched.complete(&std::mem::take(&mut self.stopped), |r| {
            r.prefill_end_ns = now;
            r.token_count = 1;
        });
        // The step's row goes first: the collector closes the files on the last request.
        self.c.env.iteration(&self.plan, self.stamp);
        for r in done.finished {
            let text = self.engine.finish(r.payload.spec.id);
            self.c.env.finished(r.payload, now, r.produced, text);
        }
        self.busy = false;
        self.c.env.set_load(self.sched.load() as u64);
        self.try_step(ctx);
    }
}

impl<E: Engine> Actor for FusedWorker<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm_faults(ctx);
    }
}

impl<E: Engine> Scheduling for FusedWorker<E> {
    fn kick_state(&mut self) -> &mut Kick {
        &mut self.kick
    }

    fn env(&self) -> &WorkerEnv {
        &self.c.env
    }

    fn epoch(&self) -> u32 {
        self.epoch
    }

    fn step_done(&mut self, ctx: &mut Context<Self>) {
        self.end_step(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.try_step(ctx);
    }
}

impl<E: Engine> Recover for FusedWorker<E> {
    fn drain_all(&mut self) -> Vec<Box<RequestRecord>> {
        self.sched.drain_all()
    }

    fn drain_started(&mut self) -> Vec<Box<RequestRecord>> {
        self.sched.drain_started()
    }

    fn reset(&mut self, _crashed: bool) {
        self.engine = (self.c.make_engine)();
        self.epoch += 1;
        self.busy = false;
        self.plan.clear();
        self.stopped.clear();
        self.admitted.clear();
        self.c.env.set_load(self.sched.load() as u64);
    }

    fn inject(&mut self, fault: InjectedFault) {
        self.engine.inject(fault);
    }

    fn pending_faults(&mut self) -> &mut Vec<FaultSpec> {
        &mut self.c.faults
    }
}

impl<E: Engine> Handler<Submit> for FusedWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if !self.c.env.gauge.is_up() {
            return self.c.env.unserved([msg.record], "worker is down");
        }
        if let Some(limit) = self.c.max_queued.filter(|&l| self.sched.waiting() as u64 >= l) {
            let detail = format!("{}: {limit} requests already waiting for prefill", self.c.env.name);
            return self.c.env.dropped(msg.record, DropReason::QueueFull, detail);
        }
        let lens =
            SeqLens { prompt_tokens: msg.record.spec.prompt_tokens, output_tokens: msg.record.spec.output_tokens };
        self.sched.submit(lens, msg.record);
        self.c.env.set_load(self.sched.load() as u64);
        self.kick(ctx);
    }
}
