//! Every bad input is a clear `InputError`, never a panic, and the model that saw it keeps
//! working: malformed, truncated, oversized and unsupported images; texts over the byte limit;
//! a bad input inside a batch is reported with its index.

mod common;

use std::io::Cursor;

use clipd::model::Checkpoint;
use clipd::preprocess::InputError;
use clipd::preprocess::InputLimits;
use clipd::preprocess::{ImageLimits, ImageProcessor};
use common::*;

const GOOD_PNG: &str = "rgb_64x64.png";
const GOOD_JPEG: &str = "q90_444_320x240.jpg";
const START_OF_TEXT: i64 = 49406;
const END_OF_TEXT: i64 = 49407;

fn load_with(limits: InputLimits) -> Checkpoint {
    load_cpu_with(&model_dir("tiny-a"), &limits)
}

fn load() -> Checkpoint {
    load_with(InputLimits::default())
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(image_path(name)).unwrap()
}

/// A model and what it made of a good image and a good text before seeing any bad input.
struct Checked {
    clip: Checkpoint,
    image: Vec<f32>,
    text: Vec<f32>,
}

impl Checked {
    fn new(clip: Checkpoint) -> Self {
        let image = clip.embed_images(&[&read(GOOD_PNG)]).unwrap().remove(0);
        let text = clip.embed_texts(&["a good text"]).unwrap().remove(0).values;
        Self { clip, image, text }
    }

    /// Feeds `bytes` alone, expects an error, checks the model still gives the same embeddings.
    fn image_error(&self, bytes: &[u8]) -> InputError {
        let error = match self.clip.embed_images(&[bytes]) {
            Ok(_) => panic!("a bad image ({} bytes) was embedded", bytes.len()),
            Err((index, error)) => {
                assert_eq!(index, 0);
                error
            }
        };
        assert!(!error.to_string().is_empty());
        self.assert_still_works();
        error
    }

    fn assert_still_works(&self) {
        let image = self
            .clip
            .embed_images(&[&read(GOOD_PNG)])
            .unwrap()
            .remove(0);
        assert!(cosine(&image, &self.image) >= 0.99999);
        let text = self
            .clip
            .embed_texts(&["a good text"])
            .unwrap()
            .remove(0)
            .values;
        assert!(cosine(&text, &self.text) >= 0.99999);
    }
}

// ---------------------------------------------------------------------------------------------
// PNG crafting

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn encode_png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 40) as u8, 128])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A small valid PNG whose IHDR then claims `width` x `height` (with a correct CRC).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = encode_png(2, 2);
    // signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... CRC at 29..33.
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn crafted_png_headers_are_well_formed() {
    // The check value of CRC-32, and the encoder's own IHDR CRC recomputed.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    let bytes = encode_png(3, 5);
    assert_eq!(crc32(&bytes[12..29]).to_be_bytes(), bytes[29..33]);
    // Claiming the real size changes nothing; the crafted 2x2 image decodes.
    let two = encode_png(2, 2);
    assert_eq!(png_claiming(2, 2), two);
    load().images.process(&two).unwrap();
}

// ---------------------------------------------------------------------------------------------
// images

#[test]
fn empty_bytes_are_an_empty_image() {
    let checked = Checked::new(load());
    assert_eq!(checked.image_error(b""), InputError::EmptyImage);
}

#[test]
fn text_bytes_are_an_unsupported_format() {
    let checked = Checked::new(load());
    let error = checked.image_error(b"hello, this is a text file and not an image\n");
    assert_eq!(error, InputError::UnsupportedFormat);
}

#[test]
fn pnm_ico_and_qoi_are_unsupported_formats() {
    let checked = Checked::new(load());
    let mut ppm = b"P6\n2 2\n255\n".to_vec();
    ppm.extend([200u8; 12]);
    let ico = [
        0u8, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0,
    ];
    let qoi = b"qoif\0\0\0\x02\0\0\0\x02\x03\x00";
    for (what, bytes) in [("PPM", &ppm[..]), ("ICO", &ico[..]), ("QOI", &qoi[..])] {
        let error = checked.image_error(bytes);
        assert_eq!(error, InputError::UnsupportedFormat, "{what}");
        assert!(error.to_string().contains("PNG"), "{error}");
    }
}

