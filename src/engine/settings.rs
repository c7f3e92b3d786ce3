//! The engine's settings sections: `batching` and `limits`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::preprocess::{ImageLimits, InputLimits};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingSettings {
    /// Inputs per forward pass at most.
    pub max_batch_size: usize,
    /// How long the oldest queued input waits for others to join its batch.
    pub max_delay_ms: u64,
    /// Inputs admitted and not yet answered, over all requests; past it, RESOURCE_EXHAUSTED.
    pub max_queued_inputs: usize,
    /// A forward pass running longer than this marks the server NOT_SERVING until it ends.
    pub stall_timeout_ms: u64,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_delay_ms: 5,
            max_queued_inputs: 1024,
            stall_timeout_ms: 60_000,
        }
    }
}

impl BatchingSettings {
    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_inputs_per_request: usize,
    pub max_image_bytes: usize,
    /// Decoded width x height.
    pub max_image_pixels: u64,
    pub max_text_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let inputs = InputLimits::default();
        Self {
            max_inputs_per_request: 256,
            max_image_bytes: inputs.image.max_bytes,
            max_image_pixels: inputs.image.max_pixels,
            max_text_bytes: inputs.max_text_bytes,
        }
    }
}

impl LimitSettings {
    pub fn inputs(&self) -> InputLimits {
        InputLimits {
            image: ImageLimits {
                max_bytes: self.max_image_bytes,
                max_pixels: self.max_image_pixels,
            },
            max_text_bytes: self.max_text_bytes,
        }
    }
}
