//! Why a Classify request was not answered.

use crate::engine::EngineError;

/// Why a Classify request was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no classifier named {0:?} is configured")]
    UnknownClassifier(String),
    #[error("{0}")]
    InvalidRequest(String),
}
