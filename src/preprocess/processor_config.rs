//! `preprocessor_config.json` of a `CLIPImageProcessor`, read as `transformers` reads it: `size`
//! and `crop_size` may be plain integers (older checkpoints) or objects (newer ones).

use std::path::Path;

use serde::Deserialize;

use crate::files::{read_json, FileError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Scale so that the shorter edge has this length, keeping the aspect ratio.
    ShortestEdge(u32),
    /// Scale to exactly this size.
    Exact { height: u32, width: u32 },
}

/// The steps of the image pipeline, with the checkpoint's constants.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    pub resize: Option<Resize>,
    pub center_crop: Option<(u32, u32)>,
    pub rescale_factor: Option<f64>,
    pub mean_std: Option<([f32; 3], [f32; 3])>,
}

/// `size` or `crop_size`: an integer (older checkpoints) or an object (newer ones).
#[derive(Debug, Default)]
struct SizeField {
    square: Option<u32>,
    shortest_edge: Option<u32>,
    height: Option<u32>,
    width: Option<u32>,
}

impl SizeField {
    fn parse(value: Option<&serde_json::Value>, key: &str) -> Result<Self, String> {
        let positive = |v: &serde_json::Value, name: &str| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} must be a positive integer, got {v}"))
        };
        match value {
            None => Ok(Self {
                square: Some(224),
                ..Self::default()
            }),
            Some(serde_json::Value::Object(map)) => {
                let mut field = Self::default();
                for (k, v) in map {
                    let name = format!("{key}.{k}");
                    match k.as_str() {
                        "shortest_edge" => field.shortest_edge = Some(positive(v, &name)?),
                        "height" => field.height = Some(positive(v, &name)?),
                        "width" => field.width = Some(positive(v, &name)?),
                        // Caps such as longest_edge change the result; ignoring them would
                        // silently diverge from transformers.
                        _ => return Err(format!("{name} is not supported by clipd")),
                    }
                }
                Ok(field)
            }
            Some(v) => Ok(Self {
                square: Some(positive(v, key)?),
                ..Self::default()
            }),
        }
    }
}

const BICUBIC: u32 = 3;

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default = "default_true")]
    do_resize: bool,
    size: Option<serde_json::Value>,
    resample: Option<u32>,
    #[serde(default = "default_true")]
    do_center_crop: bool,
    crop_size: Option<serde_json::Value>,
    #[serde(default = "default_true")]
    do_rescale: bool,
    rescale_factor: Option<f64>,
    #[serde(default = "default_true")]
    do_normalize: bool,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

/// CLIP's published normalisation constants, `CLIPImageProcessor`'s defaults; f64 like Python's
/// floats, rounded to f32 as numpy does.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

fn three(values: Option<Vec<f32>>, key: &str, default: [f64; 3]) -> Result<[f32; 3], String> {
    match values {
        None => Ok(default.map(|v| v as f32)),
        Some(v) => <[f32; 3]>::try_from(v.as_slice())
            .map_err(|_| format!("{key} must have 3 values (R, G, B), got {}", v.len())),
    }
}

impl ProcessorConfig {
    pub fn from_file(path: &Path) -> Result<Self, FileError> {
        read_json(path, Self::from_json)
    }

    pub fn from_json(json: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if let Some(resample) = raw.resample {
            if resample != BICUBIC {
                return Err(format!(
                    "resample is {resample}; clipd implements Pillow's bicubic filter (3), which \
                     every CLIP checkpoint uses"
                ));
            }
        }
        let size = SizeField::parse(raw.size.as_ref(), "size")?;
        let resize = match size {
            _ if !raw.do_resize => None,
            SizeField {
                square: Some(s), ..
            }
            | SizeField {
                shortest_edge: Some(s),
                ..
            } => Some(Resize::ShortestEdge(s)),
            SizeField {
                height: Some(height),
                width: Some(width),
                ..
            } => Some(Resize::Exact { height, width }),
            _ => return Err("size needs shortest_edge, or height and width".into()),
        };
        let crop = SizeField::parse(raw.crop_size.as_ref(), "crop_size")?;
        let center_crop = match crop {
            _ if !raw.do_center_crop => None,
            SizeField {
                square: Some(s), ..
            } => Some((s, s)),
            SizeField {
                height: Some(h),
                width: Some(w),
                ..
            } => Some((h, w)),
            _ => return Err("crop_size needs height and width".into()),
        };
        let mean_std = if raw.do_normalize {
            let mean = three(raw.image_mean, "image_mean", OPENAI_CLIP_MEAN)?;
            let std = three(raw.image_std, "image_std", OPENAI_CLIP_STD)?;
            if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                return Err(format!(
                    "image_std must be finite and non-zero, got {std:?}"
                ));
            }
            Some((mean, std))
        } else {
            None
        };
        Ok(Self {
            resize,
            center_crop,
            rescale_factor: raw
                .do_rescale
                .then(|| raw.rescale_factor.unwrap_or(1.0 / 255.0)),
            mean_std,
        })
    }

    /// The (height, width) of every processed image, when the pipeline fixes it.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        match (self.center_crop, self.resize) {
            (Some(crop), _) => Some(crop),
            (None, Some(Resize::Exact { height, width })) => Some((height, width)),
            _ => None,
        }
    }
}
