//! What execute mode runs on, prepared once per scenario: the CPU model with pdsim's own kernels
//! for topologies on the CPU with a GGUF file, and the tensor model on each device that
//! topologies with a GPU (or any topology of a synthetic model) use.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::RunError;
use crate::engine::candle::device::DeviceSpec;
use crate::engine::candle::forward::{DeviceNet, Forward, WorkerNet};
use crate::engine::candle::prompts::PromptSource;
use crate::engine::candle::{error_message, resolve_model, Model};
use crate::scenario::{ModelSource, ModelSpec, Scenario, Topology};
use crate::workload::{PromptSpec, Source};

pub struct Executors {
    /// The CPU model (pdsim's kernels): topologies whose workers are all on the CPU, GGUF file.
    pub host: Option<Arc<Model>>,
    /// The tensor model on each device it is used on, shared by the workers there.
    pub devices: HashMap<DeviceSpec, Arc<DeviceNet>>,
    pub prompts: Arc<PromptSource>,
}

/// Whether `t` runs through the tensor model: synthetic models always do, and any topology
/// with a worker on a GPU (its KV caches must be able to cross between its pools).
pub fn uses_device_path(model: &ModelSpec, t: &Topology) -> bool {
    model.is_synthetic() || t.devices.any_cuda()
}

impl Executors {
    /// Only the CPU model (tools that drive it directly).
    pub fn host(model: Arc<Model>, prompts: Arc<PromptSource>) -> Executors {
        Executors { host: Some(model), devices: HashMap::new(), prompts }
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.host {
            parts.push(format!(
                "model: {} ({}, {} layers)",
                m.path.display(),
                m.llama.format.label(),
                m.llama.config.layers
            ));
        }
        let mut devices: Vec<_> = self.devices.values().map(|n| n.describe()).collect();
        devices.sort();
        for d in devices {
            parts.push(format!("model: {d}"));
        }
        parts.join("; ")
    }