#[test]
fn png_truncated_to_half_is_a_decode_error() {
    let checked = Checked::new(load());
    for name in [GOOD_PNG, "rgb_640x480.png", "p_palette_210x150.png"] {
        let bytes = read(name);
        let error = checked.image_error(&bytes[..bytes.len() / 2]);
        assert!(matches!(error, InputError::Decode(_)), "{name}: {error:?}");
    }
}

#[test]
fn png_cut_inside_the_header_is_a_decode_error() {
    let checked = Checked::new(load());
    let bytes = read(GOOD_PNG);
    for len in [8, 12, 20, 33] {
        let error = checked.image_error(&bytes[..len]);
        assert!(matches!(error, InputError::Decode(_)), "{len}: {error:?}");
    }
}

#[test]
fn png_with_corrupt_ihdr_crc_is_a_decode_error() {
    let checked = Checked::new(load());
    let mut bytes = read(GOOD_PNG);
    bytes[29] ^= 0xff;
    let error = checked.image_error(&bytes);
    assert!(matches!(error, InputError::Decode(_)), "{error:?}");
}

#[test]
fn png_with_zero_width_is_rejected() {
    let checked = Checked::new(load());
    for (w, h) in [(0, 2), (2, 0), (0, 0)] {
        let error = checked.image_error(&png_claiming(w, h));
        // The PNG decoder itself refuses zero dimensions in the header; either way, an error.
        assert!(
            matches!(error, InputError::ZeroSized | InputError::Decode(_)),
            "{w}x{h}: {error:?}"
        );
    }
}

#[test]
fn decompression_bomb_is_rejected_from_the_header() {
    let checked = Checked::new(load());
    let error = checked.image_error(&png_claiming(100_000, 100_000));
    assert_eq!(
        error,
        InputError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            limit: ImageLimits::default().max_pixels,
        }
    );
    assert!(error.to_string().contains("100000x100000"), "{error}");
}

