//! The simulated engine: step durations from a cost model, KV handles that know only their size.

pub mod batch_lines;
pub mod hardware;
pub mod linear;
pub mod noise;
pub mod presets;
pub mod quantiles;
pub mod roofline;
pub mod wake;

use std::sync::Arc;

use super::step::StepPlan;
use super::{Engine, EngineError, InjectedFault, KvHandle, StepOutcome};
use crate::workload::RequestSpec;
use linear::LinearCost;
use noise::{Noise, Pace};
use roofline::Roofline;
use wake::{SinceWake, Wake};

/// How long a step takes on the modeled hardware.
// A noise's measured jitter shape makes `Linear` a few hundred bytes; a run builds one model per
// topology and shares it behind an `Arc`, so the size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CostModel {
    /// Fitted or hand-written coefficients. `source` says where they come from.
    Linear {
        cost: LinearCost,
        kv_bytes_per_token: u64,
        source: String,
    },
    Roofline(Roofline),
    /// Fits of this machine's real engine by `pdsim calibrate`, one per thread count; a worker
    /// takes the fit of its own thread count ([`CostModel::for_threads`]).
    Profile {
        fits: Vec<(usize, LinearCost)>,
        kv_bytes_per_token: u64,
        /// One KV handoff between actor threads (the in-process "link"), ns.
        handoff_ns: u64,
        source: String,
    },
}

impl CostModel {
    /// Duration of one step in nanoseconds (at least 1: time always moves forward).
    pub fn step_ns(&self, plan: &StepPlan) -> u64 {
        let s = plan.shape();
        let ms = match self {
            CostModel::Linear { cost, .. } => cost.step_ms(&s),
            CostModel::Roofline(r) => r.step_ms(&s),
            CostModel::Profile { fits, .. } => fits[0].1.step_ms(&s),
        };
        ((ms * 1e6).round() as u64).max(1)
    }

    /// The same model on `tp` GPUs per worker: a roofline scales; fitted coefficients hold for
    /// the one degree they were fitted at.
    pub fn with_tp(&self, tp: u32) -> Result<CostModel, String> {
        match self {
            CostModel::Roofline(r) => {
                let mut r = r.clone();
                r.tp = tp;
                r.check_split()?;
                match r.kv_capacity_tokens() {
                    Some(_) => Ok(CostModel::Roofline(r)),
                    None => Err(format!(
                        "{}'s weights do not fit on {tp} × {} (with room for KV); use a larger tensor-parallel degree",
                        r.model.name, r.hardware.name
                    )),
                }
            }
            CostModel::Profile { .. } => {
                Err("a calibration profile measures CPU threads, not tensor parallelism; set threads instead".into())
            }
            CostModel::Linear { .. } => Err(
                "fitted coefficients hold for the tensor-parallel degree they were fitted at; a per-phase tp needs kind = \"roofline\" (or name a preset fitted at that tp)"
                    .into(),
            ),
        }
    }

    /// A calibration profile with prefill steps × `prefill` and decode steps × `decode` (the
    /// pace of a run, [`crate::compare::pace`]); other models as they are.
    pub fn paced(&self, prefill: f64, decode: f64) -> CostModel {
        match self {
            CostModel::Profile { fits, kv_bytes_per_token, handoff_ns, source } => CostModel::Profile {
                fits: fits.iter().map(|(t, c)| (*t, c.scaled(prefill, decode))).collect(),
                kv_bytes_per_token: *kv_bytes_per_token,
                handoff_ns: *handoff_ns,
                source: format!("{source}, paced ×{prefill:.2} prefill, ×{decode:.2} decode"),
            },
            other => other.clone(),
        }
    }

