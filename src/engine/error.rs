//! Why the engine did not start, or did not answer a request with embeddings.

use crate::model::{LoadError, ModelError};
use crate::preprocess::InputError;

/// Starting the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the model thread failed while loading: {0}")]
    Thread(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Why a request to the engine was not answered with embeddings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the request has no inputs")]
    NoInputs,
    #[error("input {index} is empty: set text or image")]
    EmptyInput { index: usize },
    #[error("the request has {count} inputs; the limit is {limit}")]
    TooManyInputs { count: usize, limit: usize },
    #[error("input {index}: {source}")]
    Input { index: usize, source: InputError },
    #[error("the server's queue is full ({limit} inputs queued or running); retry with back-off")]
    QueueFull { limit: usize },
    #[error("the deadline passed while the input waited in the queue")]
    DeadlineExceeded,
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("the model failed on this batch")]
    ModelFailed,
    #[error("preparing an input failed")]
    PreprocessFailed,
}
