//! PrefillWorker: batches prompts up to the token budget, runs the prefill, and hands each
//! request's KV cache to a decode worker. It keeps counting that KV against its own capacity
//! until the decode worker has taken it, so a full decode side slows prefill down
//! (backpressure) instead of dropping requests.

use actix::prelude::*;

use super::decode_worker::DecodeWorker;
use super::messages::{KvHandoff, KvReleased, Submit};
use super::worker_env::{read_load, Kick, LoadGauge, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::{PromptChunk, StepPlan};
use crate::engine::Engine;
use crate::metrics::record::RequestRecord;
use crate::sched::kv_budget::KvBudget;
use crate::sched::prefill_queue::{PrefillLimits, PrefillQueue};
use crate::sched::router::Router;

pub struct PrefillWorker<E: Engine> {
    env: WorkerEnv,
    engine: E,
    queue: PrefillQueue<Box<RequestRecord>>,
    kv: KvBudget,
    limits: PrefillLimits,
    decoders: Vec<Addr<DecodeWorker<E>>>,
    decoder_loads: Vec<LoadGauge>,
    router: Router,
    plan: StepPlan,
    // Boxed: each record moves on inside a message as it is.
    #[allow(clippy::vec_box)]
    in_flight: Vec<Box<RequestRecord>>,
    kick: Kick,
    stamp: StepStamp,
    /// Requests whose first token was end-of-sequence in the running step.
    stopped: Vec<u64>,
}

/// How a prefill worker is set up.
pub struct PrefillWorkerConfig<E: Engine> {
    pub env: WorkerEnv,
    pub engine: E,
    pub limits: PrefillLimits,
    pub kv_capacity_tokens: u64,
    pub decoders: Vec<Addr<DecodeWorker<E>>>,
    pub decoder_loads: Vec<LoadGauge>,
    pub router: Router,
}

impl<E: Engine> PrefillWorker<E> {
    pub fn new(c: PrefillWorkerConfig<E>) -> Self {
        PrefillWorker {
            env: c.env,
            engine: c.engine,
            queue: PrefillQueue::default(),
            kv: KvBudget::new(c.kv_capacity_tokens),
            limits: c.limits,
            decoders: c.decoders,
            decoder_loads: c.decoder_loads,
            router: c.router,
            plan: StepPlan::default(),
            in_flight: Vec::new(),
            kick: Kick::default(),
            stamp: StepStamp::default(),
            stopped: Vec::new(),
        }
    }

    fn publish_load(&self) {
        // Queued prompt tokens plus the batch running now.
        let running: u64 = self.plan.prefill.iter().map(|c| c.tokens).sum();
        self.env.set_load(self.queue.queued_tokens() + running);
    }

    fn try_start(&mut self, ctx: &mut Context<Self>) {
        if !self.in_flight.is_empty() || self.queue.is_empty() {
            return;
        }
        let batch = self.queue.next_batch(self.limits, &mut self.kv, |r| r.spec.prompt_tokens);
        if batch.is_empty() {
            return;
        }
        let now = self.env.now();
        self.plan.clear();
        let mut result = Ok(());
        for mut r in batch {
            r.prefill_start_ns = now;
            r.prefill_worker = self.env.index;
            result = result.and_then(|()| self.engine.admit(&r.spec));
            self.plan.prefill.push(PromptChunk { request: r.spec.id, offset: 0, tokens: r.spec.prompt_tokens });
            self.in_flight.push(r);
        }
        self.stamp = self.env.stamp(self.kv.used(), self.queue.len() as u64);
        self.publish_load();
        let result = result.and_then(|()| self.engine.step(&self.plan)).map(|out| {
            self.stopped = out.stopped;
            out.wait_ns
        });
        self.launch(ctx, result);
    }

    fn finish_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.env.now();
        // The step's row goes first: the collector closes the files on the last request.
        self.env.iteration(&self.plan, self.stamp);
        for mut r in std::mem::take(&mut self.in_flight) {
            r.prefill_end_ns = now;
            r.token_count = 1;
            if r.spec.output_tokens <= 1 || self.stopped.contains(&r.spec.id) {
                let text = self.engine.finish(r.spec.id);
                self.kv.release(r.spec.prompt_tokens);
                self.env.finished(r, now, 1, text);
                continue;
            }
            let kv = self.engine.take_kv(r.spec.id, r.spec.prompt_tokens);
            let loads = &self.decoder_loads;
            let d = self.router.pick(|i| read_load(&loads[i]));
            r.decode_worker = Some(d as u32);
            // Count the offer at once so least-loaded routing sees it before the message lands.
            self.decoder_loads[d].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.decoders[d].do_send(KvHandoff::<E> { record: r, kv, from: ctx.address() });
        }
        self.plan.clear();
        self.stopped.clear();
        self.publish_load();
        self.try_start(ctx);
    }
}

impl<E: Engine> Actor for PrefillWorker<E> {
    type Context = Context<Self>;
}

impl<E: Engine> Scheduling for PrefillWorker<E> {
    fn kick_state(&mut self) -> &mut Kick {
        &mut self.kick
    }

    fn env(&self) -> &WorkerEnv {
        &self.env
    }

    fn step_done(&mut self, ctx: &mut Context<Self>) {
        self.finish_step(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.try_start(ctx);
    }
}

impl<E: Engine> Handler<Submit> for PrefillWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        self.queue.push(msg.record.spec.prompt_tokens, msg.record);
        self.publish_load();
        self.kick(ctx);
    }
}

impl<E: Engine> Handler<KvReleased> for PrefillWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: KvReleased, ctx: &mut Context<Self>) {
        self.kv.release(msg.tokens);
        self.kick(ctx);
    }
}
