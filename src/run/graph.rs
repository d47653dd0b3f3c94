//! Builds the actor graph of one topology and waits for the collector's verdict.
//!
//! The same graph serves both modes. Simulate: one thread, a virtual clock, a [`SimEngine`]
//! per worker. Execute: the wall clock, and every worker on its own [`Arbiter`] thread with a
//! [`CandleEngine`] (and its own compute pool), so prefill and decode really overlap.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::decode_worker::{DecodeWorker, DecodeWorkerConfig};
use crate::actors::enqueuer::{Enqueuer, EnqueuerConfig, RequestLimits};
use crate::actors::fused_worker::{FusedWorker, FusedWorkerConfig};
use crate::actors::messages::Submit;
use crate::actors::metrics_collector::{MetricsCollector, Results, RunResult};
use crate::actors::prefill_worker::{PrefillWorker, PrefillWorkerConfig};
use crate::actors::worker_env::{Gauge, LoadGauge, MakeEngine, WorkerEnv};
use crate::clock::RunClock;
use crate::engine::candle::device::DeviceSpec;
use crate::engine::candle::engine::CandleEngine;
use crate::engine::candle::forward::{DeviceNet, WorkerNet};
use crate::engine::candle::prompts::PromptSource;
use crate::engine::candle::Model;
use crate::engine::sim::{CostModel, SimEngine};
use crate::engine::Engine;
use crate::metrics::summary::TopologyInfo;
use crate::scenario::{Scenario, Topology, TopologyKind};
use crate::sched::fused::FusedLimits;
use crate::sched::link::LinkQueue;
use crate::sched::prefill_queue::PrefillLimits;
use crate::sched::router::Router;

/// Which pool a worker belongs to, for its engine's thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Prefill and fused workers.
    Prefill,
    Decode,
}

/// Keeps the noise's draws apart from the workload's, which the same seed also drives.
const NOISE_SALT: u64 = 0x6E6F_6973_6520_7061;

/// Builds a worker's engine (by pool and index in it), on the worker's own thread; again when
/// the worker restarts.
pub type EngineFactory<E> = Arc<dyn Fn(Role, u32) -> E + Send + Sync>;

pub async fn drive_simulated(
    scenario: &Scenario,
    topology: &Topology,
    out: Results,
    cost: Arc<CostModel>,
) -> RunResult {
    // Each phase's cost model at its own tensor-parallel degree (validated to fit), and its KV
    // capacity from that model unless the scenario set one.
    // A calibration profile: each worker takes the fit of its own thread count, and a split
    // topology without a link model pays the measured in-process handoff.
    let b = topology.batching;
    let role_cost = |tp: Option<u32>, threads: usize| -> Result<(Arc<CostModel>, u64), String> {
        let cost = Arc::new(cost.for_threads(threads)?);
        let Some(tp) = tp else {
            return Ok((cost, b.kv_capacity_tokens));
        };
        let c = cost.with_tp(tp)?;
        let kv = match (b.kv_capacity_explicit, c.default_kv_capacity_tokens()) {
            (false, Some(kv)) => kv,
            _ => b.kv_capacity_tokens,
        };
        Ok((Arc::new(c), kv))
    };
    let (prefill_cost, prefill_kv) = role_cost(topology.tp.prefill, topology.threads.prefill)?;
    let (decode_cost, decode_kv) = role_cost(topology.tp.decode, topology.threads.decode)?;
    let mut topology = topology.clone();
    if let (TopologyKind::Split { link: link @ None, .. }, Some(ns)) = (&mut topology.kind, cost.handoff_ns()) {
        *link = Some(crate::sched::link::Link { bandwidth_bytes_per_s: f64::INFINITY, latency_ns: ns });
    }
    let topology = &topology;
    // Each worker draws its own machine noise (profiles that measured it), seeded by the
    // scenario's seed: the same seed, the same run.
    let seed = scenario.seed;
    let factory: EngineFactory<SimEngine> = Arc::new(move |role, index| {
        let noise_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((role as u64) << 32 | index as u64) ^ NOISE_SALT;
        SimEngine::new(if role == Role::Decode { decode_cost.clone() } else { prefill_cost.clone() }, noise_seed)
    });
    let kv = KvCapacity { prefill: prefill_kv, decode: decode_kv, context: None };
    drive(scenario, topology, out, RunClock::simulated(), factory, kv).await
}

