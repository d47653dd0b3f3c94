//! [`CandleEngine`]: the [`Engine`] of execute mode. Each worker has one, with its own rayon
//! thread pool (the CPU counterpart of giving each phase its own GPUs) over the shared weights.

use std::collections::HashMap;
use std::sync::Arc;

use super::forward::Forward;
use super::prompts::PromptSource;
use super::sampler::{Sampler, Sampling};
use super::Model;
use crate::engine::step::StepPlan;
use crate::engine::{Engine, EngineError, InjectedFault, KvHandle, StepOutcome};
use crate::workload::RequestSpec;

/// How an execute-mode worker generates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationConfig {
    pub sampling: Sampling,
    /// Produce exactly the requested output length, ignoring end-of-sequence tokens.
    pub ignore_eos: bool,
}

/// One request's state: its KV cache, prompt, sampler and output so far. This is what a
/// `KvHandoff` carries between workers (moved, never copied).
#[derive(Debug)]
pub struct CandleSeq<K> {
    pub kv: K,
    prompt: Vec<u32>,
    sampler: Sampler,
    /// Output tokens so far (the last one is the next decode step's input).
    generated: Vec<u32>,
}

impl<K: KvHandle> KvHandle for CandleSeq<K> {
    fn bytes(&self) -> u64 {
        self.kv.bytes()
    }
}

/// The engine of execute mode, over the CPU model (the default) or a tensor model on a
/// worker's device ([`super::forward::WorkerNet`]).
pub struct CandleEngine<F: Forward = Arc<Model>> {
    net: F,
    pool: rayon::ThreadPool,
    prompts: Arc<PromptSource>,
    generation: GenerationConfig,
    seqs: HashMap<u64, CandleSeq<F::Kv>>,
    /// A scenario fault for the next step.
    armed: Option<InjectedFault>,
}

impl CandleEngine<Arc<Model>> {
    pub fn new(model: Arc<Model>, threads: usize, prompts: Arc<PromptSource>, generation: GenerationConfig) -> Self {
        CandleEngine::with_net(model, threads, prompts, generation)
    }
}

impl<F: Forward> CandleEngine<F> {
    /// `threads`: the worker's CPU compute pool (on a GPU, the CPU side of each step).
    pub fn with_net(net: F, threads: usize, prompts: Arc<PromptSource>, generation: GenerationConfig) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("pdsim-compute-{i}"))
            .build()
            .expect("a rayon pool builds");
        CandleEngine { net, pool, prompts, generation, seqs: HashMap::new(), armed: None }
    }

    fn err(e: candle_core::Error) -> EngineError {
        EngineError::Step(super::error_message(&e))
    }
}

/// A sequence taken out for a step: id, state, the step's tokens, whether it emits a token.
type Taken<K> = (u64, CandleSeq<K>, Vec<u32>, bool);

impl<F: Forward> Engine for CandleEngine<F> {
    type Kv = CandleSeq<F::Kv>;

    fn admit(&mut self, spec: &RequestSpec) -> Result<(), EngineError> {
        let prompt = self.prompts.prompt(spec);
        if prompt.len() as u64 != spec.prompt_tokens {
            return Err(EngineError::Step(format!(
                "request {}: prompt has {} tokens, the workload said {}",
                spec.id,
                prompt.len(),
                spec.prompt_tokens
            )));
        }
        let capacity = (spec.prompt_tokens + spec.output_tokens) as usize;
        let kv = self.net.new_kv(capacity).map_err(Self::err)?;
        let sampler = Sampler::new(self.generation.sampling, spec.id);
        self.seqs.insert(spec.id, CandleSeq { kv, prompt, sampler, generated: Vec::new() });
        Ok(())
    }

    fn step(&mut self, plan: &StepPlan) -> Result<StepOutcome, EngineError> {
        let armed = self.armed.take();
        if armed == Some(InjectedFault::Error) {
            return Err(EngineError::Step(InjectedFault::Error.message().into()));
        }
        // Take the step's sequences out of the map so each can lend its cache mutably.
        let mut taken: Vec<Taken<F::Kv>> = Vec::with_capacity(plan.prefill.len() + plan.decode.len());
        for c in &plan.prefill {
            let seq = self.seqs.remove(&c.request).ok_or_else(|| missing(c.request))?;
            let end = (c.offset + c.tokens) as usize;
            let tokens = seq.prompt[c.offset as usize..end].to_vec();
            let emits = end == seq.prompt.len();
            taken.push((c.request, seq, tokens, emits));
        }
        for d in &plan.decode {
            let seq = self.seqs.remove(&d.request).ok_or_else(|| missing(d.request))?;
            let last = *seq.generated.last().ok_or_else(|| missing(d.request))?;
            taken.push((d.request, seq, vec![last], true));
        }
        let net = &self.net;
        let logits = self.pool.install(|| {
            crate::engine::handled(|| {
                if armed == Some(InjectedFault::Panic) {
                    // Raised on a compute thread, where a real kernel failure would be.
                    panic!("{}", InjectedFault::Panic.message());
                }
                let mut inputs: Vec<(&[u32], &mut F::Kv)> =
                    taken.iter_mut().map(|(_, seq, tokens, _)| (tokens.as_slice(), &mut seq.kv)).collect();
                net.forward(&mut inputs)
            })
        });
        let mut stopped = Vec::new();
        let result = logits.map(|logits| {
            for ((id, seq, _, emits), row) in taken.iter_mut().zip(&logits) {
                if *emits {
                    let next = seq.sampler.sample(row);
                    seq.generated.push(next);
                    if !self.generation.ignore_eos && Some(next) == net.eos() {
                        stopped.push(*id);
                    }
                }
            }
        });
        for (id, seq, _, _) in taken {
            self.seqs.insert(id, seq);
        }
        result.map_err(Self::err)?;
        Ok(StepOutcome { wait_ns: 0, stopped })
    }

    fn take_kv(&mut self, request: u64, _context_tokens: u64) -> CandleSeq<F::Kv> {
        self.seqs.remove(&request).expect("take_kv: the request was prefilled on this worker")
    }

    fn put_kv(&mut self, request: u64, seq: CandleSeq<F::Kv>) -> Result<(), EngineError> {
        let CandleSeq { kv, prompt, sampler, generated } = seq;
        let kv = self
            .net
            .receive(kv)
            .map_err(|e| EngineError::Step(format!("receiving the KV cache: {}", super::error_message(&e))))?;
        self.seqs.insert(request, CandleSeq { kv, prompt, sampler, generated });
        Ok(())
    }

    /// The answer's text, which ends before the end-of-sequence token (as `pdsim generate`'s).
    fn finish(&mut self, request: u64) -> Option<String> {
        let seq = self.seqs.remove(&request)?;
        let ids = match (seq.generated.split_last(), self.net.eos()) {
            (Some((&last, rest)), Some(eos)) if last == eos => rest,
            _ => &seq.generated[..],
        };
        self.net.text(ids)
    }

    fn inject(&mut self, fault: InjectedFault) {
        self.armed = Some(fault);
    }
}

fn missing(request: u64) -> EngineError {
    EngineError::Step(format!("request {request} is not resident on this worker"))
}
