//! The server under load, next to the model's raw batched throughput, in one run
//! (scripts/bench-serve.sh runs it).
//!
//! cargo bench --bench serve -- [--model DIR] [--concurrency 1,8,32,128] [--seconds 10]
//!     [--batch-size 32] [--max-delay-ms 5] [--threads N] [--device cpu] [--dtype f32]
//!
//! First the raw forward throughput of the loaded checkpoint at --batch-size on prepared inputs;
//! then a real server on 127.0.0.1 and, for each concurrency, that many clients sending
//! single-image (then single-text) Embed requests back to back through the generated client:
//! requests/s, p50 and p99 latency, errors, the mean batch size the server formed, and
//! throughput as a share of the raw figure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use anyhow::{bail, Context};
use clipd::clip::Clip;
use clipd::config::Settings;
use clipd::grpc::pb::{self, clip_client::ClipClient, input::Kind};
use clipd::grpc::RunningServer;
use clipd::hub::HubSettings;
use clipd::model::{DeviceSpec, Dtype};
use clipd::model_source::ModelSource;
use tonic::transport::Channel;

const IMAGE: &str = "tests/fixtures/images/q90_444_320x240.jpg";
const TEXT: &str = "a photo of a red circle on a white background";

struct Args {
    model: Option<PathBuf>,
    concurrency: Vec<usize>,
    seconds: f64,
    batch_size: usize,
    max_delay_ms: u64,
    threads: usize,
    device: DeviceSpec,
    dtype: Dtype,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        model: None,
        concurrency: vec![1, 8, 32, 128],
        seconds: 10.0,
        batch_size: 32,
        max_delay_ms: 5,
        threads: 0,
        device: DeviceSpec::Cpu,
        dtype: Dtype::F32,
    };
    for (flag, value) in common::flags()? {
        match flag.as_str() {
            "--model" => args.model = Some(value.into()),
            "--concurrency" => {
                args.concurrency = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--seconds" => args.seconds = value.parse()?,
            "--batch-size" => args.batch_size = value.parse()?,
            "--max-delay-ms" => args.max_delay_ms = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            "--device" => args.device = value.parse()?,
            "--dtype" => args.dtype = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Modality {
    Image,
    Text,
}

/// Inputs per second of the model alone at `batch` on prepared inputs, best of three rounds.
fn raw_throughput(
    clip: &Clip,
    image: &[u8],
    batch: usize,
    seconds: f64,
) -> anyhow::Result<[f64; 2]> {
    let pixels = clip.images.process(image)?;
    let pixels: Vec<&[f32]> = vec![pixels.as_slice(); batch];
    let tokens = clip.tokenizer.encode(TEXT)?;
    let tokens = vec![&tokens; batch];
    let rate = |f: &dyn Fn()| {
        f();
        let mut best = 0f64;
        for _ in 0..3 {
            let (start, mut n) = (Instant::now(), 0);
            while n < 2 || start.elapsed().as_secs_f64() < seconds / 3.0 {
                f();
                n += 1;
            }
            best = best.max((n * batch) as f64 / start.elapsed().as_secs_f64());
        }
        best
    };
    Ok([
        rate(&|| drop(clip.embed_pixels(&pixels))),
        rate(&|| drop(clip.embed_tokenized(&tokens))),
    ])
}

struct LoadResult {
    requests_per_s: f64,
    p50: Duration,
    p99: Duration,
    errors: Vec<String>,
}

/// `concurrency` clients, each sending one-input requests back to back for `seconds`.
async fn load(
    client: &ClipClient<Channel>,
    input: pb::Input,
    concurrency: usize,
    seconds: f64,
) -> LoadResult {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = client.clone();
            let request = pb::EmbedRequest {
                inputs: vec![input.clone()],
            };
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while Instant::now() < end {
                    let sent = Instant::now();
                    match client.embed(request.clone()).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(status) => {
                            errors.push(format!("{:?}: {}", status.code(), status.message()))
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadResult {
        requests_per_s: latencies.len() as f64 / elapsed,
        p50: quantile(0.50),
        p99: quantile(0.99),
        errors,
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let image = std::fs::read(IMAGE).with_context(|| format!("read {IMAGE}"))?;
    let source = ModelSource::parse(args.model.as_deref());
    let hub = HubSettings::from_env();
    let dir = source.locate(&hub)?;
    if args.threads > 0 {
        tch::set_num_threads(args.threads as i32);
    }

    let mut settings = Settings::default();
    settings.server.grpc_addr = ([127, 0, 0, 1], 0).into();
    settings.model.source = Some(dir.clone());
    settings.model.device = args.device.to_string();
    settings.model.dtype = args.dtype.to_string();
    settings.model.threads = args.threads;
    settings.batching.max_batch_size = args.batch_size;
    settings.batching.max_delay_ms = args.max_delay_ms;
    settings.batching.max_queued_inputs =
        4 * args.concurrency.iter().max().copied().unwrap_or(1).max(256);
    let options = settings.model_options()?;

    let raw = {
        let clip = Clip::load(&dir, &options, &settings.limits.inputs())?;
        raw_throughput(&clip, &image, args.batch_size, args.seconds)?
    };
    println!(
        "model {} ({}, {}), batch {}: raw forward {:.1} images/s, {:.1} texts/s",
        source.name(&dir),
        args.device,
        args.dtype,
        args.batch_size,
        raw[0],
        raw[1]
    );

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut server = RunningServer::start(settings, hub).await?;
        server.ready().await?;
        let channel = Channel::from_shared(format!("http://{}", server.addr()))?
            .connect()
            .await?;
        let client = ClipClient::new(channel);
        println!(
            "{:<6} {:>5} {:>10} {:>10} {:>10} {:>7} {:>10} {:>7}",
            "input", "conc", "req/s", "p50 ms", "p99 ms", "errors", "mean batch", "of raw"
        );
        for modality in [Modality::Image, Modality::Text] {
            let (input, raw) = match modality {
                Modality::Image => (Kind::Image(image.clone().into()), raw[0]),
                Modality::Text => (Kind::Text(TEXT.into()), raw[1]),
            };
            let input = pb::Input { kind: Some(input) };
            for &concurrency in &args.concurrency {
                // Warm-up: connections, the pool, libtorch's caches at this batch size.
                load(&client, input.clone(), concurrency, 1.0).await;
                let engine = server.engine().expect("ready");
                let before = engine.stats();
                let result = load(&client, input.clone(), concurrency, args.seconds).await;
                let after = engine.stats();
                let (batches, inputs) = match modality {
                    Modality::Image => (
                        after.image_batches - before.image_batches,
                        after.image_inputs - before.image_inputs,
                    ),
                    Modality::Text => (
                        after.text_batches - before.text_batches,
                        after.text_inputs - before.text_inputs,
                    ),
                };
                println!(
                    "{:<6} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>7} {:>10.1} {:>6.0}%",
                    format!("{modality:?}").to_lowercase(),
                    concurrency,
                    result.requests_per_s,
                    result.p50.as_secs_f64() * 1e3,
                    result.p99.as_secs_f64() * 1e3,
                    result.errors.len(),
                    inputs as f64 / batches.max(1) as f64,
                    100.0 * result.requests_per_s / raw
                );
                if let Some(error) = result.errors.first() {
                    println!("    first error: {error}");
                }
            }
        }
        server.shutdown().await?;
        anyhow::Ok(())
    })
}
