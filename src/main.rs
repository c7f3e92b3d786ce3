use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use clipd::config::{locations_from_env, Overrides, Settings};
use clipd::demo::train::TrainSettings;
use clipd::index::{Backend, ModelIdentity};
use clipd::model::{Checkpoint, DeviceSpec, Dtype, ModelOptions, ModelSource, ModelSpec};
use clipd::preprocess::InputLimits;
use clipd::server::RunningServer;

/// clipd: OpenAI's CLIP on libtorch. Embeds images and texts into one vector space.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the model over gRPC: clipd.v1.Clip, grpc.health.v1.Health and reflection. Settings
    /// come from built-in defaults, then --config FILE, then CLIPD__SECTION__KEY environment
    /// variables (e.g. CLIPD__BATCHING__MAX_DELAY_MS=5), then these flags.
    Serve(ServeArgs),
    /// Embed texts and images and print one JSON object to stdout:
    /// {"model": NAME, "dim": N, "text": [[...], ...], "image": [[...], ...]}, each list in the
    /// order given, every vector L2-normalised.
    Embed(EmbedArgs),
    /// Add a folder of images to a collection of a running server (creating the collection if
    /// needed). Each image's id is its path relative to DIR; ids already in the collection are
    /// skipped, so an interrupted ingest resumes by running it again. Files that cannot be read
    /// or decoded are listed at the end (exit status 1) without stopping the rest.
    Ingest(IngestArgs),
    /// Search a collection of a running server by text, image or item id, and print the hits.
    Search(SearchArgs),
    /// Copy a collection from one collection store to the other (embedded <-> milvus), with
    /// the stores of a server's settings file: vectors, metadata and texts as stored, nothing
    /// embedded again. Resumable: an interrupted copy goes on after the last page it copied when
    /// run again. Stop the server that serves the embedded store first (one process owns its
    /// files); Milvus can be served meanwhile.
    Copy(CopyArgs),
    /// Print the effective configuration (defaults, --config FILE, CLIPD__* variables and these
    /// flags, as `serve` would use them) as TOML, with API keys redacted; exits 1 naming the
    /// first invalid key.
    Config(ServeArgs),
    /// Train the demo CLIP on synthetic shapes (colours x shapes, with captions) and write it as a
    /// Hugging Face checkpoint directory; prints the held-out evaluation as JSON to stdout.
    TrainDemo(TrainDemoArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// A settings file, TOML or YAML (by its extension); see config/clipd.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A CLIP checkpoint directory in Hugging Face layout or a hub id (model.source). Default: the
    /// bundled demo model.
    #[arg(long, value_name = "DIR_OR_HUB_ID")]
    model: Option<PathBuf>,
    /// Where gRPC is served (server.grpc_addr). Default: 0.0.0.0:50051.
    #[arg(long, value_name = "HOST:PORT")]
    grpc_addr: Option<SocketAddr>,
    /// Where GET /metrics (Prometheus), /livez and /readyz are served (metrics.addr). Default:
    /// 0.0.0.0:9090.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// auto, cpu, cuda or cuda:N (model.device). Default: auto.
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// f32, f16 or bf16 (model.dtype). Default: f32.
    #[arg(long)]
    dtype: Option<Dtype>,
}

#[derive(Args)]
struct ServerArgs {
    /// The server's gRPC address: http://HOST:PORT, or https://HOST:PORT for a server with TLS.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The API key to send (authorization: Bearer KEY), when the server requires one.
    #[arg(long, env = "CLIPD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The CA certificate (PEM) that signed an https:// server's certificate. Default: the
    /// system's trusted roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl ServerArgs {
    async fn connect(&self) -> anyhow::Result<tonic::transport::Channel> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut endpoint = tonic::transport::Channel::from_shared(self.server.clone())
            .with_context(|| format!("--server {}", self.server))?;
        let pem = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        if self.server.starts_with("https://") {
            let mut tls = match &self.ca_cert {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(ca)?)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(Identity::from_pem(pem(cert)?, pem(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        } else if self.ca_cert.is_some() || self.client_cert.is_some() {
            anyhow::bail!("--ca-cert and --client-cert need an https:// --server");
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))
    }
}

/// KEY=VALUE.
fn pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[derive(Args)]
struct IngestArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The collection to add to.
    #[arg(long)]
    collection: String,
    /// The folder to walk (recursively). Files with an image extension are sent: jpg, jpeg, png,
    /// webp, gif, bmp, tif, tiff.
    dir: PathBuf,
    /// Images per Upsert request.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Encoded megabytes per Upsert request at most (keep under the server's
    /// server.max_message_bytes).
    #[arg(long, default_value_t = 32)]
    max_request_mb: u64,
    /// Upsert requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Metadata for every item, KEY=VALUE; repeat for more. Each item also gets `folder`, its
    /// folder relative to DIR ("" at the top).
    #[arg(long, value_name = "KEY=VALUE", value_parser = pair)]
    metadata: Vec<(String, String)>,
}

