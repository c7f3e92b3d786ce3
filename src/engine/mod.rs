//! The inference engine: inputs are prepared on a CPU pool, queued per modality, gathered into
//! time-bounded batches and run by the one thread that owns the model.

mod batcher;
mod error;
mod job;
mod settings;
mod stats;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

pub use batcher::{BatchPolicy, Next};

use batcher::{Batcher, ModelState};
pub use stats::{Modality, StatsSnapshot};

pub use error::{EngineError, StartError};
pub use settings::{BatchingSettings, LimitSettings};

use crate::model::{Checkpoint, ModelSpec, Scoring};
use crate::preprocess::{ClipTokenizer, ImageProcessor, TokenizedText};
use job::{Batch, Done, Job};
use stats::Stats;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub batching: BatchingSettings,
    pub max_inputs_per_request: usize,
    /// 0: one per core.
    pub preprocess_threads: usize,
}

/// The loaded model, as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    pub name: String,
    pub dim: usize,
    pub image_size: usize,
    pub context_length: usize,
    pub device: String,
    pub dtype: String,
    /// How the family turns cosine similarities into label probabilities (for CLIP, exp of the
    /// checkpoint's `logit_scale`, 100 for OpenAI's models, before a softmax).
    pub scoring: Scoring,
    /// The embedding of `model::PROBE_TEXT`, made while loading: what tells this checkpoint's
    /// collections from another's (see `index::ModelIdentity`).
    pub probe: Vec<f32>,
}

/// Whether the model thread can take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// A forward pass has run longer than the stall limit; back to serving when it ends.
    Stalled,
    /// The model thread is gone; requests fail UNAVAILABLE.
    Stopped,
}

/// One input of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    Image(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub values: Vec<f32>,
    pub truncated: bool,
}

/// Where a request's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub preprocess: Duration,
    /// The longest wait of one of its inputs.
    pub queue: Duration,
    /// Summed over the distinct batches its inputs ran in.
    pub model: Duration,
    pub batches: usize,
    /// The largest of those batches.
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub embeddings: Vec<Embedding>,
    pub timing: Timing,
}

enum Prepared {
    Text(TokenizedText),
    Image(Vec<f32>),
}

/// A handle on the running engine; clones share it. The model thread stops when the last handle
/// is dropped and the queues have drained.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    description: ModelDescription,
    tokenizer: Arc<ClipTokenizer>,
    images: Arc<ImageProcessor>,
    texts: mpsc::UnboundedSender<Job<TokenizedText>>,
    pixels: mpsc::UnboundedSender<Job<Vec<f32>>>,
    admission: Arc<Semaphore>,
    max_queued_inputs: usize,
    max_inputs_per_request: usize,
    preprocess: Arc<Semaphore>,
    stats: Arc<Stats>,
    health: watch::Receiver<Health>,
}

