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
        }
    }

    fn try_step(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let now = self.env.now();
        let index = self.env.index;
        let planned = self.sched.plan(
            &mut self.plan,
            |r| {
                r.prefill_start_ns = now;
                r.prefill_worker = index;
            },
            |r| r.decode_start_ns = Some(now),
        );
        if !planned {
            return;
        }
        self.busy = true;
        self.stamp = self
            .env
            .stamp(self.sched.kv().used(), self.sched.waiting() as u64);
        let result = self.engine.step(&self.plan);
        self.launch(ctx, result);
    }

    fn end_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.env.now();
        let done = self.sched.complete(|r| {
            r.prefill_end_ns = now;
            r.token_count = 1;
        });
        // The step's row goes first: the collector closes the files on the last request.
        self.env.iteration(&self.plan, self.stamp);
        for r in done.finished {
            self.engine.release(r.payload.spec.id);
            self.env.finished(r.payload, now, r.produced);
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
        let lens = SeqLens {
            prompt_tokens: msg.record.spec.prompt_tokens,
            output_tokens: msg.record.spec.output_tokens,
        };
        self.sched.submit(lens, msg.record);
        self.env.set_load(self.sched.load() as u64);
        self.kick(ctx);
    }
}
