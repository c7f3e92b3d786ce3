//! What travels from a request to the model thread and back.

use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::stats::Stats;
use super::EngineError;
use crate::preprocess::TokenizedText;

/// One prepared input waiting for the model.
pub(crate) struct Job<P> {
    pub payload: P,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<Done, EngineError>>,
    /// The input's place in the admission budget, given back when the job is answered or dropped.
    pub _admission: OwnedSemaphorePermit,
}

impl<P> Job<P> {
    /// A job entering its queue now.
    pub fn queued(
        payload: P,
        deadline: Option<Instant>,
        reply: oneshot::Sender<Result<Done, EngineError>>,
        admission: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            payload,
            enqueued: Instant::now(),
            deadline,
            reply,
            _admission: admission,
        }
    }

    /// None for a job whose deadline passed (answered DEADLINE_EXCEEDED) or whose request is gone
    /// (the client cancelled): neither should cost model time.
    pub fn into_live(self, now: Instant, stats: &Stats) -> Option<Self> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            stats.expired();
            // The request may be gone already; either way it gets no embedding.
            let _ = self.reply.send(Err(EngineError::DeadlineExceeded));
            return None;
        }
        if self.reply.is_closed() {
            stats.cancelled();
            return None;
        }
        Some(self)
    }
}

/// A batch for the model thread: all texts or all images.
pub(crate) enum Batch {
    Text(Vec<Job<TokenizedText>>),
    Image(Vec<Job<Vec<f32>>>),
}

/// One input's embedding and where its time went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Done {
    pub values: Vec<f32>,
    pub queued: Duration,
    pub model: Duration,
    /// Numbers the model thread's batches, so that a request can count the distinct batches its
    /// inputs shared.
    pub batch: u64,
    pub batch_size: usize,
}
