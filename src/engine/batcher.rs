//! When a queue becomes a batch: the policy is a pure function of the queue, the model thread's
//! state and the clock; the task around it only moves jobs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::job::{Batch, Job};
use super::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_batch_size: usize,
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing queued: wait for an input.
    Idle,
    /// Wait for more inputs until then, and decide again.
    WaitUntil(Instant),
    /// A partial batch is due, but the model is busy: let it keep growing until the model is ready
    /// for it.
    WaitForModel,
    /// Send a batch to the model as soon as its slot is free.
    Flush,
}

impl BatchPolicy {
    /// `oldest`: when the input at the head of the queue arrived. A full batch goes at once (and
    /// waits in the model thread's one-batch slot while the model runs); a partial batch goes
    /// `max_delay` after its oldest input arrived, or later if the model is not ready for it then
    /// (busy with a batch it took before this one was due), so that inputs arriving meanwhile join
    /// it rather than split the load into small batches.
    pub fn next(
        &self,
        queued: usize,
        oldest: Option<Instant>,
        now: Instant,
        model_ready: bool,
    ) -> Next {
        let Some(oldest) = oldest else {
            return Next::Idle;
        };
        if queued >= self.max_batch_size {
            return Next::Flush;
        }
        let due = oldest + self.max_delay;
        if now < due {
            Next::WaitUntil(due)
        } else if model_ready {
            Next::Flush
        } else {
            Next::WaitForModel
        }
    }
}

/// What the batchers know of the model thread, published by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ModelState {
    /// Waiting for a batch, with an empty slot.
    pub idle: bool,
    /// Batches taken so far.
    pub started: u64,
}

/// One modality's queue in front of the model thread.
pub(crate) struct Batcher<P> {
    pub policy: BatchPolicy,
    pub incoming: mpsc::UnboundedReceiver<Job<P>>,
    /// The model thread's one-batch slot.
    pub worker: mpsc::Sender<Batch>,
    pub model: watch::Receiver<ModelState>,
    pub seal: fn(Vec<Job<P>>) -> Batch,
    pub stats: std::sync::Arc<Stats>,
}

impl<P> Batcher<P> {
    /// Runs until the engine is dropped and the queue is empty, or the model thread is gone.
    pub async fn run(mut self) {
        let mut queue = VecDeque::new();
        let mut open = true;
        // When a due partial batch began to wait for the model: the model's `started` count then.
        // The batch goes when the model is idle, or once the model has taken another batch (of
        // the other modality, which could otherwise keep the slot busy forever).
        let mut waiting_since: Option<u64> = None;
        loop {
            open &= drain(&mut self.incoming, &mut queue, &self.stats);
            if !open && queue.is_empty() {
                return;
            }
            let oldest = queue.front().map(|job| job.enqueued);
            let model = *self.model.borrow();
            let ready = model.idle || waiting_since.is_some_and(|since| since != model.started);
            match self.policy.next(queue.len(), oldest, Instant::now(), ready) {
                Next::Idle => match self.incoming.recv().await {
                    Some(job) => queue.push_back(job),
                    None => open = false,
                },
                Next::WaitUntil(due) => tokio::select! {
                    job = self.incoming.recv(), if open => match job {
                        Some(job) => queue.push_back(job),
                        None => open = false,
                    },
                    () = tokio::time::sleep_until(due.into()) => {}
                },
                Next::WaitForModel => {
                    let since = *waiting_since.get_or_insert(model.started);
                    // Expired inputs are answered on time even while the model is busy.
                    let expiry = queue.iter().filter_map(|job| job.deadline).min();
                    tokio::select! {
                        job = self.incoming.recv(), if open => match job {
                            Some(job) => queue.push_back(job),
                            None => open = false,
                        },
                        state = self.model.wait_for(|s| s.idle || s.started != since) => {
                            if state.is_err() {
                                return;
                            }
                        }
                        () = sleep_until(expiry) => {}
                    }
                }
                Next::Flush => {
                    waiting_since = None;
                    let Ok(slot) = self.worker.reserve().await else {
                        return;
                    };
                    open &= drain(&mut self.incoming, &mut queue, &self.stats);
                    let size = queue.len().min(self.policy.max_batch_size);
                    if size > 0 {
                        slot.send((self.seal)(queue.drain(..size).collect()));
                    }
                }
            }
        }
    }
}

async fn sleep_until(instant: Option<Instant>) {
    match instant {
        Some(instant) => tokio::time::sleep_until(instant.into()).await,
        None => std::future::pending().await,
    }
}

/// Moves every job already sent into the queue and drops the expired and cancelled ones; false
/// once every sender is gone.
fn drain<P>(
    incoming: &mut mpsc::UnboundedReceiver<Job<P>>,
    queue: &mut VecDeque<Job<P>>,
    stats: &Stats,
) -> bool {
    let open = loop {
        match incoming.try_recv() {
            Ok(job) => queue.push_back(job),
            Err(mpsc::error::TryRecvError::Empty) => break true,
            Err(mpsc::error::TryRecvError::Disconnected) => break false,
        }
    };
    let now = Instant::now();
    *queue = std::mem::take(queue)
        .into_iter()
        .filter_map(|job| job.into_live(now, stats))
        .collect();
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BatchPolicy = BatchPolicy {
        max_batch_size: 4,
        max_delay: Duration::from_millis(5),
    };

    #[test]
    fn an_empty_queue_waits_for_input() {
        assert_eq!(POLICY.next(0, None, Instant::now(), true), Next::Idle);
    }

    #[test]
    fn a_young_partial_batch_waits_until_its_oldest_input_is_due() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(5);
        assert_eq!(POLICY.next(1, Some(t0), t0, true), Next::WaitUntil(due));
        assert_eq!(
            POLICY.next(3, Some(t0), t0 + Duration::from_millis(4), true),
            Next::WaitUntil(due)
        );
    }

    #[test]
    fn a_partial_batch_flushes_once_its_oldest_input_is_due() {
        let t0 = Instant::now();
        assert_eq!(
            POLICY.next(1, Some(t0), t0 + Duration::from_millis(5), true),
            Next::Flush
        );
        assert_eq!(
            POLICY.next(2, Some(t0), t0 + Duration::from_secs(9), true),
            Next::Flush
        );
    }

    #[test]
    fn a_full_batch_flushes_at_once() {
        let t0 = Instant::now();
        assert_eq!(POLICY.next(4, Some(t0), t0, true), Next::Flush);
        assert_eq!(POLICY.next(100, Some(t0), t0, true), Next::Flush);
    }

    #[test]
    fn a_due_partial_batch_waits_while_the_model_is_busy() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_millis(50);
        assert_eq!(POLICY.next(2, Some(t0), late, false), Next::WaitForModel);
        assert_eq!(POLICY.next(2, Some(t0), late, true), Next::Flush);
        // Not yet due: the model's state does not matter.
        assert_eq!(
            POLICY.next(2, Some(t0), t0, false),
            Next::WaitUntil(t0 + POLICY.max_delay)
        );
    }

    #[test]
    fn a_full_batch_goes_even_while_the_model_is_busy() {
        let t0 = Instant::now();
        assert_eq!(POLICY.next(4, Some(t0), t0, false), Next::Flush);
    }

    #[test]
    fn zero_delay_flushes_whatever_is_queued() {
        let policy = BatchPolicy {
            max_delay: Duration::ZERO,
            ..POLICY
        };
        let t0 = Instant::now();
        assert_eq!(policy.next(1, Some(t0), t0, true), Next::Flush);
    }
}
