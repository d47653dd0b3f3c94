//! DecodeWorker: continuous batching over requests handed over by prefill workers. A handoff
//! waits until the worker has a batch slot and KV capacity for it, then its KV crosses the link,
//! then it joins the next step; it leaves the step it produces its last token.

use actix::prelude::*;

use super::faults::Recover;
use super::messages::{KvHandoff, KvReleased};
use super::prefill_worker::PrefillWorker;
use super::worker_env::{Kick, MakeEngine, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::StepPlan;
use crate::engine::{admit_and_step, Engine, InjectedFault, KvHandle};
use crate::metrics::record::RequestRecord;
use crate::scenario::FaultSpec;
use crate::sched::decode_admission::DecodeAdmission;
use crate::sched::link::LinkQueue;
use crate::sched::{SeqLens, Tracked};

/// A request on the decode side, with its KV until the engine takes it.
pub struct Inbound<E: Engine> {
    record: Box<RequestRecord>,
    kv: Option<E::Kv>,
    from: Addr<PrefillWorker<E>>,
    /// The prefill worker's life that made the KV, for [`KvReleased`].
    from_generation: u32,
}

impl<E: Engine> Inbound<E> {
    /// Tells the prefill worker the KV has left it.
    fn release(&self, tokens: u64) {
        self.from.do_send(KvReleased { tokens, generation: self.from_generation });
    }
}

impl<E: Engine> Tracked for Inbound<E> {
    fn request_id(&self) -> u64 {
        self.record.spec.id
    }
}

/// How a decode worker is set up.
pub struct DecodeWorkerConfig<E: Engine> {
    pub env: WorkerEnv,
    pub make_engine: MakeEngine<E>,
    pub kv_capacity_tokens: u64,
    pub max_batch: usize,
    pub link: LinkQueue,
    pub faults: Vec<FaultSpec>,
}

pub struct DecodeWorker<E: Engine> {
    env: WorkerEnv,
    make_engine: MakeEngine<E>,
    engine: E,
    state: DecodeAdmission<Inbound<E>>,
    link: LinkQueue,
    plan: StepPlan,
    busy: bool,
    kick: Kick,
    stamp: StepStamp,
    /// Requests the running step ended with an end-of-sequence token.
    stopped: Vec<u64>,
    faults: Vec<FaultSpec>,
    epoch: u32,
    /// Bumped by a crash: transfers that started before it are lost when they land.
    generation: u32,
}

impl<E: Engine> DecodeWorker<E> {
    pub fn new(c: DecodeWorkerConfig<E>) -> Self {
        DecodeWorker {
            env: c.env,
            engine: (c.make_engine)(),
            make_engine: c.make_engine,
            state: DecodeAdmission::new(c.kv_capacity_tokens, c.max_batch),
            link: c.link,
            plan: StepPlan::default(),
            busy: false,
            kick: Kick::default(),
            stamp: StepStamp::default(),
            stopped: Vec::new(),
            faults: c.faults,
            epoch: 0,
            generation: 0,
        }
    }

    fn publish_load(&self) {
        self.env.set_load(self.state.load() as u64);
    }

    /// Starts the transfer of every offer that now fits.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        while let Some((lens, mut inbound)) = self.state.admit_next() {
            let now = self.env.now();
            let bytes = inbound.kv.as_ref().map_or(0, |kv| kv.bytes());
            let (start, end) = self.link.book(now, bytes);
            inbound.record.kv_transfer_start_ns = Some(start);
            inbound.record.kv_bytes = bytes;
            if end == now {
                self.transfer_done(lens, inbound);
            } else {
                let generation = self.generation;
                self.env.clock.later(ctx, end - now, move |act: &mut Self, ctx| {
                    if act.generation != generation {
                        // The worker crashed while the KV was on its way.
                        inbound.release(lens.prompt_tokens);
                        return act.env.lost([inbound.record], "worker crashed during the KV transfer");
                    }
                    act.transfer_done(lens, inbound);
                    act.kick(ctx);
                });
            }
        }
    }

    fn transfer_done(&mut self, lens: SeqLens, mut inbound: Inbound<E>) {
        // Installing the cache is part of its transfer: across devices it is a copy.
        if let Some(kv) = inbound.kv.take() {
            if let Err(e) = self.engine.put_kv(inbound.record.spec.id, kv) {
                inbound.release(lens.prompt_tokens);
                self.state.abandon(lens);
                return self.env.lost([inbound.record], &e.to_string());
            }
        }
        inbound.record.kv_transfer_end_ns = Some(self.env.now());
        inbound.release(lens.prompt_tokens);
        self.state.arrived(lens, inbound);
    }

    fn try_step(&mut self, ctx: &mut Context<Self>) {
        self.fire_due(ctx);
        if self.busy || !self.env.gauge.is_up() {
            return;
        }
        let now = self.env.now();
        if !self.state.begin_step(|i| i.record.decode_start_ns = Some(now)) {
            return;
        }
        self.plan.clear();
        self.state.set.fill_plan(&mut self.plan);
        self.busy = true;
        self.stamp = self.env.stamp(&self.plan, self.state.kv().used(), self.state.waiting() as u64);
        self.stamp.mark(&mut self.plan);
        let result = admit_and_step(&mut self.engine, &[], &self.plan).map(|out| {
            self.stopped = out.stopped;
            out.wait_ns
        });
        self.launch(ctx, result);
    }

    fn end_step(&mut self, ctx: &mut Context<Self>) {
        let now = self.env.now();
        // The step's row goes first: the collector closes the files on the last request.
        self.env.iteration(&self.plan, self.stamp);
        for r in self.state.end_step(&std::mem::take(&mut self.stopped)) {
            let text = self.engine.finish(r.payload.record.spec.id);
            self.env.finished(r.payload.record, now, r.produced, text);
        }
        self.busy = false;
        self.admit(ctx);
        self.publish_load();
        self.try_step(ctx);
    }
}

