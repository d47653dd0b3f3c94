//! FusedWorker: one worker doing both prefill and decode, scheduled by a policy
//! ([`crate::sched::fused`]), like `model.generate()` or a colocated vLLM instance.

use actix::prelude::*;

use super::messages::Submit;
use super::worker_env::{Kick, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::StepPlan;
use crate::engine::Engine;
use crate::metrics::record::RequestRecord;
use crate::sched::fused::{FusedLimits, FusedPolicy, FusedScheduler};
use crate::sched::{SeqLens, Tracked};
use crate::workload::RequestSpec;

impl Tracked for Box<RequestRecord> {
    fn request_id(&self) -> u64 {
        self.spec.id
    }
}

pub struct FusedWorker<E: Engine> {
    env: WorkerEnv,
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
}

impl<E: Engine> FusedWorker<E> {
    pub fn new(env: WorkerEnv, engine: E, policy: FusedPolicy, limits: FusedLimits) -> Self {
        FusedWorker {
            env,
            engine,
            sched: FusedScheduler::new(policy, limits),
            plan: StepPlan::default(),
            busy: false,
            kick: Kick::default(),
            stamp: StepStamp::default(),
            admitted: Vec::new(),
            stopped: Vec::new(),
        }
    }

    fn try_step(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let now = self.env.now();
        let index = self.env.index;
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
        self.stamp = self.env.stamp(self.sched.kv().used(), self.sched.waiting() as u64);
        let mut result = Ok(());
        for spec in std::mem::take(&mut self.admitted) {
            result = result.and_then(|()| self.engine.admit(&spec));
        }
        let result = result.and_then(|()| self.engine.step(&self.plan)).map(|out| {
            self.stopped = out.stopped;
            out.wait_ns
        });
        self.launch(ctx, result);
    }

    fn end_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.env.now();
        let done = self.sched.complete(&std::mem::take(&mut self.stopped), |r| {
            r.prefill_end_ns = now;
            r.token_count = 1;
        });
        // The step's row goes first: the collector closes the files on the last request.
        self.env.iteration(&self.plan, self.stamp);
        for r in done.finished {
            let text = self.engine.finish(r.payload.spec.id);
            self.env.finished(r.payload, now, r.produced, text);
        }
        self.busy = false;
        self.env.set_load(self.sched.load() as u64);
        self.try_step(ctx);
    }
}

impl<E: Engine> Actor for FusedWorker<E> {
    type Context = Context<Self>;
}

impl<E: Engine> Scheduling for FusedWorker<E> {
    fn kick_state(&mut self) -> &mut Kick {
        &mut self.kick
    }

    fn env(&self) -> &WorkerEnv {
        &self.env
    }

    fn step_done(&mut self, ctx: &mut Context<Self>) {
        self.end_step(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.try_step(ctx);
    }
}

impl<E: Engine> Handler<Submit> for FusedWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        let lens =
            SeqLens { prompt_tokens: msg.record.spec.prompt_tokens, output_tokens: msg.record.spec.output_tokens };
        self.sched.submit(lens, msg.record);
        self.env.set_load(self.sched.load() as u64);
        self.kick(ctx);
    }
}
