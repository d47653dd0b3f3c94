//! Messages between actors. Commands are imperative (`Submit`), notifications past tense
//! (`RequestFinished`).

use actix::prelude::*;

use super::prefill_worker::PrefillWorker;
use crate::engine::Engine;
use crate::metrics::iteration::IterationRow;
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
}

/// DecodeWorker → PrefillWorker: the KV of a handed-off request has left; free its tokens.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KvReleased {
    pub tokens: u64,
}

/// Worker → MetricsCollector: a request produced its last token.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestFinished {
    pub record: Box<RequestRecord>,
    /// Generated text (execute mode).
    pub text: Option<String>,
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
