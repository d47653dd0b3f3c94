//! Messages between actors. Commands are imperative (`Submit`), notifications past tense
//! (`RequestFinished`).

use actix::prelude::*;

use super::prefill_worker::PrefillWorker;
use crate::engine::Engine;
use crate::metrics::iteration::IterationRow;
use crate::metrics::outcome::DropReason;
use crate::metrics::record::RequestRecord;

/// Enqueuer → PrefillWorker or FusedWorker: a new request to serve.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    pub record: Box<RequestRecord>,
}

/// PrefillWorker → DecodeWorker: a prefilled request and its KV cache. The KV stays accounted
/// to the prefill worker until the decode worker sends [`KvReleased`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct KvHandoff<E: Engine> {
    pub record: Box<RequestRecord>,
    pub kv: E::Kv,
    pub from: Addr<PrefillWorker<E>>,
    /// The prefill worker's life when it sent this (it changes when the worker crashes).
    pub generation: u32,
}

/// DecodeWorker → PrefillWorker: the KV of a handed-off request has left; free its tokens.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KvReleased {
    pub tokens: u64,
    /// From the handoff: a release for an earlier life of the worker is ignored.
    pub generation: u32,
}

/// Worker → MetricsCollector: a request produced its last token.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestFinished {
    pub record: Box<RequestRecord>,
    /// Generated text (execute mode).
    pub text: Option<String>,
}

/// Enqueuer or worker → MetricsCollector: a request ends without completing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestDropped {
    pub record: Box<RequestRecord>,
    pub reason: DropReason,
    /// The particulars, for people: which worker, what limit.
    pub detail: String,
    /// When it was given up (run clock): the run lasts at least until then.
    pub at_ns: u64,
}

/// Worker → Enqueuer: a worker failed while holding this request; start it again elsewhere
/// or, with no retry left, report it failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestLost {
    pub record: Box<RequestRecord>,
    /// What it is reported as when no retry is left: `WorkerFailed` (lost in a failure) or
    /// `NoLiveWorker` (no worker was up to take it).
    pub reason: DropReason,
    pub detail: String,
}

/// Worker → MetricsCollector: the worker failed, restarted, or came back (`events.csv`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerEvent {
    pub at_ns: u64,
    pub worker: String,
    /// `crashed`, `engine_failed`, `restarted`.
    pub event: &'static str,
    pub detail: String,
}

/// Worker → MetricsCollector: one iteration ran.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IterationCompleted {
    pub row: IterationRow,
}

/// Enqueuer → MetricsCollector: no more arrivals; `total` requests were submitted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ArrivalsEnded {
    pub total: u64,
}

/// Any actor → MetricsCollector: the run cannot continue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunAborted {
    pub reason: String,
}
