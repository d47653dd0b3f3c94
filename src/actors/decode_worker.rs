//! DecodeWorker: continuous batching over requests handed over by prefill workers. A handoff
//! waits until the worker has a batch slot and KV capacity for it, then its KV crosses the link,
//! then it joins the next step; it leaves the step it produces its last token.

use actix::prelude::*;

use super::messages::{KvHandoff, KvReleased};
use super::prefill_worker::PrefillWorker;
use super::worker_env::{Kick, Scheduling, StepStamp, WorkerEnv};
use crate::engine::step::StepPlan;
use crate::engine::{Engine, KvHandle};
use crate::metrics::record::RequestRecord;
use crate::sched::decode_admission::DecodeAdmission;
use crate::sched::link::LinkQueue;
use crate::sched::{SeqLens, Tracked};

/// A request on the decode side, with its KV until the engine takes it.
pub struct Inbound<E: Engine> {
    record: Box<RequestRecord>,
    kv: Option<E::Kv>,
    from: Addr<PrefillWorker<E>>,
}

impl<E: Engine> Tracked for Inbound<E> {
    fn request_id(&self) -> u64 {
        self.record.spec.id
    }
}

pub struct DecodeWorker<E: Engine> {
    env: WorkerEnv,
    engine: E,
    state: DecodeAdmission<Inbound<E>>,
    link: LinkQueue,
    plan: StepPlan,
    busy: bool,
    kick: Kick,
    stamp: StepStamp,
    /// Requests the running step ended with an end-of-sequence token.
    stopped: Vec<u64>,
}

impl<E: Engine> DecodeWorker<E> {
    pub fn new(env: WorkerEnv, engine: E, kv_capacity_tokens: u64, max_batch: usize, link: LinkQueue) -> Self {
        DecodeWorker {
            env,
            engine,
            state: DecodeAdmission::new(kv_capacity_tokens, max_batch),
            link,
            plan: StepPlan::default(),
            busy: false,
            kick: Kick::default(),
            stamp: StepStamp::default(),
            stopped: Vec::new(),
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
                self.transfer_done(lens, inbound, ctx);
            } else {
                ctx.run_later(self.env.clock.wait(end - now), move |act, ctx| {
                    act.transfer_done(lens, inbound, ctx);
                    act.kick(ctx);
                });
            }
        }
    }

    fn transfer_done(&mut self, lens: SeqLens, mut inbound: Inbound<E>, _ctx: &mut Context<Self>) {
        inbound.record.kv_transfer_end_ns = Some(self.env.now());
        if let Some(kv) = inbound.kv.take() {
            self.engine.put_kv(inbound.record.spec.id, kv);
        }
        inbound.from.do_send(KvReleased { tokens: lens.prompt_tokens });
        self.state.arrived(lens, inbound);
    }

    fn try_step(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let now = self.env.now();
        if !self.state.begin_step(|i| i.record.decode_start_ns = Some(now)) {
            return;
        }
        self.plan.clear();
        self.state.set.fill_plan(&mut self.plan);
        self.busy = true;
        self.stamp = self.env.stamp(self.state.kv().used(), self.state.waiting() as u64);
        let result = self.engine.step(&self.plan).map(|out| {
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
}

impl<E: Engine> Scheduling for DecodeWorker<E> {
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

impl<E: Engine> Handler<KvHandoff<E>> for DecodeWorker<E> {
    type Result = ();

    fn handle(&mut self, msg: KvHandoff<E>, ctx: &mut Context<Self>) {
        let lens =
            SeqLens { prompt_tokens: msg.record.spec.prompt_tokens, output_tokens: msg.record.spec.output_tokens };
        self.state.offer(lens, Inbound { record: msg.record, kv: Some(msg.kv), from: msg.from });
        self.admit(ctx);
        self.publish_load();
        self.kick(ctx);
    }
}
