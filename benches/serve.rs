//! The server under load, next to the model's raw batched throughput, in one run
//! (scripts/bench-serve.sh runs it).
//!
//! cargo bench --bench serve -- [--model DIR] [--concurrency 1,8,32,128] [--seconds 10]
//!     [--batch-size 32] [--max-delay-ms 5] [--threads N] [--device cpu] [--dtype f32]
//!     [--labels 10,1000,20000] [--classify-concurrency 8]
//!
//! First the raw forward throughput of the loaded checkpoint at --batch-size on prepared inputs;
//! then a real server on 127.0.0.1 and, for each concurrency, that many clients sending
//! single-image (then single-text) Embed requests back to back through the generated client:
//! requests/s, p50 and p99 latency, errors, the mean batch size the server formed, and
//! throughput as a share of the raw figure. Then single-image Classify against configured
//! classifiers of each --labels count (label vectors embedded at start-up: a warm cache), next to
//! Embed of the same image, alternating.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod quantile;
use quantile::quantile;

use anyhow::Context;
use clap::Parser;
use clipd::classify::ClassifierSettings;
use clipd::config::Settings;
use clipd::demo::shapes::label_vocabulary;
use clipd::grpc::pb::{self, clip_client::ClipClient, input::Kind};
use clipd::model::Checkpoint;
use clipd::model::ModelSource;
use clipd::model::{DeviceSpec, Dtype};
use clipd::server::RunningServer;
use tonic::transport::Channel;

const IMAGE: &str = "tests/fixtures/images/q90_444_320x240.jpg";
const TEXT: &str = "a photo of a red circle on a white background";

