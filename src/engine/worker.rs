//! The model thread: the only code that touches tensors. It runs one batch at a time, each under
//! `catch_unwind`, so that a libtorch failure (out of memory, a CUDA error) fails that batch's
//! requests and not the server.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::batcher::ModelState;
use super::job::{Batch, Done, Job};
use super::stats::{Modality, Stats};
use super::EngineError;
use crate::model::panic_message;
use crate::model::Checkpoint;
use crate::telemetry;

/// Runs batches until every batcher is gone, telling the batchers when it waits with an empty slot
/// and when it takes a batch (they hold back partial batches meanwhile).
pub(crate) fn run(
    clip: &Checkpoint,
    mut batches: mpsc::Receiver<Batch>,
    state: &watch::Sender<ModelState>,
    stats: &Stats,
) {
    let mut number = 0;
    loop {
        let batch = match batches.try_recv() {
            Ok(batch) => batch,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                state.send_modify(|s| s.idle = true);
                match batches.blocking_recv() {
                    Some(batch) => batch,
                    None => return,
                }
            }
        };
        state.send_modify(|s| {
            s.idle = false;
            s.started += 1;
        });
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
    let result = catch_unwind(AssertUnwindSafe(|| forward(&payloads)))
        .map_err(|panic| panic_message(panic.as_ref()))
        .and_then(|rows| match rows.len() == jobs.len() {
            true => Ok(rows),
            false => Err(format!(
                "{} embeddings for {} inputs",
                rows.len(),
                jobs.len()
            )),
        });
    stats.forward_ended();
    let model = start.elapsed();
    let batch_size = jobs.len();
    match result {
        Ok(rows) => {
            stats.ran(modality, batch_size);
            let waits = jobs
                .iter()
                .map(|j| start.saturating_duration_since(j.enqueued));
            telemetry::batch_ran(modality.label(), batch_size, model, waits);
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
        Err(message) => {
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