#[test]
fn pixel_limit_is_inclusive() {
    let clip = load();
    let exact = ImageProcessor::new(
        clip.images.config().clone(),
        ImageLimits {
            max_pixels: 64 * 64,
            ..ImageLimits::default()
        },
    );
    exact.process(&read(GOOD_PNG)).unwrap();
    let below = ImageProcessor::new(
        clip.images.config().clone(),
        ImageLimits {
            max_pixels: 64 * 64 - 1,
            ..ImageLimits::default()
        },
    );
    let error = below.process(&read(GOOD_PNG)).unwrap_err();
    assert!(
        matches!(
            error,
            InputError::TooManyPixels {
                width: 64,
                height: 64,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn image_over_the_byte_limit_is_too_large() {
    let clip = load();
    let bytes = read(GOOD_JPEG);
    let size = bytes.len();
    let processor = |max_bytes| {
        ImageProcessor::new(
            clip.images.config().clone(),
            ImageLimits {
                max_bytes,
                ..ImageLimits::default()
            },
        )
    };
    processor(size).process(&bytes).unwrap();
    assert_eq!(
        processor(size - 1).process(&bytes).unwrap_err(),
        InputError::ImageTooLarge {
            size,
            limit: size - 1
        }
    );

    // The same limit set through InputLimits when loading.
    let limited = Checked::new(load_with(InputLimits {
        image: ImageLimits {
            max_bytes: 4096,
            ..ImageLimits::default()
        },
        ..InputLimits::default()
    }));
    let error = limited.image_error(&bytes);
    assert_eq!(error, InputError::ImageTooLarge { size, limit: 4096 });
    assert!(error.to_string().contains("4096"), "{error}");
}

#[test]
fn jpeg_cut_anywhere_is_a_decode_error() {
    let checked = Checked::new(load());
    for name in [GOOD_JPEG, "progressive_400x300.jpg", "grey_256x128.jpg"] {
        let bytes = read(name);
        // Inside the headers nothing can be decoded; inside the entropy-coded data the decoder
        // would fill in the rest, but Pillow (and so transformers) rejects a truncated file, and
        // so does clipd. Two bytes short is just the end-of-image marker missing.
        for len in [3, 20, 200, bytes.len() / 2, bytes.len() - 2] {
            let error = checked.image_error(&bytes[..len]);
            assert!(
                matches!(error, InputError::Decode(_)),
                "{name}[..{len}]: {error:?}"
            );
        }
        checked.assert_still_works();
    }
}

#[test]
fn jpeg_with_trailing_bytes_after_its_end_still_decodes() {
    let checked = Checked::new(load());
    let mut bytes = read(GOOD_JPEG);
    let clean = checked.clip.embed_images(&[&bytes]).unwrap().remove(0);
    bytes.extend_from_slice(b"\xff\xda trailer some cameras append");
    let with_trailer = checked.clip.embed_images(&[&bytes]).unwrap().remove(0);
    assert_eq!(clean, with_trailer);
}

#[test]
fn garbage_after_a_valid_magic_number_is_a_decode_error() {
    let checked = Checked::new(load());
    let mut bytes = Vec::new();
    for (magic, what) in [
        (&b"\x89PNG\r\n\x1a\n"[..], "PNG"),
        (&[0xff, 0xd8, 0xff][..], "JPEG"),
        (&b"GIF89a"[..], "GIF"),
        (&b"RIFF\0\0\0\0WEBP"[..], "WebP"),
        (&b"II*\0"[..], "TIFF"),
        (&b"BM"[..], "BMP"),
    ] {
        bytes.clear();
        bytes.extend_from_slice(magic);
        bytes.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        let error = checked.image_error(&bytes);
        assert!(matches!(error, InputError::Decode(_)), "{what}: {error:?}");
    }
}

#[test]
fn bad_image_in_a_batch_is_reported_with_its_index() {
    let clip = load();
    let good_png = read(GOOD_PNG);
    let good_jpeg = read(GOOD_JPEG);
    let truncated = &good_png[..good_png.len() / 2];
    for bad_index in 0..3 {
        let mut batch: Vec<&[u8]> = vec![&good_png, &good_jpeg, &good_png];
        batch[bad_index] = truncated;
        match clip.embed_images(&batch) {
            Ok(_) => panic!("a batch with a truncated image at {bad_index} was embedded"),
            Err((index, error)) => {
                assert_eq!(index, bad_index);
                assert!(matches!(error, InputError::Decode(_)), "{error:?}");
            }
        }
    }
    // Two bad ones: the first is reported.
    let batch: Vec<&[u8]> = vec![&good_png, b"", truncated];
    let (index, error) = clip.embed_images(&batch).err().unwrap();
    assert_eq!((index, error), (1, InputError::EmptyImage));
    // And the good ones alone still embed.
    let embeddings = clip.embed_images(&[&good_png, &good_jpeg]).unwrap();
    assert_eq!(embeddings.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// texts

#[test]
fn text_over_the_byte_limit_is_too_long() {
    let checked = Checked::new(load_with(InputLimits {
        max_text_bytes: 100,
        ..InputLimits::default()
    }));
    let tokenizer = &checked.clip.tokenizer;
    tokenizer.encode(&"x".repeat(100)).unwrap();
    assert_eq!(
        tokenizer.encode(&"x".repeat(101)).unwrap_err(),
        InputError::TextTooLong {
            size: 101,
            limit: 100
        }
    );
    // Bytes, not characters: 34 three-byte characters are 102 bytes.
    let cjk = "猫".repeat(34);
    assert!(matches!(
        tokenizer.encode(&cjk).unwrap_err(),
        InputError::TextTooLong { size: 102, .. }
    ));
    let long = "y".repeat(500);
    let (index, error) = checked
        .clip
        .embed_texts(&["fine", "also fine", &long])
        .err()
        .unwrap();
    assert_eq!(index, 2);
    assert_eq!(
        error,
        InputError::TextTooLong {
            size: 500,
            limit: 100
        }
    );
    assert!(error.to_string().contains("500"), "{error}");
    checked.assert_still_works();
}

#[test]
fn default_text_limit_rejects_a_huge_text() {
    let checked = Checked::new(load());
    let limit = InputLimits::default().max_text_bytes;
    let huge = "word ".repeat(limit / 5 + 1);
    let (index, error) = checked.clip.embed_texts(&[&huge]).err().unwrap();
    assert_eq!(index, 0);
    assert!(matches!(error, InputError::TextTooLong { .. }), "{error:?}");
    checked.assert_still_works();
}

#[test]
fn empty_text_is_start_and_end_tokens_only() {
    let clip = load();
    let tokenized = clip.tokenizer.encode("").unwrap();
    assert_eq!(tokenized.ids, vec![START_OF_TEXT, END_OF_TEXT]);
    assert!(!tokenized.truncated);
    let embedding = clip.embed_texts(&[""]).unwrap().remove(0);
    assert!(!embedding.truncated);
    assert_eq!(embedding.values.len(), clip.dim());
    let norm: f32 = embedding.values.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn text_of_5000_words_is_truncated_to_the_context_length() {
    let clip = load();
    let words = ["a", "cat", "on", "a", "mat"];
    let text: Vec<&str> = (0..5000).map(|i| words[i % words.len()]).collect();
    let text = text.join(" ");
    assert!(text.len() <= InputLimits::default().max_text_bytes);
    let tokenized = clip.tokenizer.encode(&text).unwrap();
    assert!(tokenized.truncated);
    assert_eq!(tokenized.ids.len(), clip.tokenizer.context_length());
    assert_eq!(tokenized.ids.len(), 77);
    assert_eq!(tokenized.ids[0], START_OF_TEXT);
    assert_eq!(*tokenized.ids.last().unwrap(), END_OF_TEXT);
    assert_eq!(
        tokenized
            .ids
            .iter()
            .filter(|&&id| id == END_OF_TEXT)
            .count(),
        1
    );

    let embedded = clip.embed_texts(&[&text, "short"]).unwrap();
    assert!(embedded[0].truncated);
    assert!(!embedded[1].truncated);
}

#[test]
fn text_exactly_filling_the_context_is_not_truncated() {
    let clip = load();
    // "a" is one token: 75 of them plus the start and end tokens make 77.
    let fits = vec!["a"; 75].join(" ");
    let tokenized = clip.tokenizer.encode(&fits).unwrap();
    assert_eq!(tokenized.ids.len(), 77);
    assert!(!tokenized.truncated);
    let over = vec!["a"; 76].join(" ");
    let tokenized = clip.tokenizer.encode(&over).unwrap();
    assert_eq!(tokenized.ids.len(), 77);
    assert!(tokenized.truncated);
    assert_eq!(*tokenized.ids.last().unwrap(), END_OF_TEXT);
}

#[test]
fn control_characters_and_invalid_looking_text_tokenise() {
    let clip = load();
    let texts = [
        "\0\u{1}\u{7f}",
        "\u{feff}",
        "<|endoftext|>",
        "\t\n\r  ",
        "🐈‍⬛",
    ];
    let embedded = clip.embed_texts(&texts).unwrap();
    assert_eq!(embedded.len(), texts.len());
    for (text, e) in texts.iter().zip(&embedded) {
        assert!(e.values.iter().all(|x| x.is_finite()), "{text:?}");
    }
}

#[test]
fn an_extreme_aspect_ratio_costs_only_the_crop() {
    // 1 x 200,000 pixels: the shorter edge scaled to the model's size would make a resized
    // picture of billions of pixels; only its centre crop is computed.
    let checked = Checked::new(load());
    let tall = image::RgbImage::from_fn(1, 200_000, |_, y| image::Rgb([(y % 251) as u8, 90, 200]));
    let mut png = Vec::new();
    tall.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let embedding = checked.clip.embed_images(&[&png]).unwrap().remove(0);
    let norm: f32 = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    checked.assert_still_works();
}