    /// Loads what the scenario's topologies need, tokenizes its text prompts (recording their
    /// lengths in the workload) and warms every model up before any clock starts.
    pub fn prepare(scenario: &mut Scenario) -> Result<Executors, RunError> {
        let spec = scenario.model.clone();
        let fail = |e: String| RunError::Model(e);
        let mut on_device: BTreeSet<DeviceSpec> = BTreeSet::new();
        let mut needs_host = false;
        for t in &scenario.topologies {
            if uses_device_path(&spec, t) {
                for d in [t.devices.prefill, t.devices.decode] {
                    on_device.insert(d);
                }
            } else {
                needs_host = true;
            }
        }
        let path = match &spec.source {
            ModelSource::File(p) => Some(resolve_model(p.as_deref()).map_err(|e| fail(e.to_string()))?),
            ModelSource::Synthetic(_) => None,
        };
        let host = match (&path, needs_host) {
            (Some(p), true) => Some(Arc::new(Model::load(p, spec.weights).map_err(|e| fail(e.to_string()))?)),
            _ => None,
        };
        let mut devices = HashMap::new();
        for d in on_device {
            let dtype = spec.dtype_on(d);
            let net = match (&spec.source, &path) {
                (ModelSource::Synthetic(s), _) => {
                    eprintln!(
                        "pdsim: building {} ({}) on {d}",
                        s.describe(),
                        crate::engine::candle::forward::dtype_name(dtype)
                    );
                    DeviceNet::synthetic(s, dtype, d).map_err(|e| fail(format!("{}: {e}", s.describe())))?
                }
                (_, Some(p)) => DeviceNet::from_file(p, dtype, d).map_err(|e| fail(e.to_string()))?,
                (_, None) => unreachable!("a file model has a path"),
            };
            devices.insert(d, Arc::new(net));
        }
        let encode = |text: &str| -> Result<Vec<u32>, RunError> {
            if let Some(m) = &host {
                return m.encode(text).map_err(|e| fail(e.to_string()));
            }
            let t = devices.values().find_map(|n: &Arc<DeviceNet>| n.tokenizer.as_ref());
            let t = t.ok_or_else(|| fail("text prompts need a tokenizer; this model has none".into()))?;
            crate::engine::candle::tokenizer::encode(t, text).map_err(|e| fail(e.to_string()))
        };
        let vocab = match (&host, devices.values().next()) {
            (Some(m), _) => m.llama.config.vocab,
            (None, Some(n)) => n.llama.config.vocab,
            (None, None) => return Err(fail("no topology to run".into())),
        } as u32;
        let mut per_class = Vec::new();
        let texts: Vec<Option<Vec<String>>> = match &scenario.workload.source {
            Source::Synthetic { classes, .. } => classes
                .iter()
                .map(|c| match &c.prompt {
                    PromptSpec::Texts { texts, .. } => Some(texts.clone()),
                    PromptSpec::Lengths(_) => None,
                })
                .collect(),
            Source::Trace { .. } => Vec::new(),
        };
        for (class, t) in texts.into_iter().enumerate() {
            let ids: Vec<Vec<u32>> = match t {
                Some(texts) => texts.iter().map(|x| encode(x)).collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            if !ids.is_empty() {
                scenario.workload.set_prompt_lengths(class, ids.iter().map(|p| p.len() as u64).collect());
            }
            per_class.push(ids);
        }
        // Before the warm-up: a scenario the model cannot run is refused at once.
        let context = match (&host, devices.values().map(|n| n.llama.config.context).min()) {
            (Some(m), _) => m.llama.config.context,
            (None, Some(c)) => c,
            (None, None) => usize::MAX,
        } as u64;
        fits_context(scenario, context).map_err(RunError::Unfit)?;
        if let Some(m) = &host {
            // On every thread count the CPU workers will use (see Model::warm_up).
            let mut counts: Vec<usize> = scenario
                .topologies
                .iter()
                .filter(|t| !uses_device_path(&spec, t))
                .flat_map(|t| [t.threads.prefill, t.threads.decode])
                .collect();
            counts.sort_unstable();
            counts.dedup();
            for n in counts {
                m.warm_up(n).map_err(|e| fail(format!("warm-up: {}", error_message(&e))))?;
            }
        }
        for (d, net) in &devices {
            warm_up(net, *d).map_err(|e| fail(format!("warm-up on {d}: {}", error_message(&e))))?;
        }
        let prompts = PromptSource::Text { per_class, seed: scenario.seed, vocab };
        Ok(Executors { host, devices, prompts: Arc::new(prompts) })
    }
}

/// A prompt and a few decode steps (alone and in pairs) on a stream of its own: on a GPU the
/// first launches load candle's kernels and size the memory pool, which no request should pay.
fn warm_up(net: &Arc<DeviceNet>, d: DeviceSpec) -> candle_core::Result<()> {
    let w = WorkerNet::open(net.clone(), d)?;
    let n = 256.min(net.llama.config.context - 8);
    let prompt: Vec<u32> = (0..n as u32).map(|i| 100 + i).collect();
    let (mut a, mut b) = (w.new_kv(n + 8)?, w.new_kv(n + 8)?);
    w.forward(&mut [(&prompt, &mut a)])?;
    w.forward(&mut [(&prompt[..8], &mut b)])?;
    for t in 0..4u32 {
        w.forward(&mut [(&[200 + t], &mut a), (&[300 + t], &mut b)])?;
    }
    Ok(())
}

/// Every request a synthetic class can make fits the model's context (a trace's requests that
/// do not are rejected as they arrive, `exceeds_context`).
fn fits_context(scenario: &Scenario, context: u64) -> Result<(), String> {
    match scenario.workload.class_longer_than(context) {
        Some((name, p, o)) => Err(format!(
            "class `{name}` can reach {p} prompt + {o} output tokens, more than the model's context of {context} \
             tokens; shorten the class's prompts or outputs"
        )),
        None => Ok(()),
    }
}