impl Engine {
    /// Loads the model on its own thread (downloading it first if need be) and returns once it
    /// has loaded and run its warm-up pass.
    pub async fn start(spec: ModelSpec, settings: &EngineSettings) -> Result<Self, StartError> {
        let stats = Arc::new(Stats::default());
        let (loaded_tx, loaded_rx) = oneshot::channel();
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(1);
        let (state_tx, model_state) = watch::channel(ModelState::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("clipd-model".into())
            .spawn(move || {
                let clip = match spec.load() {
                    Ok(clip) => clip,
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e.into()));
                        return;
                    }
                };
                let description = match describe(&clip) {
                    Ok(description) => description,
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                };
                let shared = (clip.tokenizer.clone(), clip.images.clone());
                if loaded_tx.send(Ok((description, shared))).is_ok() {
                    worker::run(&clip, batch_rx, &state_tx, &thread_stats);
                }
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let (description, (tokenizer, images)) = loaded_rx
            .await
            .map_err(|_| StartError::Thread("the model thread panicked".into()))??;
        let batching = &settings.batching;
        let policy = BatchPolicy {
            max_batch_size: batching.max_batch_size,
            max_delay: batching.max_delay(),
        };
        let (texts, text_rx) = mpsc::unbounded_channel();
        let (pixels, pixel_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Batcher {
                policy,
                incoming: text_rx,
                worker: batch_tx.clone(),
                model: model_state.clone(),
                seal: Batch::Text,
                stats: stats.clone(),
            }
            .run(),
        );
        tokio::spawn(
            Batcher {
                policy,
                incoming: pixel_rx,
                worker: batch_tx,
                model: model_state,
                seal: Batch::Image,
                stats: stats.clone(),
            }
            .run(),
        );
        let (health_tx, health) = watch::channel(Health::Serving);
        tokio::spawn(watch_model_thread(
            thread,
            stats.clone(),
            batching.stall_timeout(),
            health_tx,
        ));
        let preprocess_threads = match settings.preprocess_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        tracing::info!(
            model = %description.name,
            device = %description.device,
            dtype = %description.dtype,
            "model loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                description,
                tokenizer,
                images,
                texts,
                pixels,
                admission: Arc::new(Semaphore::new(batching.max_queued_inputs)),
                max_queued_inputs: batching.max_queued_inputs,
                max_inputs_per_request: settings.max_inputs_per_request,
                preprocess: Arc::new(Semaphore::new(preprocess_threads)),
                stats,
                health,
            }),
        })
    }

    pub fn description(&self) -> &ModelDescription {
        &self.inner.description
    }

    pub fn max_inputs_per_request(&self) -> usize {
        self.inner.max_inputs_per_request
    }

    pub fn max_queued_inputs(&self) -> usize {
        self.inner.max_queued_inputs
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Inputs admitted and not yet answered.
    pub fn queued_inputs(&self) -> usize {
        self.inner.max_queued_inputs - self.inner.admission.available_permits()
    }

    pub fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.clone()
    }

    /// One embedding per input, in order. Refused at once when the queue budget cannot hold all
    /// of the inputs; inputs still queued at `deadline` are dropped.
    pub async fn embed(
        &self,
        inputs: Vec<EmbedInput>,
        deadline: Option<Instant>,
    ) -> Result<Embedded, EngineError> {
        self.submit(inputs, deadline, Admission::Refuse).await
    }

    /// As `embed`, but waits for room in the queue instead of refusing: for the server's own work
    /// (embedding a classifier's labels), which would otherwise compete with itself.
    pub async fn embed_when_admitted(
        &self,
        inputs: Vec<EmbedInput>,
        deadline: Option<Instant>,
    ) -> Result<Embedded, EngineError> {
        self.submit(inputs, deadline, Admission::Wait).await
    }

    async fn submit(
        &self,
        inputs: Vec<EmbedInput>,
        deadline: Option<Instant>,
        admission: Admission,
    ) -> Result<Embedded, EngineError> {
        let inner = &*self.inner;
        let count = inputs.len();
        if count == 0 {
            return Err(EngineError::NoInputs);
        }
        if count > inner.max_inputs_per_request {
            return Err(EngineError::TooManyInputs {
                count,
                limit: inner.max_inputs_per_request,
            });
        }
        if *inner.health.borrow() == Health::Stopped {
            return Err(EngineError::Unavailable("the model is not running"));
        }
        let budget = inner.admission.clone();
        let mut admission = match admission {
            Admission::Refuse => budget.try_acquire_many_owned(count as u32).map_err(|_| {
                inner.stats.rejected(count);
                EngineError::QueueFull {
                    limit: inner.max_queued_inputs,
                }
            })?,
            Admission::Wait => budget
                .acquire_many_owned(count as u32)
                .await
                .expect("the budget is never closed"),
        };
        let started = Instant::now();
        let unqueued = Unqueued {
            inputs: count,
            deadline,
            stats: &inner.stats,
        };
        let prepared = self.prepare(inputs).await;
        std::mem::forget(unqueued);
        let prepared = prepared?;
        let mut timing = Timing {
            preprocess: started.elapsed(),
            ..Timing::default()
        };
        let mut pending = Vec::with_capacity(count);
        for input in prepared {
            let (reply, answer) = oneshot::channel();
            let permit = admission.split(1).expect("one permit per input");
            let (sent, truncated) = match input {
                Prepared::Text(text) => {
                    let truncated = text.truncated;
                    let job = Job::queued(text, deadline, reply, permit);
                    (inner.texts.send(job).is_ok(), truncated)
                }
                Prepared::Image(pixels) => {
                    let job = Job::queued(pixels, deadline, reply, permit);
                    (inner.pixels.send(job).is_ok(), false)
                }
            };
            if !sent {
                return Err(EngineError::Unavailable("the model is not running"));
            }
            pending.push((answer, truncated));
        }
        let mut batches: Vec<u64> = Vec::new();
        let mut embeddings = Vec::with_capacity(count);
        for (answer, truncated) in pending {
            let done: Done = answer
                .await
                .map_err(|_| EngineError::Unavailable("the model is not running"))??;
            timing.queue = timing.queue.max(done.queued);
            timing.batch_size = timing.batch_size.max(done.batch_size);
            if !batches.contains(&done.batch) {
                batches.push(done.batch);
                timing.model += done.model;
            }
            embeddings.push(Embedding {
                values: done.values,
                truncated,
            });
        }
        timing.batches = batches.len();
        Ok(Embedded { embeddings, timing })
    }

    /// Tokenises and decodes on the preprocessing pool, all inputs of the request at once.
    async fn prepare(&self, inputs: Vec<EmbedInput>) -> Result<Vec<Prepared>, EngineError> {
        let tasks = inputs.into_iter().enumerate().map(|(index, input)| {
            let pool = self.inner.preprocess.clone();
            let tokenizer = self.inner.tokenizer.clone();
            let images = self.inner.images.clone();
            async move {
                let _slot = pool
                    .acquire_owned()
                    .await
                    .expect("the pool is never closed");
                tokio::task::spawn_blocking(move || match input {
                    EmbedInput::Text(text) => tokenizer.encode(&text).map(Prepared::Text),
                    EmbedInput::Image(bytes) => images.process(&bytes).map(Prepared::Image),
                })
                .await
                .map_err(|e| {
                    tracing::error!(index, "preparing an input panicked: {e}");
                    EngineError::PreprocessFailed
                })?
                .map_err(|source| EngineError::Input { index, source })
            }
        });
        futures_util::future::try_join_all(tasks).await
    }
}