pub async fn drive_executed(
    scenario: &Scenario,
    topology: &Topology,
    out: Results,
    model: Arc<Model>,
    prompts: Arc<PromptSource>,
) -> RunResult {
    let threads = topology.threads;
    let generation = scenario.model.generation;
    let context = Some(model.llama.config.context as u64);
    let factory: EngineFactory<CandleEngine> =
        Arc::new(move |role, _| CandleEngine::new(model.clone(), threads.of(role), prompts.clone(), generation));
    let kv = topology.batching.kv_capacity_tokens;
    drive(scenario, topology, out, RunClock::wall(), factory, KvCapacity { prefill: kv, decode: kv, context }).await
}

/// Execute mode through the tensor model: each worker on its device with a stream of its own
/// (opened here, before the clock starts; a restarted worker gets its own stream back).
pub async fn drive_device(
    scenario: &Scenario,
    topology: &Topology,
    out: Results,
    nets: &HashMap<DeviceSpec, Arc<DeviceNet>>,
    prompts: Arc<PromptSource>,
) -> RunResult {
    let (prefill_n, decode_n) = match topology.kind {
        TopologyKind::Fused { workers, .. } => (workers, 0),
        TopologyKind::Split { prefill_workers, decode_workers, .. } => (prefill_workers, decode_workers),
    };
    let open = |spec: DeviceSpec, n: u32| -> Result<Vec<WorkerNet>, String> {
        let net = nets.get(&spec).ok_or_else(|| format!("no model was prepared on {spec}"))?;
        (0..n).map(|_| WorkerNet::open(net.clone(), spec).map_err(|e| format!("opening {spec}: {e}"))).collect()
    };
    let pools = [open(topology.devices.prefill, prefill_n)?, open(topology.devices.decode, decode_n)?];
    let context = nets.values().map(|n| n.llama.config.context as u64).min();
    let threads = topology.threads;
    let generation = scenario.model.generation;
    let factory: EngineFactory<CandleEngine<WorkerNet>> = Arc::new(move |role, index| {
        let net = pools[(role == Role::Decode) as usize][index as usize].clone();
        CandleEngine::with_net(net, threads.of(role), prompts.clone(), generation)
    });
    let kv = topology.batching.kv_capacity_tokens;
    drive(scenario, topology, out, RunClock::wall(), factory, KvCapacity { prefill: kv, decode: kv, context }).await
}

/// KV tokens per worker of each pool (fused workers use `prefill`), and the model's context
/// (execute mode), past which no request runs.
#[derive(Debug, Clone, Copy)]
struct KvCapacity {
    prefill: u64,
    decode: u64,
    context: Option<u64>,
}

/// Starts actors: on the current thread (virtual clock), or each on a new arbiter thread.
struct Spawner {
    own_threads: bool,
    arbiters: Vec<Arbiter>,
}

impl Spawner {
    fn spawn<A: Actor<Context = Context<A>>>(&mut self, make: impl FnOnce() -> A + Send + 'static) -> Addr<A> {
        if self.own_threads {
            let arbiter = Arbiter::new();
            let addr = A::start_in_arbiter(&arbiter.handle(), move |_| make());
            self.arbiters.push(arbiter);
            addr
        } else {
            make().start()
        }
    }

    fn stop(self) {
        for a in self.arbiters {
            a.stop();
            a.join().ok();
        }
    }
}