#[derive(Args)]
struct SearchArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    collection: String,
    /// Search by a text.
    #[arg(long, group = "query")]
    text: Option<String>,
    /// Search by an image file.
    #[arg(long, value_name = "PATH", group = "query")]
    image: Option<PathBuf>,
    /// Search by an item of the collection (it is left out of the hits).
    #[arg(long, group = "query")]
    id: Option<String>,
    /// Hits to print.
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Only hits scoring at least this (cosine similarity, -1 to 1).
    #[arg(long, value_name = "SCORE", allow_negative_numbers = true)]
    min_score: Option<f32>,
    /// Only items with this metadata, KEY=VALUE; repeat for more (all must match).
    #[arg(long, value_name = "KEY=VALUE", value_parser = pair)]
    filter: Vec<(String, String)>,
    /// Print the hits as one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CopyArgs {
    /// The server's settings file (TOML or YAML): its model, index.data_dir and index.milvus.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The model the collection was made with (model.source), if not the settings file's. It
    /// is loaded to check that both stores' collection are its own, as a server would.
    #[arg(long, value_name = "DIR_OR_HUB_ID")]
    model: Option<PathBuf>,
    /// Where the collection is: embedded or milvus.
    #[arg(long, value_name = "STORE", value_parser = backend)]
    from: Backend,
    /// Where it goes: embedded or milvus.
    #[arg(long, value_name = "STORE", value_parser = backend)]
    to: Backend,
    #[arg(long)]
    collection: String,
    /// The name in the target store (default: the same). Made with the source's HNSW settings
    /// if it does not exist; items already there with other ids stay.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Items per page: each page is one read and one write.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=16384))]
    page_size: u32,
    /// Where the copy keeps its progress between runs. Default: clipd-copy-COLLECTION.cursor in
    /// the working directory.
    #[arg(long, value_name = "FILE")]
    cursor: Option<PathBuf>,
}

fn backend(text: &str) -> Result<Backend, String> {
    match text {
        "embedded" => Ok(Backend::Embedded),
        "milvus" => Ok(Backend::Milvus),
        other => Err(format!("{other:?}: embedded or milvus")),
    }
}

