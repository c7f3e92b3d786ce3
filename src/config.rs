//! The settings tree and its layers, lowest first: built-in defaults, the `--config` file (TOML or
//! YAML), `CLIPD__SECTION__KEY` environment variables, command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clip::InputLimits;
use crate::model::{DeviceSpec, Dtype, ModelOptions};
use crate::model_source::ModelSource;
use crate::preprocess::ImageLimits;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub model: ModelSettings,
    pub batching: BatchingSettings,
    pub limits: LimitSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// The largest request message accepted (gRPC's default of 4 MiB is too small for images).
    pub max_message_bytes: usize,
    /// EmbedStream messages worked on at once per stream; the stream is not read further meanwhile.
    pub stream_max_in_flight: usize,
    /// Threads that decode images and tokenise texts (0: one per core).
    pub preprocess_threads: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            max_message_bytes: 64 << 20,
            stream_max_in_flight: 8,
            preprocess_threads: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// A checkpoint directory or a hub id; none: the bundled demo model.
    pub source: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    pub device: String,
    /// f32, f16 or bf16.
    pub dtype: String,
    /// libtorch's CPU threads (0: one per core).
    pub threads: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            source: None,
            device: "auto".into(),
            dtype: "f32".into(),
            threads: 0,
        }
    }
}

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

/// A setting that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Layers(#[from] config::ConfigError),
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub model: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    pub device: Option<DeviceSpec>,
    pub dtype: Option<Dtype>,
}

impl Settings {
    /// Reads the layers and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CLIPD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        if let Some(model) = &overrides.model {
            builder = builder.set_override("model.source", model.to_string_lossy().as_ref())?;
        }
        if let Some(addr) = overrides.grpc_addr {
            builder = builder.set_override("server.grpc_addr", addr.to_string())?;
        }
        if let Some(device) = overrides.device {
            builder = builder.set_override("model.device", device.to_string())?;
        }
        if let Some(dtype) = overrides.dtype {
            builder = builder.set_override("model.dtype", dtype.to_string())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        self.model_options()?;
        let (b, l, s) = (&self.batching, &self.limits, &self.server);
        if b.max_batch_size == 0 {
            return invalid("batching.max_batch_size", "must be at least 1");
        }
        if b.max_queued_inputs < l.max_inputs_per_request {
            return invalid(
                "batching.max_queued_inputs",
                "must be at least limits.max_inputs_per_request, or a full request could never \
                 be admitted",
            );
        }
        if b.stall_timeout_ms == 0 {
            return invalid("batching.stall_timeout_ms", "must be at least 1");
        }
        if l.max_inputs_per_request == 0 {
            return invalid("limits.max_inputs_per_request", "must be at least 1");
        }
        if s.stream_max_in_flight == 0 {
            return invalid("server.stream_max_in_flight", "must be at least 1");
        }
        if s.max_message_bytes < l.max_image_bytes {
            return invalid(
                "server.max_message_bytes",
                "must be at least limits.max_image_bytes, or the largest image allowed could \
                 never be sent",
            );
        }
        Ok(())
    }

    pub fn model_options(&self) -> Result<ModelOptions, ConfigError> {
        Ok(ModelOptions {
            device: parse("model.device", &self.model.device)?,
            dtype: parse("model.dtype", &self.model.dtype)?,
        })
    }

    pub fn model_source(&self) -> ModelSource {
        ModelSource::parse(self.model.source.as_deref())
    }
}

fn parse<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Invalid {
        key,
        reason: e.to_string(),
    })
}