impl<E: Engine> Actor for DecodeWorker<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm_faults(ctx);
    }
}

impl<E: Engine> Scheduling for DecodeWorker<E> {
    fn kick_state(&mut self) -> &mut Kick {
        &mut self.kick
    }

    fn env(&self) -> &WorkerEnv {
        &self.env
    }

    fn epoch(&self) -> u32 {
        self.epoch
    }

    fn step_done(&mut self, ctx: &mut Context<Self>) {
        self.end_step(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.admit(ctx);
        self.try_step(ctx);
    }
}

impl<E: Engine> Recover for DecodeWorker<E> {
    fn drain_all(&mut self) -> Vec<Box<RequestRecord>> {
        let mut all: Vec<Box<RequestRecord>> = self.drain_started();
        for (lens, inbound) in self.state.drain_offers() {
            inbound.release(lens.prompt_tokens);
            all.push(inbound.record);
        }
        self.state.forget_inbound();
        all
    }

    fn drain_started(&mut self) -> Vec<Box<RequestRecord>> {
        self.state.drain_started().into_iter().map(|i| i.record).collect()
    }

    fn reset(&mut self, crashed: bool) {
        self.engine = (self.make_engine)();
        self.epoch += 1;
        self.busy = false;
        self.plan.clear();
        self.stopped.clear();
        if crashed {
            self.generation += 1;
        }
        self.publish_load();
    }

    fn inject(&mut self, fault: InjectedFault) {
        self.engine.inject(fault);
    }

    fn pending_faults(&mut self) -> &mut Vec<FaultSpec> {
        &mut self.faults
    }
}

impl<E: Engine> Handler<KvHandoff<E>> for DecodeWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: KvHandoff<E>, ctx: &mut Context<Self>) {
        let inbound = Inbound { record: msg.record, kv: Some(msg.kv), from: msg.from, from_generation: msg.generation };
        if !self.env.gauge.is_up() {
            inbound.release(inbound.record.spec.prompt_tokens);
            return self.env.unserved([inbound.record], "worker is down");
        }
        let lens = SeqLens {
            prompt_tokens: inbound.record.spec.prompt_tokens,
            output_tokens: inbound.record.spec.output_tokens,
        };
        self.state.offer(lens, inbound);
        self.admit(ctx);
        self.publish_load();
        self.kick(ctx);
    }
}
