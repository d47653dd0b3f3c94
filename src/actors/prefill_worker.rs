//! PrefillWorker: batches prompts up to the token budget, runs the prefill, and hands each
//! request's KV cache to a decode worker. It keeps counting that KV against its own capacity
//! until the decode worker has taken it, so a full decode side slows prefill down
//! (backpressure) instead of dropping requests.

use actix::prelude::*;

use super::decode_worker::DecodeWorker;
use super::faults::Recover;
use super::messages::{KvHandoff, KvReleased, Submit};
use super::worker_env::{Kick, LoadGauge, MakeEngine, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::{PromptChunk, StepPlan};
use crate::engine::{admit_and_step, Engine, InjectedFault};
use crate::metrics::outcome::DropReason;
use crate::metrics::record::RequestRecord;
use crate::scenario::FaultSpec;
use crate::sched::kv_budget::KvBudget;
use crate::sched::prefill_queue::{PrefillLimits, PrefillQueue};
use crate::sched::router::Router;

pub struct PrefillWorker<E: Engine> {
    c: PrefillWorkerConfig<E>,
    engine: E,
    queue: PrefillQueue<Box<RequestRecord>>,
    kv: KvBudget,
    plan: StepPlan,
    // Boxed: each record moves on inside a message as it is.
    #[allow(clippy::vec_box)]
    in_flight: Vec<Box<RequestRecord>>,
    kick: Kick,
    stamp: StepStamp,
    /// Requests whose first token was end-of-sequence in the running step.
    stopped: Vec<u64>,
    epoch: u32,
    /// Bumped by a crash: KV releases for handoffs of an earlier life are ignored.
    generation: u32,
}

/// How a prefill worker is set up.
pub struct PrefillWorkerConfig<E: Engine> {
    pub env: WorkerEnv,
    pub make_engine: MakeEngine<E>,
    pub limits: PrefillLimits,
    pub kv_capacity_tokens: u64,
    /// Prompts that may wait here before more are rejected.
    pub max_queued: Option<u64>,
    pub decoders: Vec<Addr<DecodeWorker<E>>>,
    pub decoder_gauges: Vec<LoadGauge>,
    pub router: Router,
    pub faults: Vec<FaultSpec>,
}

impl<E: Engine> PrefillWorker<E> {
    pub fn new(c: PrefillWorkerConfig<E>) -> Self {
        PrefillWorker {
            engine: (c.make_engine)(),
            queue: PrefillQueue::default(),
            kv: KvBudget::new(c.kv_capacity_tokens),
            c,
            plan: StepPlan::default(),
            in_flight: Vec::new(),
            kick: Kick::default(),
            stamp: StepStamp::default(),
            stopped: Vec::new(),
            epoch: 0,
            generation: 0,
        }
    }

    fn publish_load(&self) {
        // Queued prompt tokens plus the batch running now.
        let running: u64 = self.plan.prefill.iter().map(|c| c.tokens).sum();
        self.c.env.set_load(self.queue.queued_tokens() + running);
    }

    fn try_start(&mut self, ctx: &mut Context<Self>) {
        self.fire_due(ctx);
        if !self.in_flight.is_empty() || self.queue.is_empty() || !self.c.env.gauge.is_up() {
            return;
        }
        let batch = self.queue.next_batch(self.c.limits, &mut self.kv, |r| r.spec.prompt_tokens);
        if batch.is_empty() {
            return;
        }
        let now = self.c.env.now();
        self.plan.clear();
        let mut specs = Vec::with_capacity(batch.len());
        for mut r in batch {
            r.prefill_start_ns = now;
            r.prefill_worker = self.c.env.index;
            specs.push(r.spec);
            self.plan.prefill.push(PromptChunk { request: r.spec.id, offset: 0, tokens: r.spec.prompt_tokens });
            self.in_flight.push(r);
        }
        self.stamp = self.c.env.stamp(&self.plan, self.kv.used(), self.queue.len() as u64);
        self.stamp.mark(&mut self.plan);
        self.publish_load();
        let result = admit_and_step(&mut self.engine, &specs, &self.plan).map(|out| {
            self.stopped = out.stopped;
            out.wait_ns
        });
        self.launch(ctx, result);
    }

    fn finish_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.c.env.now();
        // The step's row goes first: the collector closes the files on the last request.
        self.c.env.iteration(&self.plan, self.stamp);
        for mut r in std::mem::take(&mut self.in_flight) {
            r.prefill_end_ns = now;
            r.token_count = 1;
            if r.spec.output_tokens <= 1 || self.stopped.contains(&r.spec.id) {
                let text = self.engine.finish(r.spec.id);
                self.kv.release(r.spec.prompt_tokens);
                self.c.env.finished(r, now, 1, text);
                continue;
            }
            let gauges = &self.c.decoder_gauges;
            let Some(d) = self.c.router.pick(|i| gauges[i].read()) else {
                self.engine.finish(r.spec.id);
                self.kv.release(r.spec.prompt_tokens);
                self.c.env.unserved([r], "no decode worker is up");
                continue;
            };
            let kv = self.engine.take_kv(r.spec.id, r.spec.prompt_tokens);
            r.decode_worker = Some(d as u32);
            self.c.decoder_gauges[d].add(1);
            let generation = self.generation;
            self.c.decoders[d].do_send(KvHandoff::<E> { record: r, kv, from: ctx.address(), generation });
        }
        self.plan.clear();
        self.stopped.clear();
        self.publish_load();
        self.try_start(ctx);
    }
}

impl<E: Engine> Actor for PrefillWorker<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm_faults(ctx);
    }
}

impl<E: Engine> Scheduling for PrefillWorker<E> {
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
        self.finish_step(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.try_start(ctx);
    }
}

impl<E: Engine> Recover for PrefillWorker<E> {
    fn drain_all(&mut self) -> Vec<Box<RequestRecord>> {
        let mut all = std::mem::take(&mut self.in_flight);
        all.extend(self.queue.drain());
        all
    }

    fn drain_started(&mut self) -> Vec<Box<RequestRecord>> {
        let lost = std::mem::take(&mut self.in_flight);
        for r in &lost {
            self.kv.release(r.spec.prompt_tokens);
        }
        lost
    }

    fn reset(&mut self, crashed: bool) {
        self.engine = (self.c.make_engine)();
        self.epoch += 1;
        self.plan.clear();
        self.stopped.clear();
        if crashed {
            self.generation += 1;
            self.kv = KvBudget::new(self.kv.capacity());
        }
        self.publish_load();
    }

    fn inject(&mut self, fault: InjectedFault) {
        self.engine.inject(fault);
    }

    fn pending_faults(&mut self) -> &mut Vec<FaultSpec> {
        &mut self.c.faults
    }
}

impl<E: Engine> Handler<Submit> for PrefillWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if !self.c.env.gauge.is_up() {
            return self.c.env.unserved([msg.record], "worker is down");
        }
        if let Some(limit) = self.c.max_queued.filter(|&l| self.queue.len() as u64 >= l) {
            let detail = format!("{}: {limit} requests already waiting for prefill", self.c.env.name);
            return self.c.env.dropped(msg.record, DropReason::QueueFull, detail);
        }
        self.queue.push(msg.record.spec.prompt_tokens, msg.record);
        self.publish_load();
        self.kick(ctx);
    }
}

impl<E: Engine> Handler<KvReleased> for PrefillWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: KvReleased, ctx: &mut Context<Self>) {
        if msg.generation == self.generation {
            self.kv.release(msg.tokens);
            self.kick(ctx);
        }
    }
}
