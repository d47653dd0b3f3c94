//! The actor graph (actix): one actor per file, thin shells around [`crate::sched`].
//!
//! ```text
//! Enqueuer ──Submit──▶ PrefillWorker ──KvHandoff──▶ DecodeWorker
//!    │                      ▲──────KvReleased────────┘    │
//!    └──Submit──▶ FusedWorker                              │
//!  all workers ──RequestFinished / IterationCompleted──▶ MetricsCollector
//! ```

pub mod decode_worker;
pub mod enqueuer;
pub mod faults;
pub mod fused_worker;
pub mod messages;
pub mod metrics_collector;
pub mod prefill_worker;
pub mod worker_env;
