//! Error types, one per layer.

use std::path::{Path, PathBuf};

/// Loading a model directory failed: the message names the file, key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: cannot load the tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("missing tensor(s) in {path}: {names}")]
    MissingTensors { path: PathBuf, names: String },
    #[error("unexpected tensor(s) in {path}: {names}")]
    UnexpectedTensors { path: PathBuf, names: String },
    #[error("tensor {name} in {path} has shape {found:?}, the config expects {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("tensor {name} in {path} is stored as {kind}; CLIP weights are floating point")]
    TensorKind {
        path: PathBuf,
        name: String,
        kind: String,
    },
    #[error("invalid device {0:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"")]
    DeviceSyntax(String),
    #[error("device {0} is not available: {1}")]
    DeviceUnavailable(String, String),
    #[error("invalid dtype {0:?}: expected \"f32\", \"f16\" or \"bf16\"")]
    DtypeSyntax(String),
    #[error("the model does not run on {device} in {dtype}: {message}")]
    Warmup {
        device: String,
        dtype: String,
        message: String,
    },
    #[error("libtorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

impl ModelError {
    /// For `map_err` on a write to `path`.
    pub fn writing(path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Write { path, source }
    }
}

/// One input could not be turned into model input; the request that carried it fails alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("image is empty")]
    EmptyImage,
    #[error("image is {size} bytes; the limit is {limit}")]
    ImageTooLarge { size: usize, limit: usize },
    #[error("unsupported image format; supported: JPEG, PNG, WebP, GIF, BMP, TIFF")]
    UnsupportedFormat,
    #[error("image is {width}x{height} pixels; the limit is {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("image has zero width or height")]
    ZeroSized,
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("text is {size} bytes; the limit is {limit}")]
    TextTooLong { size: usize, limit: usize },
    #[error("cannot tokenize text: {0}")]
    Tokenize(String),
}

/// Starting the model failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] crate::model_source::SourceError),
    #[error("cannot load the model in {dir}: {source}")]
    Model { dir: PathBuf, source: ModelError },
    #[error("the model thread failed while loading: {0}")]
    Thread(String),
    #[error("cannot embed the configured classifiers' labels: {0}")]
    Classifiers(String),
    #[error("the text that tells this model's collections from another's: {0}")]
    Probe(String),
    #[error("cannot open the collections' data directory {dir}: {source}")]
    Collections {
        dir: PathBuf,
        source: std::io::Error,
    },
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

impl From<ClassifyError> for tonic::Status {
    fn from(error: ClassifyError) -> Self {
        match error {
            ClassifyError::Engine(e) => e.into(),
            ClassifyError::UnknownClassifier(_) => Self::not_found(error.to_string()),
            ClassifyError::InvalidRequest(_) => Self::invalid_argument(error.to_string()),
        }
    }
}

/// Why a Search or a Collections request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no collection named {0:?}")]
    UnknownCollection(String),
    #[error("collection {collection:?} has no item {id:?}")]
    UnknownItem { collection: String, id: String },
    #[error("a collection named {0:?} exists")]
    Exists(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the server holds {0} collections, its limit (index.max_collections)")]
    TooManyCollections(usize),
    #[error(
        "collection {name:?} holds embeddings of {model} ({dim} values); the server runs \
         {loaded} ({loaded_dim} values), which embeds differently: serve the collection with the \
         model that made it, or drop it"
    )]
    OtherModel {
        name: String,
        model: String,
        dim: usize,
        loaded: String,
        loaded_dim: usize,
    },
    #[error("collection {name:?} could not be opened at start-up: {reason}")]
    Unopened { name: String, reason: String },
    #[error("collection {0:?} cannot be written: its storage failed (see the server's log)")]
    Storage(String),
    #[error("{0} failed (see the server's log)")]
    Failed(&'static str),
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
            IndexError::InvalidRequest(_) => Self::invalid_argument(message),
            IndexError::TooManyCollections(_) => Self::resource_exhausted(message),
            IndexError::OtherModel { .. } => Self::failed_precondition(message),
            IndexError::Unopened { .. } => Self::data_loss(message),
            // The log has the details.
            IndexError::Storage(_) | IndexError::Failed(_) => Self::internal(message),
        }
    }
}