/// What to do when the queue budget cannot take a request's inputs now.
enum Admission {
    Refuse,
    Wait,
}

/// Counts a request's inputs as cancelled (or expired, past the deadline) when the request goes
/// away while they are being prepared, before the queue would count them.
struct Unqueued<'a> {
    inputs: usize,
    deadline: Option<Instant>,
    stats: &'a Stats,
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        for _ in 0..self.inputs {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.stats.expired();
            } else {
                self.stats.cancelled();
            }
        }
    }
}

fn describe(clip: &Checkpoint) -> Result<ModelDescription, StartError> {
    let device = match clip.towers.device() {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    };
    Ok(ModelDescription {
        name: clip.name.clone(),
        dim: clip.dim(),
        image_size: clip.image_size(),
        context_length: clip.tokenizer.context_length(),
        device,
        dtype: clip.towers.dtype().to_string(),
        scoring: clip.scoring,
        probe: clip.probe()?,
    })
}

/// Publishes the model thread's health until the thread is gone or nobody listens.
async fn watch_model_thread(
    thread: std::thread::JoinHandle<()>,
    stats: Arc<Stats>,
    stall_timeout: Duration,
    health: watch::Sender<Health>,
) {
    let period = (stall_timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Nobody listens once the engine is dropped: the thread ending then is the normal stop.
        if health.is_closed() {
            return;
        }
        let now = if thread.is_finished() {
            Health::Stopped
        } else if stats.busy_for() > stall_timeout {
            Health::Stalled
        } else {
            Health::Serving
        };
        let changed = health.send_if_modified(|current| std::mem::replace(current, now) != now);
        if changed {
            match now {
                Health::Serving => tracing::info!("the model thread is serving again"),
                Health::Stalled => tracing::error!(
                    "a forward pass has run for more than {stall_timeout:?}: not serving"
                ),
                Health::Stopped => tracing::error!("the model thread has stopped: not serving"),
            }
        }
        if now == Health::Stopped {
            return;
        }
    }
}
