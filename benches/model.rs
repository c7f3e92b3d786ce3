//! clipd's CLIP forward throughput (images/s, texts/s) at several batch sizes and dtypes, on
//! preprocessed inputs. Run through scripts/bench-model.sh, which runs transformers on the same
//! checkpoint, inputs and thread count (benches/reference/model_throughput.py) and prints ratios.
//!
//! cargo bench --bench model -- --model DIR --threads N [--batches 1,8,32] [--dtypes f32,bf16]
//!     [--device cpu] [--min-seconds 3] [--min-iters 3]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clipd::model::{ClipConfig, DeviceSpec, Dtype, LoadedModel, ModelOptions};
use tch::{Kind, Tensor};

struct Args {
    model: PathBuf,
    threads: i32,
    batches: Vec<i64>,
    dtypes: Vec<Dtype>,
    device: DeviceSpec,
    min_time: Duration,
    min_iters: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        model: PathBuf::new(),
        threads: 0,
        batches: vec![1, 8, 32],
        dtypes: vec![Dtype::F32, Dtype::Bf16],
        device: DeviceSpec::Cpu,
        min_time: Duration::from_secs(3),
        min_iters: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => args.model = value.into(),
            "--threads" => args.threads = value.parse()?,
            "--batches" => {
                args.batches = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--dtypes" => {
                args.dtypes = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--device" => args.device = value.parse()?,
            "--min-seconds" => args.min_time = Duration::from_secs_f64(value.parse()?),
            "--min-iters" => args.min_iters = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.model.as_os_str().is_empty() {
        bail!("--model DIR is required");
    }
    Ok(args)
}

/// Same as benches/reference/inputs.py.
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

fn bench_pixels(batch: i64, size: i64) -> Tensor {
    let i = Tensor::arange(batch, (Kind::Int64, tch::Device::Cpu)).view([-1, 1, 1, 1]);
    let c = Tensor::arange(3, (Kind::Int64, tch::Device::Cpu)).view([1, -1, 1, 1]);
    let y = Tensor::arange(size, (Kind::Int64, tch::Device::Cpu)).view([1, 1, -1, 1]);
    let x = Tensor::arange(size, (Kind::Int64, tch::Device::Cpu)).view([1, 1, 1, -1]);
    (i * 31 + c * 17 + y * 7 + x * 3)
        .remainder(97)
        .to_kind(Kind::Float)
        / 48.0
        - 1.0
}

/// Seconds per call: two warm-up calls, then calls until both minimums are reached.
fn measure(args: &Args, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let (start, mut n) = (Instant::now(), 0u32);
    while n < args.min_iters || start.elapsed() < args.min_time {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(n)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let config = ClipConfig::from_file(&args.model.join("config.json"))?;
    let weights = args.model.join("model.safetensors");
    let check_pixels = bench_pixels(8, config.vision.image_size);
    let check_ids = bench_token_ids(8);
    let mut f32_embeddings: Option<(Tensor, Tensor)> = None;
    for &dtype in &args.dtypes {
        let options = ModelOptions {
            device: args.device,
            dtype,
        };
        let model = LoadedModel::load(&config, &weights, &options)?;
        let embeddings = (
            model.embed_image(&check_pixels),
            model.embed_text(&check_ids),
        );
        match (&f32_embeddings, dtype) {
            (None, Dtype::F32) => f32_embeddings = Some(embeddings),
            (Some((image, text)), _) => {
                // Rows are unit vectors: the row-wise dot product is the cosine.
                let min_cosine = |a: &Tensor, b: &Tensor| {
                    (a * b)
                        .sum_dim_intlist(-1, false, Kind::Float)
                        .min()
                        .double_value(&[])
                };
                println!(
                    "{}",
                    serde_json::json!({"impl": "clipd", "dtype": dtype.to_string(),
                        "min_cosine_vs_f32": {"image": min_cosine(image, &embeddings.0),
                                              "text": min_cosine(text, &embeddings.1)}})
                );
            }
            (None, _) => {}
        }
        for &batch in &args.batches {
            let pixels = bench_pixels(batch, config.vision.image_size);
            let ids = bench_token_ids(batch);
            for modality in ["image", "text"] {
                let secs = measure(&args, || {
                    let _ = match modality {
                        "image" => model.embed_image(&pixels),
                        _ => model.embed_text(&ids),
                    };
                });
                println!(
                    "{}",
                    serde_json::json!({"impl": "clipd", "dtype": dtype.to_string(),
                        "modality": modality, "batch": batch, "items_per_s": batch as f64 / secs})
                );
            }
        }
    }
    Ok(())
}
