//! Turning user inputs into model inputs: text to token ids, image bytes to pixels.

pub mod image;
mod jpeg_end;
pub mod processor_config;
pub mod resample;
pub mod text;

pub use self::image::{decode_rgb, ImageLimits, ImageProcessor};
pub use processor_config::{ProcessorConfig, Resize};
pub use resample::{resize_bicubic, Rgb8};
pub use text::{ClipTokenizer, TokenizedText};

/// Limits on single inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub image: ImageLimits,
    pub max_text_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            image: ImageLimits::default(),
            max_text_bytes: 16 << 10,
        }
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
