//! Image preprocessing (decode, convert, Pillow-exact resize, crop, normalise) time per image on
//! one thread. Run through scripts/bench-preprocess.sh, which times transformers' PIL path on the
//! same files and prints ratios.
//!
//! cargo bench --bench preprocess -- --model DIR [--min-seconds 3] IMAGE...

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use clipd::preprocess::{ImageLimits, ImageProcessor, ProcessorConfig};

/// Image preprocessing time per image on one thread: one JSON line per image.
#[derive(Parser)]
#[command(name = "preprocess", bin_name = "cargo bench --bench preprocess --")]
#[command(args_override_self = true)]
struct Args {
    /// The checkpoint directory whose preprocessor_config.json is used.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Least time to preprocess each image for, in seconds.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    min_seconds: f64,
    /// The image files to time, one after another.
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let min_time = Duration::from_secs_f64(args.min_seconds);
    let config = ProcessorConfig::from_file(&args.model.join("preprocessor_config.json"))?;
    let processor = ImageProcessor::new(config, ImageLimits::default());
    for path in args.images {
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        processor.process(&bytes)?;
        let (start, mut n) = (Instant::now(), 0u32);
        while n < 3 || start.elapsed() < min_time {
            processor.process(&bytes)?;
            n += 1;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "{}",
            serde_json::json!({"impl": "clipd", "image": name, "ms": ms})
        );
    }
    Ok(())
}