    /// The fit for a worker with `threads` compute threads (profiles); other models as they are.
    pub fn for_threads(&self, threads: usize) -> Result<CostModel, String> {
        let CostModel::Profile { fits, kv_bytes_per_token, source, .. } = self else {
            return Ok(self.clone());
        };
        match fits.iter().find(|(t, _)| *t == threads) {
            Some((_, cost)) => Ok(CostModel::Linear {
                cost: cost.clone(),
                kv_bytes_per_token: *kv_bytes_per_token,
                source: format!("{source}, {threads} threads"),
            }),
            None => Err(format!(
                "the calibration profile has fits for {:?} threads, not {threads}; run pdsim calibrate --threads {threads}",
                fits.iter().map(|f| f.0).collect::<Vec<_>>()
            )),
        }
    }

    /// Fitted coefficients with `noise` in every fit (a run's own, [`crate::compare::pace`]), or
    /// with none: every step at its fitted time; a roofline as it is.
    pub fn with_noise(&self, noise: Option<Noise>) -> CostModel {
        let mut m = self.clone();
        match &mut m {
            CostModel::Profile { fits, .. } => fits.iter_mut().for_each(|(_, c)| c.noise = noise),
            CostModel::Linear { cost, .. } => cost.noise = noise,
            CostModel::Roofline(_) => {}
        }
        m
    }

    /// The machine's unsteadiness, where the model measured it (a profile's fit).
    pub fn noise(&self) -> Option<Noise> {
        match self {
            CostModel::Linear { cost, .. } => cost.noise,
            CostModel::Profile { fits, .. } => fits[0].1.noise,
            CostModel::Roofline(_) => None,
        }
    }

    /// The wake-up charge, where the model measured one (a profile's fit).
    pub fn wake(&self) -> Option<&Wake> {
        match self {
            CostModel::Linear { cost, .. } => cost.wake.as_ref(),
            CostModel::Profile { fits, .. } => fits[0].1.wake.as_ref(),
            CostModel::Roofline(_) => None,
        }
    }

    /// The in-process KV handoff time of a profile.
    pub fn handoff_ns(&self) -> Option<u64> {
        match self {
            CostModel::Profile { handoff_ns, .. } => Some(*handoff_ns),
            _ => None,
        }
    }

    pub fn kv_bytes_per_token(&self) -> u64 {
        match self {
            CostModel::Linear { kv_bytes_per_token, .. } | CostModel::Profile { kv_bytes_per_token, .. } => {
                *kv_bytes_per_token
            }
            CostModel::Roofline(r) => r.model.kv_bytes_per_token(),
        }
    }

    /// The KV capacity this model implies per worker, where it knows the device.
    pub fn default_kv_capacity_tokens(&self) -> Option<u64> {
        match self {
            CostModel::Linear { .. } => None,
            CostModel::Roofline(r) => r.kv_capacity_tokens(),
            // What execute mode gives a worker, so the two modes hold the same requests.
            CostModel::Profile { .. } => Some(crate::scenario::DEFAULT_EXECUTE_KV_CAPACITY_TOKENS),
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            CostModel::Linear { source, .. } | CostModel::Profile { source, .. } => source.clone(),
            CostModel::Roofline(r) => format!(
                "roofline {} × {} tp={} (compute eff {}, memory eff {}, overhead {} ms)",
                r.hardware.name, r.model.name, r.tp, r.compute_efficiency, r.memory_efficiency, r.step_overhead_ms
            ),
        }
    }
}

/// KV of one request in simulation: its size only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimKv {
    pub tokens: u64,
    pub bytes: u64,
}

impl KvHandle for SimKv {
    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The engine of simulate mode.
#[derive(Debug, Clone)]
pub struct SimEngine {
    cost: Arc<CostModel>,
    armed: Option<InjectedFault>,
    /// This worker's draw of the machine's unsteadiness, when the model has one.
    pace: Option<Pace>,
    /// Steps since this worker's last wake step (its first, or one after a pause the model
    /// charges for): the decode steps just after it run slower ([`Wake::decode_after`]).
    since_wake: SinceWake,
}

impl SimEngine {
    /// `seed` draws the machine's unsteadiness (models that have one); give each worker its own.
    pub fn new(cost: Arc<CostModel>, seed: u64) -> SimEngine {
        let pace = cost.noise().map(|n| Pace::new(n, seed));
        SimEngine { cost, armed: None, pace, since_wake: SinceWake::default() }
    }
}

impl Engine for SimEngine {
    type Kv = SimKv;