/// Runs the topology to completion inside the current actix system.
async fn drive<E: Engine>(
    scenario: &Scenario,
    topology: &Topology,
    out: Results,
    clock: RunClock,
    factory: EngineFactory<E>,
    kv: KvCapacity,
) -> RunResult {
    let (tx, rx) = oneshot::channel();
    let info = TopologyInfo {
        scenario: scenario.name.clone(),
        topology: topology.name.clone(),
        kind: topology.kind_name().into(),
        layout: topology.layout(),
        workers: topology.workers(),
    };
    // Execute-mode runs also leave a trace of what ran, for the simulator to replay.
    let record_trace = !clock.is_simulated();
    let collector =
        MetricsCollector::new(out, info, scenario.workload.class_names.clone(), scenario.slo, tx, record_trace)
            .map_err(|e| format!("cannot create result files: {e}"))?
            .start();
    // The enqueuer's address exists before it starts: workers send it the requests they lose.
    let enqueuer_ctx: Context<Enqueuer> = Context::new();
    let enqueuer = enqueuer_ctx.address().recipient();
    let machine = Arc::new(crate::actors::worker_env::MachineLoad::default());
    let env = |name: String, index: u32| -> (WorkerEnv, LoadGauge) {
        let gauge = Gauge::new();
        let env = WorkerEnv {
            name,
            index,
            clock,
            collector: collector.clone(),
            enqueuer: enqueuer.clone(),
            gauge,
            last_end_ns: Default::default(),
            machine: machine.clone(),
            busy: Default::default(),
            single_decode: Default::default(),
        };
        let g = env.gauge.clone();
        (env, g)
    };
    let make = |role: Role, index: u32| -> MakeEngine<E> {
        let f = factory.clone();
        Arc::new(move || f(role, index))
    };
    let mut spawner = Spawner { own_threads: !clock.is_simulated(), arbiters: Vec::new() };
    let b = topology.batching;
    let mut targets: Vec<Recipient<Submit>> = Vec::new();
    let mut loads = Vec::new();
    let router = match &topology.kind {
        TopologyKind::Fused { workers, policy, router } => {
            let limits = FusedLimits {
                prefill_token_budget: b.prefill_token_budget,
                max_batch: b.max_decode_batch as usize,
                kv_capacity_tokens: kv.prefill,
            };
            for i in 0..*workers {
                let (env, load) = env(format!("fused-{i}"), i);
                let c = FusedWorkerConfig {
                    faults: topology.faults_of(&env.name),
                    env,
                    make_engine: make(Role::Prefill, i),
                    policy: *policy,
                    limits,
                    max_queued: b.max_queued_requests,
                };
                let addr = spawner.spawn(move || FusedWorker::new(c));
                targets.push(addr.recipient());
                loads.push(load);
            }
            Router::new(*router, *workers as usize)
        }
        TopologyKind::Split { prefill_workers, decode_workers, router, link } => {
            let mut decoders = Vec::new();
            let mut decoder_loads = Vec::new();
            for j in 0..*decode_workers {
                let (env, load) = env(format!("decode-{j}"), j);
                let c = DecodeWorkerConfig {
                    faults: topology.faults_of(&env.name),
                    env,
                    make_engine: make(Role::Decode, j),
                    kv_capacity_tokens: kv.decode,
                    max_batch: b.max_decode_batch as usize,
                    link: LinkQueue::new(*link),
                };
                decoders.push(spawner.spawn(move || DecodeWorker::new(c)));
                decoder_loads.push(load);
            }
            for i in 0..*prefill_workers {
                let (env, load) = env(format!("prefill-{i}"), i);
                let c = PrefillWorkerConfig {
                    faults: topology.faults_of(&env.name),
                    env,
                    make_engine: make(Role::Prefill, i),
                    limits: PrefillLimits { token_budget: b.prefill_token_budget, max_requests: usize::MAX },
                    kv_capacity_tokens: kv.prefill,
                    max_queued: b.max_queued_requests,
                    decoders: decoders.clone(),
                    decoder_gauges: decoder_loads.clone(),
                    // Prefill workers start their round-robin at different decode workers.
                    router: Router::starting_at(*router, *decode_workers as usize, i as usize),
                };
                let addr = spawner.spawn(move || PrefillWorker::new(c));
                targets.push(addr.recipient());
                loads.push(load);
            }
            Router::new(*router, *prefill_workers as usize)
        }
    };
    let limits = match topology.kind {
        TopologyKind::Fused { .. } => {
            RequestLimits { max_prompt_tokens: kv.prefill, max_total_tokens: kv.prefill, context_tokens: kv.context }
        }
        TopologyKind::Split { .. } => {
            RequestLimits { max_prompt_tokens: kv.prefill, max_total_tokens: kv.decode, context_tokens: kv.context }
        }
    };
    enqueuer_ctx.run(Enqueuer::new(EnqueuerConfig {
        stream: scenario.workload.stream(),
        clock,
        targets,
        gauges: loads,
        router,
        limits,
        max_retries: scenario.max_retries,
        collector,
    }));
    let result = rx.await.map_err(|_| "the metrics collector stopped without a result".to_owned());
    spawner.stop();
    result?
}
