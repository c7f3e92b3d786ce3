//! The model thread: the only code that touches tensors. It runs one batch at a time, each under
//! `catch_unwind`, so that a libtorch failure (out of memory, a CUDA error) fails that batch's
//! requests and not the server.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::job::{Batch, Done, Job};
use super::stats::{Modality, Stats};
use crate::clip::Clip;
use crate::error::EngineError;
use crate::model::panic_message;

/// Runs batches until every batcher is gone. `idle` tells the batchers when the model waits with
/// an empty slot: only then do they send a partial batch.
pub(crate) fn run(
    clip: &Clip,
    mut batches: mpsc::Receiver<Batch>,
    idle: &watch::Sender<bool>,
    stats: &Stats,
) {
    let mut number = 0;
    loop {
        let batch = match batches.try_recv() {
            Ok(batch) => batch,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                idle.send_replace(true);
                match batches.blocking_recv() {
                    Some(batch) => batch,
                    None => return,
                }
            }
        };
        idle.send_replace(false);
        number += 1;
        match batch {
            Batch::Text(jobs) => run_batch(jobs, Modality::Text, number, stats, |texts| {
                clip.embed_tokenized(texts)
            }),
            Batch::Image(jobs) => run_batch(jobs, Modality::Image, number, stats, |images| {
                let pixels: Vec<&[f32]> = images.iter().map(|p| p.as_slice()).collect();
                clip.embed_pixels(&pixels)
            }),
        }
    }
}

fn run_batch<P>(
    jobs: Vec<Job<P>>,
    modality: Modality,
    number: u64,
    stats: &Stats,
    forward: impl FnOnce(&[&P]) -> Vec<Vec<f32>>,
) {
    // The batch may have waited for the model: drop what expired or was cancelled meanwhile.
    let start = Instant::now();
    let jobs: Vec<Job<P>> = jobs
        .into_iter()
        .filter_map(|job| job.into_live(start, stats))
        .collect();
    if jobs.is_empty() {
        return;
    }
    let payloads: Vec<&P> = jobs.iter().map(|job| &job.payload).collect();
    stats.forward_started();
    let result = catch_unwind(AssertUnwindSafe(|| forward(&payloads)));
    stats.forward_ended(modality, jobs.len());
    let model = start.elapsed();
    let batch_size = jobs.len();
    match result {
        Ok(rows) => {
            for (job, values) in jobs.into_iter().zip(rows) {
                let done = Done {
                    values,
                    queued: start.saturating_duration_since(job.enqueued),
                    model,
                    batch: number,
                    batch_size,
                };
                let _ = job.reply.send(Ok(done));
            }
        }
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(
                ?modality,
                batch_size,
                "the model failed on a batch: {message}"
            );
            stats.failed(batch_size);
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::ModelFailed));
            }
        }
    }
}
