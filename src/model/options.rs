//! Where the model runs and in which precision.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::ModelError;

/// `auto` (the first GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`. Settings
/// hold it as that text, checked when they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ModelError::DeviceSyntax(s.to_owned());
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let index = other.strip_prefix("cuda:").ok_or_else(bad)?;
                index.parse().map(Self::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// Resolves to a device libtorch can use now, or says why not.
    pub fn resolve(self) -> Result<Device, ModelError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda(index) => {
                let count = tch::Cuda::device_count();
                if !cfg!(clipd_cuda_linked) {
                    Err(ModelError::DeviceUnavailable(
                        self.to_string(),
                        "this clipd was built without CUDA: libtorch's CUDA libraries were not \
                         installed at build time (scripts/setup.sh installs them where \
                         `nvidia-smi -L` works; then rebuild)"
                            .into(),
                    ))
                } else if !tch::Cuda::is_available() {
                    Err(ModelError::DeviceUnavailable(
                        self.to_string(),
                        "libtorch sees no CUDA device: no GPU, or an NVIDIA driver too old for \
                         CUDA 13 (580 or newer)"
                            .into(),
                    ))
                } else if index as i64 >= count {
                    Err(ModelError::DeviceUnavailable(
                        self.to_string(),
                        format!("only {count} CUDA device(s) present"),
                    ))
                } else {
                    Ok(Device::Cuda(index))
                }
            }
        }
    }
}

/// The precision of the weights and of the computation; embeddings are returned as f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Dtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl FromStr for Dtype {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(ModelError::DtypeSyntax(s.to_owned())),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}

impl Dtype {
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::Bf16 => Kind::BFloat16,
        }
    }
}

/// Settings spell devices and dtypes as their text.
macro_rules! text_conversions {
    ($type:ty) => {
        impl TryFrom<String> for $type {
            type Error = ModelError;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.to_string()
            }
        }
    };
}

text_conversions!(DeviceSpec);
text_conversions!(Dtype);

/// How to load a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelOptions {
    pub device: DeviceSpec,
    pub dtype: Dtype,
}
