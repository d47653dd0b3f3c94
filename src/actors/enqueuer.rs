//! Enqueuer: turns the workload into arrivals at their times, checks each request can ever be
//! served, and routes it to a worker.

use actix::prelude::*;

use super::messages::{ArrivalsEnded, RunAborted, Submit};
use super::metrics_collector::MetricsCollector;
use super::worker_env::{read_load, LoadGauge};
use crate::clock::RunClock;
use crate::metrics::record::RequestRecord;
use crate::sched::router::Router;
use crate::workload::{RequestSpec, RequestStream};

/// The largest request the topology can hold, from its workers' KV capacities.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Prompt tokens a prefill (or fused) worker can hold.
    pub max_prompt_tokens: u64,
    /// Prompt + output tokens a decode (or fused) worker can hold.
    pub max_total_tokens: u64,
}

/// How an Enqueuer is set up.
pub struct EnqueuerConfig {
    pub stream: RequestStream,
    pub clock: RunClock,
    /// The workers requests go to, with the load gauges the router reads.
    pub targets: Vec<Recipient<Submit>>,
    pub loads: Vec<LoadGauge>,
    pub router: Router,
    pub limits: RequestLimits,
    pub collector: Addr<MetricsCollector>,
}

pub struct Enqueuer {
    c: EnqueuerConfig,
    next: Option<RequestSpec>,
    submitted: u64,
}

impl Enqueuer {
    pub fn new(config: EnqueuerConfig) -> Enqueuer {
        Enqueuer { c: config, next: None, submitted: 0 }
    }

    /// Submits every request due by now, then sleeps until the next one.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = self.c.clock.now_ns();
        loop {
            let spec = match self.next.take().or_else(|| self.c.stream.next()) {
                Some(s) => s,
                None => {
                    self.c.collector.do_send(ArrivalsEnded { total: self.submitted });
                    return;
                }
            };
            if spec.arrival_ns > now {
                let wait = spec.arrival_ns - now;
                self.next = Some(spec);
                ctx.run_later(self.c.clock.wait(wait), |act, ctx| act.pump(ctx));
                return;
            }
            if let Err(reason) = self.check(&spec) {
                self.c.collector.do_send(RunAborted { reason });
                return;
            }
            let loads = &self.c.loads;
            let w = self.c.router.pick(|i| read_load(&loads[i]));
            self.submitted += 1;
            self.c.targets[w].do_send(Submit { record: Box::new(RequestRecord::new(spec)) });
        }
    }

    fn check(&self, s: &RequestSpec) -> Result<(), String> {
        let l = self.c.limits;
        if s.prompt_tokens > l.max_prompt_tokens || s.prompt_tokens + s.output_tokens > l.max_total_tokens {
            return Err(format!(
                "request {} ({} prompt + {} output tokens) can never fit a worker's KV capacity \
                 ({} prompt tokens on prefill, {} tokens in all on decode); raise \
                 batching.kv_capacity_tokens or bound the length distributions with `max`",
                s.id, s.prompt_tokens, s.output_tokens, l.max_prompt_tokens, l.max_total_tokens
            ));
        }
        Ok(())
    }
}

impl Actor for Enqueuer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}