#[derive(Args)]
struct TrainDemoArgs {
    /// Where to write the checkpoint.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The CLIP tokenizer.json to train with and ship.
    #[arg(long, value_name = "PATH")]
    tokenizer: PathBuf,
    #[arg(long, default_value_t = TrainSettings::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = TrainSettings::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up, cosine decay).
    #[arg(long, default_value_t = TrainSettings::default().learning_rate)]
    learning_rate: f64,
    /// Seeds the initial weights and the training pictures.
    #[arg(long, default_value_t = TrainSettings::default().seed)]
    seed: u64,
    /// CPU threads for libtorch (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

#[derive(Args)]
struct ModelArgs {
    /// A CLIP checkpoint directory in Hugging Face layout (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json), or a Hugging Face hub id such as
    /// openai/clip-vit-base-patch32[@revision], downloaded into the hub cache on first use
    /// (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_TOKEN are honoured). Default: the bundled demo
    /// model, a small CLIP trained on synthetic coloured shapes.
    #[arg(long, value_name = "DIR_OR_HUB_ID")]
    model: Option<PathBuf>,
    /// Where the model runs: auto (a GPU when there is one), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// Precision of weights and computation: f32, f16 or bf16 (bf16 is fast on CPUs with AMX or
    /// AVX-512 BF16).
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    /// CPU threads for libtorch (0: libtorch's default, one per core).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A text to embed; repeat for more.
    #[arg(long, value_name = "TEXT")]
    text: Vec<String>,
    /// An image file to embed (JPEG, PNG, WebP, GIF, BMP or TIFF); repeat for more.
    #[arg(long, value_name = "PATH")]
    image: Vec<PathBuf>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

fn load(args: &ModelArgs) -> anyhow::Result<Checkpoint> {
    let spec = ModelSpec {
        source: ModelSource::parse(args.model.as_deref()),
        locations: locations_from_env(),
        options: ModelOptions {
            device: args.device,
            dtype: args.dtype,
        },
        limits: InputLimits::default(),
        threads: args.threads.max(0) as usize,
    };
    let clip = spec.load()?;
    tracing::info!(
        model = %clip.name,
        device = ?clip.towers.device(),
        dtype = %clip.towers.dtype(),
        "model loaded"
    );
    Ok(clip)
}

/// Reads at most one byte past `limit`, so that the image check reports an oversized file without
/// the whole of it (or of a device such as /dev/zero) being read.
fn read_limited(path: &std::path::Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A text as quoted in an error: the first 60 characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn embed(args: &EmbedArgs) -> anyhow::Result<()> {
    let limit = InputLimits::default().image.max_bytes;
    let images = args
        .image
        .iter()
        .map(|p| read_limited(p, limit).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clip = load(&args.model)?;
    let batch = args.batch_size.max(1);
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let mut text = Vec::with_capacity(texts.len());
    for (c, chunk) in texts.chunks(batch).enumerate() {
        let embedded = clip.embed_texts(chunk).map_err(|(i, e)| {
            let i = c * batch + i;
            anyhow::anyhow!("--text #{} ({}): {e}", i + 1, quote(texts[i]))
        })?;
        text.extend(embedded);
    }
    for (i, _) in text.iter().enumerate().filter(|(_, t)| t.truncated) {
        tracing::warn!(
            "--text #{} was cut to the model's {} tokens",
            i + 1,
            clip.tokenizer.context_length()
        );
    }
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let mut image = Vec::with_capacity(refs.len());
    for (c, chunk) in refs.chunks(batch).enumerate() {
        let embedded = clip.embed_images(chunk).map_err(|(i, e)| {
            anyhow::anyhow!("--image {}: {e}", args.image[c * batch + i].display())
        })?;
        image.extend(embedded);
    }
    let output = serde_json::json!({
        "model": clip.name,
        "dim": clip.dim(),
        "text": text.into_iter().map(|t| t.values).collect::<Vec<_>>(),
        "image": image,
    });
    println!("{output}");
    Ok(())
}

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        model: args.model.clone(),
        grpc_addr: args.grpc_addr,
        metrics_addr: args.metrics_addr,
        device: args.device,
        dtype: args.dtype,
    };
    Ok(Settings::load(args.config.as_deref(), &overrides)?)
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let settings = settings(args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut stop = StopSignals::install()?;
        let mut server = RunningServer::start(settings, locations_from_env()).await?;
        tokio::select! {
            ready = server.ready() => { ready?; }
            () = stop.recv() => return Ok(()),
        }
        tracing::info!(addr = %server.addr(), "serving");
        stop.recv().await;
        tracing::info!("stopping: finishing the requests in flight");
        server.shutdown().await?;
        Ok(())
    })
}

/// SIGINT and SIGTERM (what Kubernetes sends), listened for from start-up to exit: one that
/// arrives while nothing waits for it is kept for the next `recv`, never lost.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    use clipd::ingest::{ingest, IngestOptions};
    let options = IngestOptions {
        collection: args.collection.clone(),
        dir: args.dir.clone(),
        batch_size: args.batch_size,
        max_request_bytes: args.max_request_mb << 20,
        concurrency: args.concurrency,
        metadata: args.metadata.clone(),
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .expect("a valid template"),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = tokio::runtime::Runtime::new()?.block_on(async {
        let channel = args.server.connect().await?;
        let key = clipd::ingest::ApiKey::new(args.server.api_key.as_deref())?;
        anyhow::Ok(ingest(channel, key, &options, &progress).await?)
    })?;
    bar.finish_and_clear();
    if report.created_collection {
        println!("created collection {:?}", args.collection);
    }
    println!(
        "{} images found: {} added, {} already present, {} failed ({} other files left alone)",
        report.found,
        report.inserted,
        report.already_present,
        report.failed.len(),
        report.not_images
    );
    for (path, reason) in &report.failed {
        println!("failed: {path}: {reason}");
    }
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} files could not be ingested",
        report.failed.len()
    );
    Ok(())
}

