//! Encoded image bytes to CLIP's pixel tensor, step for step as `CLIPImageProcessor` (PIL path):
//! decode, `convert("RGB")`, resize the shorter edge with Pillow's bicubic filter, centre-crop,
//! rescale, normalise.

use std::io::Cursor;
use std::ops::Range;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::jpeg_end;
use super::processor_config::{ProcessorConfig, Resize};
use super::resample::{resize_bicubic, resize_bicubic_region, Rgb8};
use super::InputError;

/// Bounds on what one image may cost before and after decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_bytes: usize,
    /// Decoded width x height; rejects decompression bombs before any pixel is allocated.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 << 20,
            max_pixels: 40_000_000,
        }
    }
}

const SUPPORTED: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

/// Decodes an encoded image (its first frame) into 8-bit RGB the way `transformers`'
/// `convert_to_rgb` does with PIL: an image with transparency is composited onto white; any
/// other is `convert("RGB")`-ed, which replicates grey, keeps the high byte of 16-bit colour and
/// saturates 16-bit grey at 255 (PIL's `I;16` conversion clips rather than scales).
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> Result<Rgb8, InputError> {
    if bytes.is_empty() {
        return Err(InputError::EmptyImage);
    }
    if bytes.len() > limits.max_bytes {
        return Err(InputError::ImageTooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InputError::Decode(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg) if !jpeg_end::is_complete(bytes) => {
            return Err(InputError::Decode(
                "truncated JPEG: the data ends before the end-of-image marker".into(),
            ))
        }
        Some(format) if SUPPORTED.contains(&format) => {}
        _ => return Err(InputError::UnsupportedFormat),
    }
    let decoder = reader
        .into_decoder()
        .map_err(|e| InputError::Decode(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(InputError::ZeroSized);
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InputError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    let decoded =
        DynamicImage::from_decoder(decoder).map_err(|e| InputError::Decode(e.to_string()))?;
    // IHDR: bit depth at byte 24, colour type at 25 (0 = grey).
    let grey16_png = bytes.starts_with(b"\x89PNG") && bytes.get(24..26) == Some(&[16, 0][..]);
    Ok(to_rgb_like_pil(decoded, grey16_png))
}

/// PIL's `alpha_composite` of a pixel over opaque white, in its fixed-point arithmetic (7 extra
/// bits, division by 255 as two shifts).
fn over_white(value: u8, alpha: u8) -> u8 {
    let (v, a) = (u32::from(value), u32::from(alpha));
    let t = (v * a + 255 * (255 - a)) * 128 + (0x80 << 7);
    ((((t >> 8) + t) >> 8) >> 7) as u8
}

/// `grey16_png`: a 16-bit grey PNG, which PIL opens as `I;16` and clips to 8 bits; the image crate
/// turns its transparent colour (if any) into an alpha channel, which is then either 0 or opaque.
fn to_rgb_like_pil(image: DynamicImage, grey16_png: bool) -> Rgb8 {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let grey = |v: u8| [v, v, v];
    let grey_over_white = |v: u8, a: u8| grey(over_white(v, a));
    let rgb_over_white = |[r, g, b, a]: [u8; 4]| [r, g, b].map(|v| over_white(v, a));
    let high = |v: u16| (v >> 8) as u8;
    let clipped = |v: u16| v.min(255) as u8;
    let data: Vec<u8> = match image {
        DynamicImage::ImageRgb8(img) => img.into_raw(),
        DynamicImage::ImageRgba8(img) => img.pixels().flat_map(|p| rgb_over_white(p.0)).collect(),
        DynamicImage::ImageLuma8(img) => img.pixels().flat_map(|p| grey(p[0])).collect(),
        DynamicImage::ImageLumaA8(img) => img
            .pixels()
            .flat_map(|p| grey_over_white(p[0], p[1]))
            .collect(),
        DynamicImage::ImageLuma16(img) => img.pixels().flat_map(|p| grey(clipped(p[0]))).collect(),
        DynamicImage::ImageLumaA16(img) if grey16_png => img
            .pixels()
            .flat_map(|p| grey_over_white(clipped(p[0]), high(p[1])))
            .collect(),
        DynamicImage::ImageLumaA16(img) => img
            .pixels()
            .flat_map(|p| grey_over_white(high(p[0]), high(p[1])))
            .collect(),
        DynamicImage::ImageRgb16(img) => img.pixels().flat_map(|p| p.0.map(high)).collect(),
        DynamicImage::ImageRgba16(img) => img
            .pixels()
            .flat_map(|p| rgb_over_white(p.0.map(high)))
            .collect(),
        other => other.to_rgb8().into_raw(),
    };
    Rgb8 {
        width,
        height,
        data,
    }
}

/// `transformers`' `get_resize_output_image_size` with `default_to_square=False`: the shorter edge
/// becomes `target`, the longer one `int(target * long / short)` (truncated, not rounded).
fn shortest_edge_size(width: usize, height: usize, target: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (target as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (target, new_long)
    } else {
        (new_long, target)
    }
}

/// One axis of `transformers`' `center_crop`: the pixels of an axis of `size` that a crop of
/// `crop` keeps (starting at `(size - crop) // 2`), and where they land in the crop (an axis
/// shorter than the crop is centred on black, the odd pixel of margin before it).
fn crop_axis(size: usize, crop: usize) -> (Range<usize>, usize) {
    if size >= crop {
        let start = (size - crop) / 2;
        (start..start + crop, 0)
    } else {
        (0..size, (crop - size).div_ceil(2))
    }
}

/// Places the kept part of an image on the crop's black canvas; it already is the crop unless
/// the image was smaller than the crop.
fn pad_to(kept: Rgb8, crop_height: usize, crop_width: usize) -> Rgb8 {
    if (kept.height, kept.width) == (crop_height, crop_width) {
        return kept;
    }
    let (_, top) = crop_axis(kept.height, crop_height);
    let (_, left) = crop_axis(kept.width, crop_width);
    let mut data = vec![0u8; crop_height * crop_width * 3];
    for (r, row) in kept.data.chunks_exact(kept.width * 3).enumerate() {
        let to = ((top + r) * crop_width + left) * 3;
        data[to..to + row.len()].copy_from_slice(row);
    }
    Rgb8 {
        width: crop_width,
        height: crop_height,
        data,
    }
}

/// Decodes and preprocesses images for one checkpoint.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: ProcessorConfig,
    limits: ImageLimits,
    /// Per channel, the float value of each 8-bit level after rescaling and normalising.
    levels: [[f32; 256]; 3],
}

impl ImageProcessor {
    pub fn new(config: ProcessorConfig, limits: ImageLimits) -> Self {
        let mut levels = [[0f32; 256]; 3];
        for (c, table) in levels.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                // numpy: rescale in float64 then cast to float32; normalise in float32.
                let mut x = match config.rescale_factor {
                    Some(factor) => (v as f64 * factor) as f32,
                    None => v as f32,
                };
                if let Some((mean, std)) = config.mean_std {
                    x = (x - mean[c]) / std[c];
                }
                *out = x;
            }
        }
        Self {
            config,
            limits,
            levels,
        }
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Resizes and crops a decoded image to the model's input size.
    pub fn fit(&self, image: &Rgb8) -> Rgb8 {
        let (width, height) = match self.config.resize {
            None => (image.width, image.height),
            Some(Resize::ShortestEdge(target)) => {
                shortest_edge_size(image.width, image.height, target as usize)
            }
            Some(Resize::Exact { height, width }) => (width as usize, height as usize),
        };
        match self.config.center_crop {
            None => resize_bicubic(image, width, height),
            // Only the part of the resized image that the crop keeps is computed.
            Some((h, w)) => {
                let (h, w) = (h as usize, w as usize);
                let (rows, _) = crop_axis(height, h);
                let (cols, _) = crop_axis(width, w);
                pad_to(
                    resize_bicubic_region(image, width, height, cols, rows),
                    h,
                    w,
                )
            }
        }
    }

    /// Channel-first (`[3, height, width]`) normalised pixels.
    pub fn normalize(&self, image: &Rgb8) -> Vec<f32> {
        let plane = image.width * image.height;
        let mut out = vec![0f32; 3 * plane];
        for (i, pixel) in image.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = self.levels[c][pixel[c] as usize];
            }
        }
        out
    }

    /// Encoded bytes to `[3, height, width]` normalised pixels.
    pub fn process(&self, bytes: &[u8]) -> Result<Vec<f32>, InputError> {
        let rgb = decode_rgb(bytes, &self.limits)?;
        Ok(self.normalize(&self.fit(&rgb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compositing_over_white_keeps_opaque_pixels_and_whitens_transparent_ones() {
        for v in 0..=255u8 {
            assert_eq!(over_white(v, 255), v);
            assert_eq!(over_white(v, 0), 255);
        }
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn shortest_edge_truncates_the_long_edge() {
        assert_eq!(shortest_edge_size(640, 480, 224), (298, 224));
        assert_eq!(shortest_edge_size(480, 640, 224), (224, 298));
        assert_eq!(shortest_edge_size(3, 1000, 224), (224, 74666));
        assert_eq!(shortest_edge_size(50, 50, 224), (224, 224));
    }

    #[test]
    fn crop_takes_the_floor_of_the_centre_and_pads_small_images() {
        let img = Rgb8 {
            width: 5,
            height: 1,
            data: (0..15).collect(),
        };
        let crop_only = |h, w| {
            let config = ProcessorConfig {
                resize: None,
                center_crop: Some((h, w)),
                rescale_factor: None,
                mean_std: None,
            };
            ImageProcessor::new(config, ImageLimits::default()).fit(&img)
        };
        let cropped = crop_only(1, 2);
        assert_eq!(cropped.data, vec![3, 4, 5, 6, 7, 8]);
        let padded = crop_only(3, 5);
        assert_eq!(&padded.data[..15], &[0; 15]);
        assert_eq!(&padded.data[15..30], &img.data[..]);
    }
}
