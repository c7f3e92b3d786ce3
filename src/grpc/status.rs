//! The one mapping from the domain's errors to gRPC statuses: every variant has its code, and no
//! arm catches all, so a new variant must be given one.

use crate::classify::ClassifyError;
use crate::engine::EngineError;
use crate::index::IndexError;

impl From<EngineError> for tonic::Status {
    fn from(error: EngineError) -> Self {
        let message = error.to_string();
        match error {
            EngineError::NoInputs
            | EngineError::EmptyInput { .. }
            | EngineError::TooManyInputs { .. }
            | EngineError::Input { .. } => Self::invalid_argument(message),
            EngineError::QueueFull { .. } => Self::resource_exhausted(message),
            EngineError::DeadlineExceeded => Self::deadline_exceeded(message),
            EngineError::Unavailable(_) => Self::unavailable(message),
            // The log has the details.
            EngineError::ModelFailed | EngineError::PreprocessFailed => Self::internal(message),
        }
    }
}

impl From<ClassifyError> for tonic::Status {
    fn from(error: ClassifyError) -> Self {
        match error {
            ClassifyError::Engine(e) => e.into(),
            ClassifyError::UnknownClassifier(_) => Self::not_found(error.to_string()),
            ClassifyError::InvalidRequest(_) => Self::invalid_argument(error.to_string()),
        }
    }
}

impl From<IndexError> for tonic::Status {
    fn from(error: IndexError) -> Self {
        let message = error.to_string();
        match error {
            IndexError::Engine(e) => e.into(),
            IndexError::UnknownCollection(_) | IndexError::UnknownItem { .. } => {
                Self::not_found(message)
            }
            IndexError::Exists(_) => Self::already_exists(message),
            IndexError::InvalidRequest(_) | IndexError::Content { .. } => {
                Self::invalid_argument(message)
            }
            IndexError::TooManyCollections(_) => Self::resource_exhausted(message),
            IndexError::OtherModel { .. } => Self::failed_precondition(message),
            IndexError::Unavailable(_) => Self::unavailable(message),
            IndexError::Unopened { .. } => Self::data_loss(message),
            // The log has the details.
            IndexError::Storage(_) | IndexError::Failed(_) => Self::internal(message),
        }
    }
}
