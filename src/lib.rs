//! # pdsim: prefill–decode disaggregation, simulated and executed
//!
//! pdsim runs a *scenario* (a workload, arrival pattern, SLOs and one or more topologies) through
//! an actor graph, either on a virtual clock with a cost model (simulate mode) or with a real
//! model on the CPU (execute mode), and writes per-request, per-iteration and summary CSVs.
//!
//! ## Layout
//! - [`scenario`]: the TOML schema ([`scenario::raw`]), validation into a resolved
//!   [`scenario::Scenario`], and errors that point at file, line and column.
//! - [`workload`]: length distributions, arrival processes, trace readers, the request stream.
//! - [`sched`]: batching, KV-capacity accounting, routing and fused policies as plain structs.
//! - [`engine`]: the [`engine::Engine`] trait the workers call; [`engine::sim`] holds the cost
//!   models (fitted presets, roofline) behind the simulated engine; [`engine::candle`] the real
//!   model of execute mode (GGUF loader, tokenizer, forward pass, KV cache, own kernels).
//! - [`actors`]: the actix actors (`Enqueuer`, `PrefillWorker`, `DecodeWorker`, `FusedWorker`,
//!   `MetricsCollector`), one per file, and their messages.
//! - [`clock`]: the run clock the actors read time from (virtual in simulate mode).
//! - [`metrics`]: request records, CSV writers, percentiles, SLO attainment, the summary.
//! - [`report`]: the terminal comparison table, and each run's pictures (SVG) and web page.
//! - [`run`]: prepares a scenario's backend and runs each topology end to end.
//! - [`bench`]: `pdsim bench`, the real engine's speed.
//! - [`calibrate`]: `pdsim calibrate`, fits of the real engine's step times for the simulator.
//! - [`compare`]: `pdsim compare`, a scenario executed and simulated, request by request.
//! - [`sweep`]: rate sweeps, SLO-attainment curves and goodput by bisection.
//! - [`search`]: placement search, fused and split placements within a GPU budget ranked by
//!   goodput per GPU.
//! - [`cli`]: the command line (`main.rs` only calls [`cli::main`]).

pub mod actors;
pub mod bench;
pub mod calibrate;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod engine;
pub mod metrics;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sched;
pub mod search;
pub mod sweep;
pub mod workload;
