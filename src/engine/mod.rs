//! Engines: what runs a worker's iteration.
//!
//! Workers (in [`crate::actors`]) form batches and call an [`Engine`]; they never know which
//! one. The simulated engine ([`sim`]) answers with a modeled duration and KV handles that know
//! only their size. The candle engine (execute mode) computes for real and hands over real KV
//! tensors through the same calls: [`Engine::take_kv`] on the prefill worker, the handle
//! travels inside the `KvHandoff` message, [`Engine::put_kv`] on the decode worker.

pub mod candle;
pub mod shape;
pub mod sim;
pub mod step;

use crate::workload::RequestSpec;
use step::StepPlan;

/// Why an engine step failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine step failed: {0}")]
    Step(String),
    #[error("engine panicked: {0}")]
    Panicked(String),
}

/// A fault a scenario injects into a worker's engine: its next step fails, with an error or
/// with a panic raised inside the computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    Error,
    Panic,
}

impl InjectedFault {
    /// What the failing step says.
    pub fn message(self) -> &'static str {
        match self {
            InjectedFault::Error => "injected step error (scenario fault)",
            InjectedFault::Panic => "injected panic (scenario fault)",
        }
    }
}

/// What a worker does for one step: admits the requests whose prefill starts in it, then runs
/// the step, all inside [`guarded`].
pub fn admit_and_step<E: Engine>(
    engine: &mut E,
    admit: &[RequestSpec],
    plan: &StepPlan,
) -> Result<StepOutcome, EngineError> {
    guarded(|| {
        for s in admit {
            engine.admit(s)?;
        }
        engine.step(plan)
    })
}

/// Runs an engine call, turning a panic inside it into [`EngineError::Panicked`]: a worker
/// whose engine panics restarts it instead of taking the run down. The engine's state after a
/// panic is not trusted; the caller replaces the engine.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handled(f))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(EngineError::Panicked(msg))
        }
    }
}

thread_local! {
    /// How deep this thread is inside [`handled`].
    static HANDLED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` as code whose panics the caller handles (a worker reports them and replaces its
/// engine): the panic hook [`quiet_handled_panics`] installs stays silent for them. Wrap the
/// closure a compute pool runs too, since a panic's hook runs on the thread that panics.
pub fn handled<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            HANDLED.with(|h| h.set(h.get() - 1));
        }
    }
    HANDLED.with(|h| h.set(h.get() + 1));
    let _leave = Leave;
    f()
}

/// Installs a panic hook that prints nothing for panics inside [`handled`] (a worker says
/// what failed, once, in its own words; Rust's report and backtrace came on top of it) and
/// Rust's usual report for any other.
pub fn quiet_handled_panics() {
    let usual = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if HANDLED.with(|h| h.get()) == 0 {
            usual(info);
        }
    }));
}

/// What a step returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepOutcome {
    /// Time the worker must still wait before the step's results exist, in nanoseconds: the
    /// modeled duration for a simulated engine, zero for an engine that already computed.
    pub wait_ns: u64,
    /// Requests whose token this step was the end-of-sequence token: they finish now, before
    /// their requested output length.
    pub stopped: Vec<u64>,
}

/// A per-request KV cache as it travels between workers.
pub trait KvHandle: Send + Unpin + 'static {
    /// Size in bytes, what a link model charges for moving it.
    fn bytes(&self) -> u64;
}

/// Runs iterations for one worker. One engine per worker; not shared.
pub trait Engine: Unpin + 'static {
    type Kv: KvHandle;

    /// A request is about to start its prefill on this worker.
    fn admit(&mut self, spec: &RequestSpec) -> Result<(), EngineError>;

    /// Runs one iteration over the plan.
    fn step(&mut self, plan: &StepPlan) -> Result<StepOutcome, EngineError>;

    /// Removes a prefilled request's KV cache (of `context_tokens` tokens) to send it away.
    fn take_kv(&mut self, request: u64, context_tokens: u64) -> Self::Kv;

    /// Installs a KV cache received from another worker (copying it when it comes from another
    /// device).
    fn put_kv(&mut self, request: u64, kv: Self::Kv) -> Result<(), EngineError>;

    /// Frees what the engine holds for a finished request; returns its generated text when the
    /// engine makes text.
    fn finish(&mut self, request: u64) -> Option<String>;

    /// Makes the next step fail (fault injection).
    fn inject(&mut self, fault: InjectedFault);
}
