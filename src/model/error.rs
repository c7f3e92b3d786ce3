//! Why a checkpoint could not be loaded: the message names the file, key or tensor at fault.

use std::path::PathBuf;

use crate::files::FileError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    File(#[from] FileError),
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
    #[error("the text that tells this model's collections from another's: {0}")]
    Probe(String),
    #[error("libtorch failed: {0}")]
    Torch(#[from] tch::TchError),
}
