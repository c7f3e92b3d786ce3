//! When a queue becomes a batch: the policy is a pure function of the queue and the clock; the task
//! around it only moves jobs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

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
    /// Send a batch to the model as soon as it can take one.
    Flush,
}

impl BatchPolicy {
    /// `oldest`: when the input at the head of the queue arrived.
    pub fn next(&self, queued: usize, oldest: Option<Instant>, now: Instant) -> Next {
        let Some(oldest) = oldest else {
            return Next::Idle;
        };
        if queued >= self.max_batch_size {
            return Next::Flush;
        }
        let due = oldest + self.max_delay;
        if now >= due {
            Next::Flush
        } else {
            Next::WaitUntil(due)
        }
    }
}

/// Gathers one modality's jobs into batches for the model thread. A batch is sealed only once the
/// model thread's one-batch slot is free, so inputs that arrive while the model is busy still join
/// the next batch. Returns when the engine is dropped and the queue is empty, or when the model
/// thread is gone.
pub(crate) async fn run<P>(
    policy: BatchPolicy,
    mut incoming: mpsc::UnboundedReceiver<Job<P>>,
    worker: mpsc::Sender<Batch>,
    seal: fn(Vec<Job<P>>) -> Batch,
    stats: &Stats,
) {
    let mut queue = VecDeque::new();
    let mut open = true;
    loop {
        open &= drain(&mut incoming, &mut queue);
        prune(&mut queue, stats);
        if !open && queue.is_empty() {
            return;
        }
        let oldest = queue.front().map(|job| job.enqueued);
        match policy.next(queue.len(), oldest, Instant::now()) {
            Next::Idle => match incoming.recv().await {
                Some(job) => queue.push_back(job),
                None => open = false,
            },
            Next::WaitUntil(due) => tokio::select! {
                job = incoming.recv(), if open => match job {
                    Some(job) => queue.push_back(job),
                    None => open = false,
                },
                () = tokio::time::sleep_until(due.into()) => {}
            },
            Next::Flush => {
                let Ok(slot) = worker.reserve().await else {
                    return;
                };
                open &= drain(&mut incoming, &mut queue);
                prune(&mut queue, stats);
                let size = queue.len().min(policy.max_batch_size);
                if size > 0 {
                    slot.send(seal(queue.drain(..size).collect()));
                }
            }
        }
    }
}

/// Moves every job already sent into the queue; false once every sender is gone.
fn drain<P>(incoming: &mut mpsc::UnboundedReceiver<Job<P>>, queue: &mut VecDeque<Job<P>>) -> bool {
    loop {
        match incoming.try_recv() {
            Ok(job) => queue.push_back(job),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

fn prune<P>(queue: &mut VecDeque<Job<P>>, stats: &Stats) {
    let now = Instant::now();
    *queue = std::mem::take(queue)
        .into_iter()
        .filter_map(|job| job.into_live(now, stats))
        .collect();
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
        assert_eq!(POLICY.next(0, None, Instant::now()), Next::Idle);
    }

    #[test]
    fn a_young_partial_batch_waits_until_its_oldest_input_is_due() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(5);
        assert_eq!(POLICY.next(1, Some(t0), t0), Next::WaitUntil(due));
        assert_eq!(
            POLICY.next(3, Some(t0), t0 + Duration::from_millis(4)),
            Next::WaitUntil(due)
        );
    }

    #[test]
    fn a_partial_batch_flushes_once_its_oldest_input_is_due() {
        let t0 = Instant::now();
        assert_eq!(
            POLICY.next(1, Some(t0), t0 + Duration::from_millis(5)),
            Next::Flush
        );
        assert_eq!(
            POLICY.next(2, Some(t0), t0 + Duration::from_secs(9)),
            Next::Flush
        );
    }

    #[test]
    fn a_full_batch_flushes_at_once() {
        let t0 = Instant::now();
        assert_eq!(POLICY.next(4, Some(t0), t0), Next::Flush);
        assert_eq!(POLICY.next(100, Some(t0), t0), Next::Flush);
    }

    #[test]
    fn zero_delay_flushes_whatever_is_queued() {
        let policy = BatchPolicy {
            max_delay: Duration::ZERO,
            ..POLICY
        };
        let t0 = Instant::now();
        assert_eq!(policy.next(1, Some(t0), t0), Next::Flush);
    }
}
