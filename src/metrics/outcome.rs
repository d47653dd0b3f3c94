//! How a request's life ended when it did not complete: every arrival ends as exactly one of
//! completed, rejected (never started: admission or queue limit) or failed (started, then lost
//! to a worker failure with no retry left).

use serde::Serialize;

/// Why a request did not complete. The code goes into `requests.csv`'s `reason` column and the
/// summary's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Rejected: its prompt plus output can never fit a worker's KV capacity.
    ExceedsKvCapacity,
    /// Rejected: its prompt plus output is longer than the model's context (execute mode).
    ExceedsContext,
    /// Rejected: the worker it was routed to had `max_queued_requests` waiting.
    QueueFull,
    /// Failed: every worker that could serve it was down.
    NoLiveWorker,
    /// Failed: its worker crashed or its step failed, and it had no retry left.
    WorkerFailed,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::ExceedsKvCapacity,
        DropReason::ExceedsContext,
        DropReason::QueueFull,
        DropReason::NoLiveWorker,
        DropReason::WorkerFailed,
    ];

    /// The reason of a code [`DropReason::code`] wrote (the summary counts them by code).
    pub fn from_code(code: &str) -> Option<DropReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            DropReason::ExceedsKvCapacity => "exceeds_kv_capacity",
            DropReason::ExceedsContext => "exceeds_context",
            DropReason::QueueFull => "queue_full",
            DropReason::NoLiveWorker => "no_live_worker",
            DropReason::WorkerFailed => "worker_failed",
        }
    }

    /// Rejections never started; failures did.
    pub fn is_rejection(self) -> bool {
        matches!(self, DropReason::ExceedsKvCapacity | DropReason::ExceedsContext | DropReason::QueueFull)
    }

    pub fn outcome(self) -> &'static str {
        if self.is_rejection() {
            "rejected"
        } else {
            "failed"
        }
    }
}
