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