fn search(args: &SearchArgs) -> anyhow::Result<()> {
    use clipd::grpc::pb;
    use pb::search_request::Query;
    let query = match (&args.text, &args.image, &args.id) {
        (Some(text), _, _) => Query::Text(text.clone()),
        (_, Some(path), _) => Query::Image(
            read_limited(path, InputLimits::default().image.max_bytes)
                .with_context(|| format!("cannot read {}", path.display()))?
                .into(),
        ),
        (_, _, Some(id)) => Query::Id(id.clone()),
        _ => anyhow::bail!("give --text, --image or --id"),
    };
    let request = pb::SearchRequest {
        collection: args.collection.clone(),
        query: Some(query),
        top_k: args.top_k,
        filter: args.filter.iter().cloned().collect(),
        ef_search: 0,
        min_score: args.min_score,
    };
    let response = tokio::runtime::Runtime::new()?.block_on(async {
        let key = clipd::ingest::ApiKey::new(args.server.api_key.as_deref())?;
        let mut client =
            pb::clip_client::ClipClient::with_interceptor(args.server.connect().await?, key);
        let response = client
            .search(request)
            .await
            .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
        anyhow::Ok(response.into_inner())
    })?;
    let metadata = |m: &std::collections::HashMap<String, String>| {
        serde_json::to_value(m.iter().collect::<std::collections::BTreeMap<_, _>>())
            .expect("strings serialise")
    };
    if args.json {
        let hits: Vec<serde_json::Value> = response
            .hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "id": h.id,
                    "score": h.score,
                    "metadata": metadata(&h.metadata),
                    "text": h.text,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(hits));
    } else {
        for (rank, hit) in response.hits.iter().enumerate() {
            println!(
                "{:>3}  {:.4}  {}  {}  {}",
                rank + 1,
                hit.score,
                hit.id,
                metadata(&hit.metadata),
                hit.text
            );
        }
    }
    Ok(())
}

fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        model: args.model.clone(),
        ..Default::default()
    };
    let settings = Settings::load(args.config.as_deref(), &overrides)?;
    let spec = ModelSpec {
        source: settings.model.source(),
        locations: locations_from_env(),
        options: settings.model.options(),
        limits: settings.limits.inputs(),
        threads: settings.model.threads,
    };
    let clip = spec.load()?;
    let model = ModelIdentity {
        name: clip.name.clone(),
        dim: clip.dim(),
        probe: clip.probe()?,
    };
    drop(clip);
    let options = clipd::copy::CopyOptions {
        from: args.from,
        to: args.to,
        collection: args.collection.clone(),
        target: args.target.clone(),
        page_size: args.page_size as usize,
        cursor: args
            .cursor
            .clone()
            .unwrap_or_else(|| format!("clipd-copy-{}.cursor", args.collection).into()),
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}")
            .expect("a valid template"),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let copied = tokio::runtime::Runtime::new()?
        .block_on(clipd::copy::copy(&settings, model, &options, progress))?;
    bar.finish_and_clear();
    if let Some(after) = &copied.resumed_after {
        println!("resumed after id {after:?}");
    }
    let target = options.target.as_deref().unwrap_or(&options.collection);
    println!(
        "copied {} items of {:?} ({:?}) to {:?} ({:?}{}): {} in the source, {} in the target",
        copied.copied,
        options.collection,
        options.from,
        target,
        options.to,
        if copied.created { ", created" } else { "" },
        copied.source_count,
        copied.target_count
    );
    anyhow::ensure!(
        copied.source_count == copied.target_count,
        "the counts differ: the target held other items, or the source was written to meanwhile"
    );
    Ok(())
}

fn train_demo(args: &TrainDemoArgs) -> anyhow::Result<()> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let settings = TrainSettings {
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        seed: args.seed,
        ..TrainSettings::default()
    };
    let start = std::time::Instant::now();
    let report = clipd::demo::train_demo(&args.out, &args.tokenizer, settings, |step, loss| {
        if (step + 1) % 50 == 0 || step == 0 {
            tracing::info!(
                step = step + 1,
                loss = format!("{loss:.4}"),
                elapsed_s = start.elapsed().as_secs(),
                "training"
            );
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Embed(args) => embed(args),
        Command::Ingest(args) => ingest(args),
        Command::Search(args) => search(args),
        Command::Copy(args) => copy(args),
        Command::Config(args) => settings(args).map(|s| print!("{}", s.redacted_toml())),
        Command::TrainDemo(args) => train_demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
