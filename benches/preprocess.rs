//! Image preprocessing (decode, convert, Pillow-exact resize, crop, normalise) time per image on
//! one thread. Run through scripts/bench-preprocess.sh, which times transformers' PIL path on the
//! same files and prints ratios.
//!
//! cargo bench --bench preprocess -- --model DIR [--min-seconds 3] IMAGE...

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clipd::preprocess::{ImageLimits, ImageProcessor, ProcessorConfig};

fn main() -> anyhow::Result<()> {
    let mut model = None;
    let mut min_time = Duration::from_secs(3);
    let mut images = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--model" => model = Some(PathBuf::from(args.next().context("--model DIR")?)),
            "--min-seconds" => {
                min_time = Duration::from_secs_f64(args.next().context("--min-seconds S")?.parse()?)
            }
            _ => images.push(PathBuf::from(arg)),
        }
    }
    let model = model.context("--model DIR is required")?;
    let config = ProcessorConfig::from_file(&model.join("preprocessor_config.json"))?;
    let processor = ImageProcessor::new(config, ImageLimits::default());
    for path in images {
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
