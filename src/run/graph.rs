//! Builds the actor graph of one topology and waits for the collector's verdict.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use actix::prelude::*;
use indicatif::ProgressBar;
use tokio::sync::oneshot;

use crate::actors::decode_worker::DecodeWorker;
use crate::actors::enqueuer::{Enqueuer, EnqueuerConfig, RequestLimits};
use crate::actors::fused_worker::FusedWorker;
use crate::actors::messages::Submit;
use crate::actors::metrics_collector::{MetricsCollector, RunResult};
use crate::actors::prefill_worker::{PrefillWorker, PrefillWorkerConfig};
use crate::actors::worker_env::{LoadGauge, WorkerEnv};
use crate::clock::RunClock;
use crate::engine::sim::SimEngine;
use crate::engine::Engine;
use crate::metrics::summary::TopologyInfo;
use crate::scenario::{Scenario, Topology, TopologyKind};
use crate::sched::fused::FusedLimits;
use crate::sched::link::LinkQueue;
use crate::sched::prefill_queue::PrefillLimits;
use crate::sched::router::Router;

/// Runs the topology to completion inside the current actix system.
pub async fn drive(scenario: &Scenario, topology: &Topology, dir: PathBuf, bar: ProgressBar) -> RunResult {
    let engine = SimEngine::new(scenario.cost.clone());
    drive_with(scenario, topology, dir, bar, move || engine.clone()).await
}

/// Same, with any engine: `make_engine` builds one engine per worker.
pub async fn drive_with<E: Engine>(
    scenario: &Scenario,
    topology: &Topology,
    dir: PathBuf,
    bar: ProgressBar,
    make_engine: impl Fn() -> E,
) -> RunResult {
    let clock = RunClock::simulated();
    let (tx, rx) = oneshot::channel();
    let info = TopologyInfo {
        scenario: scenario.name.clone(),
        topology: topology.name.clone(),
        kind: topology.kind_name().into(),
        layout: topology.layout(),
        workers: topology.workers(),
    };
    let collector = MetricsCollector::new(dir, info, scenario.workload.class_names.clone(), scenario.slo, bar, tx)
        .map_err(|e| format!("cannot create result files: {e}"))?
        .start();
    let env = |name: String, index: u32| -> (WorkerEnv, LoadGauge) {
        let load: LoadGauge = Arc::new(AtomicU64::new(0));
        (WorkerEnv { name, index, clock, collector: collector.clone(), load: load.clone() }, load)
    };
    let b = topology.batching;
    let mut targets: Vec<Recipient<Submit>> = Vec::new();
    let mut loads = Vec::new();
    let router = match &topology.kind {
        TopologyKind::Fused { workers, policy, router } => {
            let limits = FusedLimits {
                prefill_token_budget: b.prefill_token_budget,
                max_batch: b.max_decode_batch as usize,
                kv_capacity_tokens: b.kv_capacity_tokens,
            };
            for i in 0..*workers {
                let (env, load) = env(format!("fused-{i}"), i);
                targets.push(FusedWorker::new(env, make_engine(), *policy, limits).start().recipient());
                loads.push(load);
            }
            Router::new(*router, *workers as usize)
        }
        TopologyKind::Split { prefill_workers, decode_workers, router, link } => {
            let mut decoders = Vec::new();
            let mut decoder_loads = Vec::new();
            for j in 0..*decode_workers {
                let (env, load) = env(format!("decode-{j}"), j);
                let w = DecodeWorker::new(
                    env,
                    make_engine(),
                    b.kv_capacity_tokens,
                    b.max_decode_batch as usize,
                    LinkQueue::new(*link),
                );
                decoders.push(w.start());
                decoder_loads.push(load);
            }
            for i in 0..*prefill_workers {
                let (env, load) = env(format!("prefill-{i}"), i);
                let config = PrefillWorkerConfig {
                    env,
                    engine: make_engine(),
                    limits: PrefillLimits { token_budget: b.prefill_token_budget, max_requests: usize::MAX },
                    kv_capacity_tokens: b.kv_capacity_tokens,
                    decoders: decoders.clone(),
                    decoder_loads: decoder_loads.clone(),
                    // Prefill workers start their round-robin at different decode workers.
                    router: Router::starting_at(*router, *decode_workers as usize, i as usize),
                };
                targets.push(PrefillWorker::new(config).start().recipient());
                loads.push(load);
            }
            Router::new(*router, *prefill_workers as usize)
        }
    };
    let limits = RequestLimits { max_prompt_tokens: b.kv_capacity_tokens, max_total_tokens: b.kv_capacity_tokens };
    Enqueuer::new(EnqueuerConfig {
        stream: scenario.workload.stream(),
        clock,
        targets,
        loads,
        router,
        limits,
        collector,
    })
    .start();
    rx.await.map_err(|_| "the metrics collector stopped without a result".to_owned())?
}
