//! clipd's CLIP forward throughput on preprocessed inputs, the clipd side of
//! scripts/bench-model.sh (benches/reference/compare.py drives it next to transformers).
//!
//! cargo bench --bench model -- --model DIR --threads N [--dtypes f32,bf16] [--device cpu]
//!
//! Loads the checkpoint once per dtype, prints one JSON line (with the lowest cosine between each
//! reduced-precision dtype's embeddings and f32's), then answers each stdin line
//! "DTYPE MODALITY BATCH SECONDS" with a JSON line holding items_per_s.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use clipd::model::{ClipConfig, DeviceSpec, Dtype, LoadedModel, ModelOptions};
use tch::{Device, Kind, Tensor};

/// clipd's CLIP forward throughput on preprocessed inputs, for benches/reference/compare.py:
/// answers stdin lines "DTYPE MODALITY BATCH SECONDS" with JSON lines.
#[derive(Parser)]
#[command(name = "model", bin_name = "cargo bench --bench model --")]
#[command(args_override_self = true)]
struct Args {
    /// The checkpoint directory (config.json and model.safetensors).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// libtorch's intra-op threads; 0: its default.
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// The dtypes to load the checkpoint in, comma-separated, each compared with f32.
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    dtypes: Vec<Dtype>,
    /// The device to run on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Same as benches/reference/inputs.py: 16 tokens per text.
fn bench_token_ids(batch: i64) -> Tensor {
    let ids: Vec<i64> = (0..batch)
        .flat_map(|i| {
            std::iter::once(49406)
                .chain((0..14).map(move |j| 320 + (7 * i + j) % 4000))
                .chain(std::iter::once(49407))
        })
        .collect();
    Tensor::from_slice(&ids).view([batch, 16])
}

/// Same as benches/reference/inputs.py: a pattern in CLIP's normalised range.
fn bench_pixels(batch: i64, size: i64) -> Tensor {
    let range = |n: i64, shape: [i64; 4]| Tensor::arange(n, (Kind::Int64, Device::Cpu)).view(shape);
    let (i, c) = (range(batch, [-1, 1, 1, 1]), range(3, [1, -1, 1, 1]));
    let (y, x) = (range(size, [1, 1, -1, 1]), range(size, [1, 1, 1, -1]));
    (i * 31 + c * 17 + y * 7 + x * 3)
        .remainder(97)
        .to_kind(Kind::Float)
        / 48.0
        - 1.0
}

/// Seconds per call: two warm-up calls, then calls until both minimums are reached.
fn measure(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let (start, mut n) = (Instant::now(), 0u32);
    while n < 3 || start.elapsed() < min_time {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(n)
}

/// Rows are unit vectors, so the row-wise dot product is the cosine.
fn min_cosine(a: &Tensor, b: &Tensor) -> f64 {
    (a * b)
        .sum_dim_intlist(-1, false, Kind::Float)
        .min()
        .double_value(&[])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let config = ClipConfig::from_file(&args.model.join("config.json"))?;
    let weights = args.model.join("model.safetensors");
    let mut models = HashMap::new();
    for &dtype in &args.dtypes {
        let options = ModelOptions {
            device: args.device,
            dtype,
        };
        models.insert(
            dtype.to_string(),
            LoadedModel::load(&config, &weights, &options)?,
        );
    }

    let (check_pixels, check_ids) = (
        bench_pixels(8, config.vision.image_size),
        bench_token_ids(8),
    );
    let mut cosines = serde_json::Map::new();
    if let Some(f32_model) = models.get("f32") {
        let reference = (
            f32_model.embed_image(&check_pixels),
            f32_model.embed_text(&check_ids),
        );
        for (name, model) in models.iter().filter(|(name, _)| *name != "f32") {
            cosines.insert(
                name.clone(),
                serde_json::json!({
                    "image": min_cosine(&reference.0, &model.embed_image(&check_pixels)),
                    "text": min_cosine(&reference.1, &model.embed_text(&check_ids)),
                }),
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({"ready": "clipd", "min_cosine_vs_f32": cosines})
    );

    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [dtype, modality, batch, seconds] = fields[..] else {
            bail!("expected \"DTYPE MODALITY BATCH SECONDS\", got {line:?}");
        };
        let model = models
            .get(dtype)
            .with_context(|| format!("dtype {dtype} not loaded"))?;
        let batch: i64 = batch.parse()?;
        let min_time = Duration::from_secs_f64(seconds.parse()?);
        let secs = match modality {
            "image" => {
                let pixels = bench_pixels(batch, config.vision.image_size);
                measure(min_time, || drop(model.embed_image(&pixels)))
            }
            "text" => {
                let ids = bench_token_ids(batch);
                measure(min_time, || drop(model.embed_text(&ids)))
            }
            other => bail!("unknown modality {other}"),
        };
        println!(
            "{}",
            serde_json::json!({"items_per_s": batch as f64 / secs})
        );
    }
    Ok(())
}
