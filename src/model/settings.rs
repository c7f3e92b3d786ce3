//! The `model` settings section: which checkpoint, on which device, in which precision.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{DeviceSpec, Dtype, ModelOptions, ModelSource};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// A checkpoint directory or a hub id; none: the bundled demo model.
    pub source: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    pub device: DeviceSpec,
    /// f32, f16 or bf16.
    pub dtype: Dtype,
    /// libtorch's CPU threads (0: one per core).
    pub threads: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            source: None,
            device: DeviceSpec::Auto,
            dtype: Dtype::F32,
            threads: 0,
        }
    }
}

impl ModelSettings {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(self.source.as_deref())
    }

    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            device: self.device,
            dtype: self.dtype,
        }
    }
}