/// The server under load, next to the model's raw batched throughput.
#[derive(Parser)]
#[command(name = "serve", bin_name = "cargo bench --bench serve --")]
#[command(args_override_self = true)]
struct Args {
    /// The checkpoint: a directory or a hub id; none: the bundled demo model.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Concurrent clients to measure Embed with, comma-separated: one row each per input kind.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    concurrency: Vec<usize>,
    /// Seconds of load at each concurrency (and of the raw forward measurement).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The server's largest batch, and the batch of the raw forward measurement.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// How long the server waits to fill a batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    max_delay_ms: u64,
    /// libtorch's intra-op threads; 0: its default.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The device to run on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// The dtype to run in: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    /// Label counts of the classifiers to compare with Embed, comma-separated; empty: skip.
    #[arg(long, value_parser = label_counts, default_value = "10,1000,20000")]
    labels: ::std::vec::Vec<usize>,
    /// Concurrent clients for the Classify next to Embed comparison.
    #[arg(long, default_value_t = 8)]
    classify_concurrency: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// `--labels`: a comma-separated list of counts, where an empty list (`--labels ''`) is none.
/// One value to clap (hence the full path of `Vec` above, which clap would take as many).
fn label_counts(value: &str) -> Result<Vec<usize>, std::num::ParseIntError> {
    value
        .split(',')
        .filter(|v| !v.is_empty())
        .map(str::parse)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Modality {
    Image,
    Text,
}

/// Inputs per second of the model alone at `batch` on prepared inputs, best of three rounds.
fn raw_throughput(
    clip: &Checkpoint,
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

/// A request the load generator sends.
#[derive(Clone)]
enum Call {
    Embed(pb::EmbedRequest),
    Classify(pb::ClassifyRequest),
}

impl Call {
    async fn send(&self, client: &mut ClipClient<Channel>) -> Result<(), tonic::Status> {
        match self {
            Self::Embed(request) => client.embed(request.clone()).await.map(drop),
            Self::Classify(request) => client.classify(request.clone()).await.map(drop),
        }
    }
}

/// `concurrency` clients, each sending `call` back to back for `seconds`.
async fn load(
    client: &ClipClient<Channel>,
    call: Call,
    concurrency: usize,
    seconds: f64,
) -> LoadResult {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = client.clone();
            let call = call.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while Instant::now() < end {
                    let sent = Instant::now();
                    match call.send(&mut client).await {
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
    LoadResult {
        requests_per_s: latencies.len() as f64 / elapsed,
        p50: quantile(&latencies, 0.50).unwrap_or_default(),
        p99: quantile(&latencies, 0.99).unwrap_or_default(),
        errors,
    }
}

/// Single-image Classify against each configured classifier (`labels-N`, top 5, label vectors
/// embedded at start-up) next to Embed of the same image, alternating, at one concurrency.
async fn classify_next_to_embed(client: &ClipClient<Channel>, image: &[u8], args: &Args) {
    let input = pb::Input {
        kind: Some(Kind::Image(image.to_vec().into())),
    };
    let embed = Call::Embed(pb::EmbedRequest {
        inputs: vec![input.clone()],
    });
    println!(
        "\nClassify next to Embed, single image, concurrency {}, top 5:",
        args.classify_concurrency
    );
    println!(
        "{:>7} {:>12} {:>12} {:>10} {:>10} {:>9} {:>7}",
        "labels", "embed req/s", "class. req/s", "embed p50", "class. p50", "overhead", "errors"
    );
    for &count in &args.labels {
        let classify = Call::Classify(pb::ClassifyRequest {
            inputs: vec![input.clone()],
            labels: Some(pb::classify_request::Labels::Classifier(format!(
                "labels-{count}"
            ))),
            top_k: 5,
        });
        load(client, classify.clone(), args.classify_concurrency, 1.0).await;
        // Two rounds each, alternating, so that both see the machine in the same state.
        let (mut e, mut c) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            e.push(
                load(
                    client,
                    embed.clone(),
                    args.classify_concurrency,
                    args.seconds / 2.0,
                )
                .await,
            );
            c.push(
                load(
                    client,
                    classify.clone(),
                    args.classify_concurrency,
                    args.seconds / 2.0,
                )
                .await,
            );
        }
        let rate =
            |r: &[LoadResult]| r.iter().map(|r| r.requests_per_s).sum::<f64>() / r.len() as f64;
        let p50 = |r: &[LoadResult]| r.iter().map(|r| r.p50).sum::<Duration>() / r.len() as u32;
        let errors: usize = e.iter().chain(&c).map(|r| r.errors.len()).sum();
        println!(
            "{:>7} {:>12.1} {:>12.1} {:>8.1}ms {:>8.1}ms {:>8.1}% {:>7}",
            count,
            rate(&e),
            rate(&c),
            p50(&e).as_secs_f64() * 1e3,
            p50(&c).as_secs_f64() * 1e3,
            100.0 * (rate(&e) / rate(&c) - 1.0),
            errors
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let image = std::fs::read(IMAGE).with_context(|| format!("read {IMAGE}"))?;
    let source = ModelSource::parse(args.model.as_deref());
    let locations = clipd::config::locations_from_env();
    let dir = source.locate(&locations)?;
    if args.threads > 0 {
        tch::set_num_threads(args.threads as i32);
    }

    let mut settings = Settings::default();
    settings.server.grpc_addr = ([127, 0, 0, 1], 0).into();
    settings.metrics.addr = ([127, 0, 0, 1], 0).into();
    // Removed when main returns, after the server has stopped.
    let data_dir = tempfile::Builder::new().prefix("clipd-bench-").tempdir()?;
    settings.index.data_dir = data_dir.path().to_owned();
    settings.model.source = Some(dir.clone());
    settings.model.device = args.device;
    settings.model.dtype = args.dtype;
    settings.model.threads = args.threads;
    settings.batching.max_batch_size = args.batch_size;
    settings.batching.max_delay_ms = args.max_delay_ms;
    settings.batching.max_queued_inputs =
        4 * args.concurrency.iter().max().copied().unwrap_or(1).max(256);
    for &count in &args.labels {
        settings.classifiers.insert(
            format!("labels-{count}"),
            ClassifierSettings {
                labels: label_vocabulary(count),
                ..ClassifierSettings::default()
            },
        );
    }
    let options = settings.model.options();

    let raw = {
        let clip = Checkpoint::load(&dir, &options, &settings.limits.inputs())?;
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
        let started = Instant::now();
        let mut server = RunningServer::start(settings, locations).await?;
        server.ready().await?;
        println!(
            "server ready in {:.1} s (labels of {:?} embedded)",
            started.elapsed().as_secs_f64(),
            args.labels
        );
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
            let call = Call::Embed(pb::EmbedRequest {
                inputs: vec![pb::Input { kind: Some(input) }],
            });
            for &concurrency in &args.concurrency {
                // Warm-up: connections, the pool, libtorch's caches at this batch size.
                load(&client, call.clone(), concurrency, 1.0).await;
                let engine = server.engine().expect("ready");
                let before = engine.stats();
                let result = load(&client, call.clone(), concurrency, args.seconds).await;
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
        if !args.labels.is_empty() {
            classify_next_to_embed(&client, &image, &args).await;
        }
        server.shutdown().await?;
        anyhow::Ok(())
    })
}