    fn admit(&mut self, _spec: &RequestSpec) -> Result<(), EngineError> {
        Ok(())
    }

    fn step(&mut self, plan: &StepPlan) -> Result<StepOutcome, EngineError> {
        match self.armed.take() {
            Some(InjectedFault::Error) => return Err(EngineError::Step(InjectedFault::Error.message().into())),
            Some(InjectedFault::Panic) => panic!("{}", InjectedFault::Panic.message()),
            None => {}
        }
        let mut ns = self.cost.step_ns(plan);
        if let Some(w) = self.cost.wake() {
            let f = self.since_wake.next(w, plan.idle_ns, plan.prefill.is_empty());
            if f != 1.0 {
                ns = ((ns as f64 * f).round() as u64).max(1);
            }
        }
        if let Some(pace) = &mut self.pace {
            let f = pace.factor(plan.idle_ns, ns, plan.prefill.is_empty());
            ns = ((ns as f64 * f).round() as u64).max(1);
        }
        Ok(StepOutcome { wait_ns: ns, stopped: Vec::new() })
    }

    fn take_kv(&mut self, _request: u64, context_tokens: u64) -> SimKv {
        SimKv { tokens: context_tokens, bytes: context_tokens * self.cost.kv_bytes_per_token() }
    }

    fn put_kv(&mut self, _request: u64, _kv: SimKv) -> Result<(), EngineError> {
        Ok(())
    }

    fn finish(&mut self, _request: u64) -> Option<String> {
        None
    }

    fn inject(&mut self, fault: InjectedFault) {
        self.armed = Some(fault);
    }
}

#[cfg(test)]
mod tests {
    use super::linear::{DecodeCoeffs, PrefillCoeffs};
    use super::*;
    use crate::engine::step::{DecodeSlot, PromptChunk};

    #[test]
    fn decode_steps_just_after_a_wake_up_run_slower_as_measured() {
        let cost = LinearCost {
            prefill: PrefillCoeffs { base_ms: 20.0, per_token_ms: 0.0, per_token_sq_ms: 0.0 },
            decode: DecodeCoeffs { base_ms: 10.0, per_ctx_token_ms: 0.0, per_seq_ms: 0.0 },
            large_batch_decode: None,
            decode_by_batch: None,
            wake: Some(Wake { decode_after: vec![(1.0, 0.2), (2.0, 0.1)], ..Wake::flat(100.0, 5.0) }),
            co_run: None,
            noise: None,
        };
        let model = CostModel::Linear { cost, kv_bytes_per_token: 1, source: "test".into() };
        let mut engine = SimEngine::new(Arc::new(model), 1);
        let decode = |idle_ns| StepPlan {
            decode: vec![DecodeSlot { request: 1, context_tokens: 10 }],
            idle_ns,
            ..Default::default()
        };
        let prefill =
            StepPlan { prefill: vec![PromptChunk { request: 2, offset: 0, tokens: 8 }], ..Default::default() };
        let mut ms = |plan: &StepPlan| engine.step(plan).unwrap().wait_ns as f64 / 1e6;
        assert_eq!(ms(&decode(u64::MAX)), 15.0, "the first step wakes: the charge, no more");
        assert_eq!(ms(&decode(0)), 12.0, "the first decode step after it");
        assert_eq!(ms(&prefill), 20.0, "prefill steps run at their time");
        assert_eq!(ms(&decode(0)), 10.0, "the third step after it, beyond those measured");
        assert_eq!(ms(&decode(200_000_000)), 15.0, "a pause wakes it again");
        assert_eq!(ms(&decode(99_000_000)), 12.0, "a short one does not");
        assert_eq!(ms(&decode(0)), 11.0);
    }
}
