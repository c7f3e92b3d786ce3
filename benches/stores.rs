//! The collection stores side by side through clipd's gRPC API: the same clustered vectors
//! upserted into, and searched in, the embedded store and Milvus in one run
//! (scripts/bench-stores.sh runs it beside a private Milvus).
//!
//! cargo bench --bench stores -- [--count 100000] [--queries 200] [--dim 512] [--k 10]
//!     [--ef-search 16,32,64,128,256] [--concurrency 1,8] [--batch 1000] [--seconds 3]
//!     [--shards 16] [--shard 3] [--settle-seconds 300] [--settle-passes 3] [--milvus-flush]
//!     [--threads 2] [--seed 1]
//!
//! Makes --count clustered unit vectors (benches/index.rs's generator) with the metadata
//! `shard` = number % --shards, and --queries queries, from --seed, and finds each query's exact
//! --k nearest by brute force, over all items and over the items of shard --shard. Writes a
//! random-weight checkpoint of the demo model's shape with --dim-dimensional embeddings into
//! target/bench/stores/: the servers load it, so that their collections have that dimension (no
//! bundled or fixture model has 512), and the items and queries are sent as vectors.
//!
//! For each store (embedded; Milvus when MILVUS_URL is set, else skipped) it starts a real clipd
//! server in this process on 127.0.0.1 and, through the generated clients: creates a collection
//! (the defaults: m 24, ef_construction 200, ef_search 128); upserts the items, --batch per
//! Upsert, from one client (items/s); searches the queries at the collection's ef_search, once a
//! second, until --settle-passes passes in a row agree on the recall and Milvus serves every row
//! it has indexed through that index (Milvus seals, indexes and loads segments in the
//! background: the wait is reported, with where Milvus serves the rows from; --milvus-flush has
//! it seal them all first, which clipd never does); then at each --ef-search measures recall@k
//! on one pass and the searches/s and latency of each --concurrency of clients searching back to
//! back for --seconds, and the same with the filter shard = --shard against the exact filtered
//! neighbours. On Milvus a second server is then started on the same collections (the same
//! collection_prefix) and the clients spread over both, against all on the first. One table
//! compares the stores (milvus/embedded ratios); it is also written to target/bench/stores.txt.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod clustered;
mod quantile;

use anyhow::{bail, ensure, Context};
use clap::Parser;
use clipd::ann::HnswSettings;
use clipd::config::Settings;
use clipd::grpc::pb::clip_client::ClipClient;
use clipd::grpc::pb::collections_client::CollectionsClient;
use clipd::grpc::pb::{self, item::Content, search_request::Query};
use clipd::index::milvus::pb as milvus_pb;
use clipd::index::{Backend, IndexSettings};
use clipd::server::RunningServer;
use clustered::{exact_neighbours, Clusters};
use milvus_pb::milvus::milvus_service_client::MilvusServiceClient;
use tonic::transport::Channel;

const OUT_DIR: &str = "target/bench/stores";
const TABLE: &str = "target/bench/stores.txt";
/// The demo model's tokenizer, which the written checkpoint uses.
const TOKENIZER: &str = "models/demo/tokenizer.json";
const COLLECTION: &str = "bench";
/// How far apart the recall of the settling passes that count as agreeing may be.
const SETTLED_WITHIN: f64 = 0.002;

/// The collection stores side by side through clipd's gRPC API.
#[derive(Parser)]
#[command(name = "stores", bin_name = "cargo bench --bench stores --")]
#[command(args_override_self = true)]
struct Args {
    /// Items upserted into each store.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Query vectors, each searched once per pass.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Dimensions of every vector (and of the checkpoint written for the servers).
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Hits per search, and the k of recall@k.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// ef_search values to search with, comma-separated: one row of the table each.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef_search: Vec<usize>,
    /// Clients searching at once, comma-separated: one column group of the table each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    /// Items per Upsert.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seconds of searching at each ef_search and concurrency.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Values of the `shard` metadata key (an item's is its number modulo this).
    #[arg(long, default_value_t = 16)]
    shards: usize,
    /// The shard the filtered searches ask for.
    #[arg(long, default_value_t = 3)]
    shard: usize,
    /// Longest wait, after the last upsert, for the recall to stop changing, in seconds.
    #[arg(long, default_value_t = 300.0)]
    settle_seconds: f64,
    /// Passes in a row (one a second) whose recall must agree, within 0.002, for the store to
    /// count as settled.
    #[arg(long, default_value_t = 3)]
    settle_passes: usize,
    /// After the upserts, have Milvus seal and flush the collection's segments (clipd never
    /// does: Milvus seals a segment itself once it is full, or idle for 10 minutes), and wait
    /// until sealed segments with their HNSW index serve every row.
    #[arg(long)]
    milvus_flush: bool,
    /// Threads for the exact search.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the vectors, the queries and the checkpoint's weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let args = Args::parse();
    ensure!(
        args.count > 0 && args.queries > 0 && args.dim > 0 && args.threads > 0,
        "--count, --queries, --dim and --threads must be positive"
    );
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    ensure!(args.settle_passes > 0, "--settle-passes must be positive");
    ensure!(
        args.shards > 0 && args.shard < args.shards,
        "--shard must be below --shards"
    );
    ensure!(
        (1..=args.count / args.shards).contains(&args.k),
        "--k must be 1 to the items of one shard (--count / --shards)"
    );
    let max_top_k = IndexSettings::default().max_top_k;
    ensure!(args.k <= max_top_k, "--k must be at most {max_top_k}");
    let max_batch = IndexSettings::default().max_items_per_request;
    ensure!(
        (1..=max_batch).contains(&args.batch),
        "--batch must be 1 to {max_batch} (index.max_items_per_request)"
    );
    ensure!(
        !args.ef_search.is_empty() && args.ef_search.iter().all(|&ef| ef > 0),
        "--ef-search needs positive values"
    );
    ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|&c| c > 0),
        "--concurrency needs positive values"
    );
    Ok(args)
}

/// The exact neighbours among the items of one shard, as numbers of items of the whole set.
fn exact_in_shard(base: &[f32], queries: &[f32], args: &Args) -> Vec<Vec<u32>> {
    let members: Vec<u32> = (0..args.count as u32)
        .filter(|&i| i as usize % args.shards == args.shard)
        .collect();
    let rows: Vec<f32> = members
        .iter()
        .flat_map(|&i| base[i as usize * args.dim..(i as usize + 1) * args.dim].iter())
        .copied()
        .collect();
    exact_neighbours(&rows, queries, args.dim, args.k, args.threads)
        .into_iter()
        .map(|row| row.into_iter().map(|j| members[j as usize]).collect())
        .collect()
}

fn item_id(n: usize) -> String {
    format!("v{n}")
}

fn item_number(id: &str) -> Option<u32> {
    id.strip_prefix('v')?.parse().ok()
}

/// Hits that are among the exact neighbours, over all the neighbours asked for.
fn recall(found: &[Vec<u32>], truth: &[Vec<u32>], k: usize) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    hits as f64 / (k * truth.len()) as f64
}

/// A random-weight checkpoint of the demo model's shape whose embeddings have `dim` values: what
/// the servers load, so that their collections have that dimension (no bundled or fixture model
/// has 512). Its weights never touch the vectors measured, which are sent as vectors.
fn write_model(dir: &Path, dim: usize, seed: u64) -> anyhow::Result<()> {
    let mut config = clipd::demo::train::demo_config();
    config.projection_dim = dim as i64;
    tch::manual_seed(seed as i64);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = clipd::model::ClipModel::new(&vs.root(), &config);
    clipd::demo::checkpoint::write_checkpoint(dir, &config, &vs, Path::new(TOKENIZER))
        .with_context(|| format!("writing the checkpoint into {}", dir.display()))
}

#[derive(Clone)]
enum Store {
    Embedded,
    /// `token`: `user:password` for a Milvus with authorization (with-milvus.sh's MILVUS_TOKEN).
    Milvus {
        url: String,
        prefix: String,
        token: Option<String>,
    },
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Milvus { .. } => "milvus",
        }
    }
}

/// A server on 127.0.0.1 and its clients; its data directory goes with it.
struct Server {
    server: RunningServer,
    clip: ClipClient<Channel>,
    collections: CollectionsClient<Channel>,
    _data_dir: tempfile::TempDir,
}

impl Server {
    async fn start(store: &Store, model: &Path) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("clipd-bench-stores-")
            .tempdir()?;
        let mut settings = Settings::default();
        settings.server.grpc_addr = ([127, 0, 0, 1], 0).into();
        settings.metrics.addr = ([127, 0, 0, 1], 0).into();
        settings.model.source = Some(model.to_owned());
        settings.index.data_dir = data_dir.path().to_owned();
        // Snapshots only at shutdown: one every 5 minutes would land in the middle of a
        // measurement.
        settings.index.snapshot_interval_s = 0;
        if let Store::Milvus { url, prefix, token } = store {
            settings.index.backend = Backend::Milvus;
            settings.index.milvus.url = url.clone();
            settings.index.milvus.collection_prefix = prefix.clone();
            if let Some(token) = token {
                let file = data_dir.path().join("milvus-token");
                std::fs::write(&file, token)?;
                settings.index.milvus.token_file = Some(file);
            }
            // The machine may be busy: a slow call should not end the run.
            settings.index.milvus.request_timeout_ms = 60_000;
        }
        let mut server =
            RunningServer::start(settings, clipd::config::locations_from_env()).await?;
        server.ready().await?;
        let channel = Channel::from_shared(format!("http://{}", server.addr()))?
            .connect()
            .await?;
        Ok(Self {
            server,
            clip: ClipClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            collections: CollectionsClient::new(channel).max_decoding_message_size(usize::MAX),
            _data_dir: data_dir,
        })
    }

    fn dim(&self) -> usize {
        self.server.engine().expect("ready").description().dim
    }
}

/// Milvus asked directly, for what clipd does not report: its version, and how far it has sealed
/// and indexed the collection.
struct MilvusProbe {
    client: MilvusServiceClient<Channel>,
    collection: String,
    /// The `authorization` header Milvus' clients send: base64 of the token.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

/// Where Milvus has the collection's rows: in sealed segments that its query node serves (each
/// searched through its own HNSW index once built), the rest in growing segments (searched
/// through Milvus' interim index, or by brute force, whatever the ef), and how many rows its
/// HNSW index covers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Segments {
    /// Sealed segments loaded for searching, and their rows.
    sealed: (usize, i64),
    /// Sealed segments among them that Milvus serves through an index, and their rows.
    sealed_indexed: (usize, i64),
    indexed_rows: i64,
    pending_rows: i64,
}

impl Segments {
    fn describe(&self, count: usize) -> String {
        format!(
            "{} rows served from {} sealed segment(s) ({} of them with their index), {} from \
             growing ones; index built over {} rows, {} pending",
            self.sealed.1,
            self.sealed.0,
            self.sealed_indexed.0,
            count as i64 - self.sealed.1,
            self.indexed_rows,
            self.pending_rows
        )
    }
}

/// Milvus' answer as an error when it is one.
fn milvus_ok(status: Option<milvus_pb::common::Status>, call: &str) -> anyhow::Result<()> {
    match status {
        // `error_code` is deprecated, but Milvus 2.3 still sets only it in some answers.
        #[allow(deprecated)]
        Some(s) if s.code != 0 || s.error_code != 0 => {
            bail!("Milvus' {call} failed: {} (code {})", s.reason, s.code)
        }
        _ => Ok(()),
    }
}

impl MilvusProbe {
    async fn connect(url: &str, token: Option<&str>, collection: String) -> anyhow::Result<Self> {
        use base64::Engine;
        let channel = Channel::from_shared(url.to_owned())?.connect().await?;
        let authorization = token
            .map(|t| base64::engine::general_purpose::STANDARD.encode(t).parse())
            .transpose()?;
        Ok(Self {
            client: MilvusServiceClient::new(channel),
            collection,
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    async fn version(&mut self) -> anyhow::Result<String> {
        let answer = self
            .client
            .get_version(self.request(milvus_pb::milvus::GetVersionRequest {}))
            .await?
            .into_inner();
        Ok(answer.version)
    }

    /// Seals the collection's growing segments and flushes them (what Milvus' own clients call
    /// `flush`); returns once Milvus has accepted it, before they are indexed and loaded.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let answer = self
            .client
            .flush(self.request(milvus_pb::milvus::FlushRequest {
                collection_names: vec![self.collection.clone()],
                ..Default::default()
            }))
            .await?
            .into_inner();
        milvus_ok(answer.status, "Flush")
    }

    async fn segments(&mut self) -> anyhow::Result<Segments> {
        let info = self
            .client
            .get_query_segment_info(self.request(milvus_pb::milvus::GetQuerySegmentInfoRequest {
                collection_name: self.collection.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        milvus_ok(info.status, "GetQuerySegmentInfo")?;
        let mut segments = Segments::default();
        for s in &info.infos {
            if s.state == milvus_pb::common::SegmentState::Growing as i32 {
                continue;
            }
            segments.sealed.0 += 1;
            segments.sealed.1 += s.num_rows;
            if s.index_id != 0 {
                segments.sealed_indexed.0 += 1;
                segments.sealed_indexed.1 += s.num_rows;
            }
        }
        let index = self
            .client
            .describe_index(self.request(milvus_pb::milvus::DescribeIndexRequest {
                collection_name: self.collection.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        milvus_ok(index.status, "DescribeIndex")?;
        if let Some(d) = index.index_descriptions.first() {
            segments.indexed_rows = d.indexed_rows;
            segments.pending_rows = d.pending_index_rows;
        }
        Ok(segments)
    }
}

/// A search for `query`'s `k` nearest at `ef` (none: the collection's ef_search), among the
/// items of `shard` if one is named.
fn search_request(
    query: &[f32],
    k: usize,
    ef: Option<usize>,
    shard: Option<usize>,
) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: COLLECTION.into(),
        query: Some(Query::Vector(pb::Vector {
            values: query.to_vec(),
        })),
        top_k: k as u32,
        ef_search: ef.unwrap_or(0) as u32,
        filter: shard
            .map(|shard| [("shard".to_string(), shard.to_string())].into())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// One pass over the requests from `tasks` clients spread over `clients`: each request's hits
/// as item numbers, in order, and how many answers came from an exact scan.
async fn pass(
    clients: &[ClipClient<Channel>],
    requests: &Arc<Vec<pb::SearchRequest>>,
    tasks: usize,
) -> anyhow::Result<(Vec<Vec<u32>>, usize)> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let mut client = clients[t % clients.len()].clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (t..requests.len()).step_by(tasks) {
                    let answer = client.search(requests[i].clone()).await?.into_inner();
                    let ids: Vec<u32> = answer
                        .hits
                        .iter()
                        .filter_map(|h| item_number(&h.id))
                        .collect();
                    out.push((i, ids, answer.exact));
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut found = vec![Vec::new(); requests.len()];
    let mut exact = 0;
    for handle in handles {
        for (i, ids, was_exact) in handle.await?? {
            found[i] = ids;
            exact += usize::from(was_exact);
        }
    }
    Ok((found, exact))
}

/// Searches/s and latency under load.
struct Load {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    first_error: Option<String>,
}

/// `concurrency` clients spread over `clients`, each searching the requests back to back (from
/// its own offset) for `seconds`.
async fn load(
    clients: &[ClipClient<Channel>],
    requests: &Arc<Vec<pb::SearchRequest>>,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..concurrency)
        .map(|t| {
            let mut client = clients[t % clients.len()].clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                let mut i = t * requests.len() / concurrency;
                while Instant::now() < end {
                    let sent = Instant::now();
                    match client.search(requests[i % requests.len()].clone()).await {
                        Ok(_) => latencies.push(sent.elapsed().as_secs_f64() * 1e3),
                        Err(status) => {
                            errors.push(format!("{:?}: {}", status.code(), status.message()))
                        }
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for handle in handles {
        let (l, e) = handle.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(Load {
        per_s: latencies.len() as f64 / elapsed,
        p50_ms: quantile::quantile(&latencies, 0.5).unwrap_or(f64::NAN),
        p99_ms: quantile::quantile(&latencies, 0.99).unwrap_or(f64::NAN),
        errors: errors.len(),
        first_error: errors.into_iter().next(),
    })
}

/// Recall on one pass and the load at each concurrency, for one kind of search.
struct Row {
    recall: f64,
    /// Mean hits per search on the recall pass (fewer than k: the store found fewer).
    hits: f64,
    /// Answers of the recall pass that came from an exact scan.
    exact: usize,
    loads: Vec<Load>,
}

async fn measure_row(
    clients: &[ClipClient<Channel>],
    requests: Vec<pb::SearchRequest>,
    truth: &[Vec<u32>],
    args: &Args,
) -> anyhow::Result<Row> {
    let requests = Arc::new(requests);
    let tasks = args.concurrency.iter().copied().max().unwrap_or(1);
    let (found, exact) = pass(clients, &requests, tasks).await?;
    let mut loads = Vec::new();
    for &concurrency in &args.concurrency {
        let l = load(clients, &requests, concurrency, args.seconds).await?;
        if let Some(error) = &l.first_error {
            eprintln!(
                "  {} errors at concurrency {concurrency}; first: {error}",
                l.errors
            );
        }
        loads.push(l);
    }
    Ok(Row {
        recall: recall(&found, truth, args.k),
        hits: found.iter().map(Vec::len).sum::<usize>() as f64 / found.len() as f64,
        exact,
        loads,
    })
}

/// What waiting for the store to settle after the upserts came to.
struct Settle {
    /// Recall at the collection's ef_search on the first pass after the last upsert.
    first_recall: f64,
    recall: f64,
    /// From the last upsert's answer to the first of the passes that agreed with the store
    /// ready (or to the last pass, when it never settled).
    seconds: f64,
    settled: bool,
    passes: usize,
    segments: Option<(Segments, Segments)>,
}

/// Searches the queries at the collection's ef_search until `--settle-passes` passes in a row
/// agree on the recall and Milvus has no rows waiting for the index and serves every indexed
/// row through its index (after a flush: every row), or `settle_seconds` pass.
async fn settle(
    clients: &[ClipClient<Channel>],
    queries: &[f32],
    truth: &[Vec<u32>],
    args: &Args,
    mut probe: Option<&mut MilvusProbe>,
    flushed: bool,
    written: Instant,
) -> anyhow::Result<Settle> {
    let requests: Arc<Vec<_>> = Arc::new(
        queries
            .chunks_exact(args.dim)
            .map(|q| search_request(q, args.k, None, None))
            .collect(),
    );
    let tasks = args.concurrency.iter().copied().max().unwrap_or(1);
    let mut history: Vec<(f64, f64)> = Vec::new();
    let mut first_segments = None;
    let mut segments = None;
    // When the store's state last turned ready (Milvus: nothing waiting for its index).
    let mut ready_since = None;
    loop {
        let at = written.elapsed().as_secs_f64();
        let (found, _) = pass(clients, &requests, tasks).await?;
        let r = recall(&found, truth, args.k);
        let mut store_ready = true;
        if let Some(probe) = probe.as_deref_mut() {
            let now = probe.segments().await?;
            // Milvus builds a sealed segment's index, then has the query node load it: until
            // then that segment is searched without it.
            store_ready = now.pending_rows == 0
                && now.sealed_indexed.1 == now.indexed_rows
                && (!flushed || now.sealed_indexed.1 == args.count as i64);
            first_segments.get_or_insert(now);
            segments = Some(now);
            eprintln!(
                "  after {at:.1} s: recall {r:.4}; Milvus: {}",
                now.describe(args.count)
            );
        } else {
            eprintln!("  after {at:.1} s: recall {r:.4}");
        }
        history.push((at, r));
        ready_since = match store_ready {
            true => ready_since.or(Some(at)),
            false => None,
        };
        let recent = &history[history.len().saturating_sub(args.settle_passes)..];
        let (low, high) = recent
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &(_, r)| (l.min(r), h.max(r)));
        let settled =
            recent.len() == args.settle_passes && high - low <= SETTLED_WITHIN && store_ready;
        if settled || at > args.settle_seconds {
            return Ok(Settle {
                first_recall: history[0].1,
                recall: r,
                seconds: match settled {
                    true => recent[0].0.max(ready_since.unwrap_or(at)),
                    false => at,
                },
                settled,
                passes: history.len(),
                segments: first_segments.zip(segments),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Two servers on one Milvus against one.
struct Replicas {
    start_s: f64,
    /// The second server's recall at the collection's ef_search (its reads carry no write
    /// timestamp of its own).
    second_recall: f64,
    one: Vec<Load>,
    two: Vec<Load>,
}

struct Run {
    upsert_s: f64,
    /// How long Milvus took to accept a flush, when asked for one.
    flush_s: Option<f64>,
    upsert_p50_ms: f64,
    upsert_p99_ms: f64,
    settle: Settle,
    rows: Vec<Row>,
    filtered: Row,
    replicas: Option<Replicas>,
    version: Option<String>,
    startup_s: f64,
}

struct Data {
    base: Vec<f32>,
    queries: Vec<f32>,
    truth: Vec<Vec<u32>>,
    shard_truth: Vec<Vec<u32>>,
}

async fn run_store(store: &Store, model: &Path, data: &Data, args: &Args) -> anyhow::Result<Run> {
    eprintln!("{}:", store.name());
    let started = Instant::now();
    let mut server = Server::start(store, model).await?;
    let startup_s = started.elapsed().as_secs_f64();
    ensure!(
        server.dim() == args.dim,
        "the written checkpoint has {} dimensions, not {}",
        server.dim(),
        args.dim
    );
    let mut probe = match store {
        Store::Embedded => None,
        Store::Milvus { url, prefix, token } => Some(
            MilvusProbe::connect(url, token.as_deref(), format!("{prefix}{COLLECTION}")).await?,
        ),
    };
    let version = match &mut probe {
        Some(p) => Some(p.version().await?),
        None => None,
    };
    server
        .collections
        .create_collection(pb::CreateCollectionRequest {
            name: COLLECTION.into(),
            ..Default::default()
        })
        .await?;

    let started = Instant::now();
    let mut batch_ms = Vec::new();
    for first in (0..args.count).step_by(args.batch) {
        let items = (first..(first + args.batch).min(args.count))
            .map(|n| pb::Item {
                id: item_id(n),
                content: Some(Content::Vector(pb::Vector {
                    values: data.base[n * args.dim..(n + 1) * args.dim].to_vec(),
                })),
                metadata: [("shard".to_string(), (n % args.shards).to_string())].into(),
            })
            .collect();
        let sent = Instant::now();
        server
            .collections
            .upsert(pb::UpsertRequest {
                collection: COLLECTION.into(),
                items,
            })
            .await
            .with_context(|| format!("upserting items {first}.."))?;
        batch_ms.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let upsert_s = started.elapsed().as_secs_f64();
    let written = Instant::now();
    let mut flush_s = None;
    if let (Some(probe), true) = (probe.as_mut(), args.milvus_flush) {
        probe.flush().await?;
        flush_s = Some(written.elapsed().as_secs_f64());
    }
    batch_ms.sort_by(f64::total_cmp);
    eprintln!(
        "  upserted {} items in {upsert_s:.1} s ({:.0} items/s)",
        args.count,
        args.count as f64 / upsert_s
    );
    let info = server
        .collections
        .get_collection(pb::GetCollectionRequest {
            name: COLLECTION.into(),
        })
        .await?
        .into_inner()
        .collection
        .context("GetCollection answered no collection")?;
    ensure!(
        info.count as usize == args.count,
        "the collection holds {} items, not {}",
        info.count,
        args.count
    );

    let clients = [server.clip.clone()];
    let settle = settle(
        &clients,
        &data.queries,
        &data.truth,
        args,
        probe.as_mut(),
        flush_s.is_some(),
        written,
    )
    .await?;

    let mut rows = Vec::new();
    for &ef in &args.ef_search {
        let requests = data
            .queries
            .chunks_exact(args.dim)
            .map(|q| search_request(q, args.k, Some(ef), None))
            .collect();
        let row = measure_row(&clients, requests, &data.truth, args).await?;
        eprintln!(
            "  ef_search {ef}: recall {:.4}, {}",
            row.recall,
            rates(&row.loads)
        );
        rows.push(row);
    }
    let requests = data
        .queries
        .chunks_exact(args.dim)
        .map(|q| search_request(q, args.k, None, Some(args.shard)))
        .collect();
    let filtered = measure_row(&clients, requests, &data.shard_truth, args).await?;
    eprintln!(
        "  filtered: recall {:.4}, {} ({} of {} exact scans)",
        filtered.recall,
        rates(&filtered.loads),
        filtered.exact,
        args.queries
    );

    let replicas = match store {
        Store::Embedded => None,
        Store::Milvus { .. } => Some(replicas(&server, store, model, data, args).await?),
    };
    // Milvus keeps what it was given: leave nothing behind there.
    server
        .collections
        .drop_collection(pb::DropCollectionRequest {
            name: COLLECTION.into(),
        })
        .await?;
    server.server.shutdown().await?;
    Ok(Run {
        upsert_s,
        flush_s,
        upsert_p50_ms: quantile::quantile(&batch_ms, 0.5).unwrap_or(f64::NAN),
        upsert_p99_ms: quantile::quantile(&batch_ms, 0.99).unwrap_or(f64::NAN),
        settle,
        rows,
        filtered,
        replicas,
        version,
        startup_s,
    })
}

/// A second server on the same Milvus collections; searches at the collection's ef_search from
/// the clients spread over both, against the first alone, measured one after the other.
async fn replicas(
    first: &Server,
    store: &Store,
    model: &Path,
    data: &Data,
    args: &Args,
) -> anyhow::Result<Replicas> {
    let started = Instant::now();
    let second = Server::start(store, model).await?;
    let start_s = started.elapsed().as_secs_f64();
    let requests: Arc<Vec<_>> = Arc::new(
        data.queries
            .chunks_exact(args.dim)
            .map(|q| search_request(q, args.k, None, None))
            .collect(),
    );
    let tasks = args.concurrency.iter().copied().max().unwrap_or(1);
    let (found, _) = pass(std::slice::from_ref(&second.clip), &requests, tasks).await?;
    let second_recall = recall(&found, &data.truth, args.k);
    let one_client = [first.clip.clone()];
    let both = [first.clip.clone(), second.clip.clone()];
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for &concurrency in &args.concurrency {
        one.push(load(&one_client, &requests, concurrency, args.seconds).await?);
        two.push(load(&both, &requests, concurrency, args.seconds).await?);
    }
    eprintln!(
        "  replicas: second started in {start_s:.1} s, recall {second_recall:.4}; one: {}; two: {}",
        rates(&one),
        rates(&two)
    );
    second.server.shutdown().await?;
    Ok(Replicas {
        start_s,
        second_recall,
        one,
        two,
    })
}

fn rates(loads: &[Load]) -> String {
    loads
        .iter()
        .map(|l| format!("{:.0}/s", l.per_s))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let milvus = std::env::var("MILVUS_URL").ok().filter(|u| !u.is_empty());

    let started = Instant::now();
    let clusters = Clusters::new(args.count, args.dim, args.seed);
    let base = clusters.sample(args.count, args.seed.wrapping_add(1));
    let queries = clusters.sample(args.queries, args.seed.wrapping_add(2));
    eprintln!("data: {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let truth = exact_neighbours(&base, &queries, args.dim, args.k, args.threads);
    let shard_truth = exact_in_shard(&base, &queries, &args);
    eprintln!("exact neighbours: {:.1} s", started.elapsed().as_secs_f64());
    let data = Data {
        base,
        queries,
        truth,
        shard_truth,
    };

    let model = PathBuf::from(OUT_DIR).join(format!("model-{}", args.dim));
    if model.exists() {
        std::fs::remove_dir_all(&model)?;
    }
    write_model(&model, args.dim, args.seed)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let embedded = runtime.block_on(run_store(&Store::Embedded, &model, &data, &args))?;
    let milvus = match milvus {
        None => {
            eprintln!("milvus: skipped (MILVUS_URL is not set)");
            None
        }
        Some(url) => {
            let store = Store::Milvus {
                url,
                prefix: format!("bench{}_", std::process::id()),
                token: std::env::var("MILVUS_TOKEN").ok().filter(|t| !t.is_empty()),
            };
            Some(runtime.block_on(run_store(&store, &model, &data, &args))?)
        }
    };
    let table = table(&args, &embedded, milvus.as_ref())?;
    print!("{table}");
    std::fs::create_dir_all(Path::new(TABLE).parent().expect("a folder"))?;
    std::fs::write(TABLE, &table).with_context(|| format!("writing {TABLE}"))?;
    Ok(())
}

fn ratio(milvus: Option<f64>, embedded: f64) -> String {
    match milvus {
        Some(m) => format!("{:.2}", m / embedded),
        None => "-".into(),
    }
}

fn or_dash(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

fn table(args: &Args, embedded: &Run, milvus: Option<&Run>) -> anyhow::Result<String> {
    let hnsw = HnswSettings::default();
    let mut out = String::new();
    writeln!(
        out,
        "Collection stores through clipd's gRPC API: {} clustered unit vectors of {} dimensions \
         (metadata shard = number % {}), {} queries, top {}; m {}, ef_construction {} on both; \
         one clipd server per store in this process on 127.0.0.1{}",
        args.count,
        args.dim,
        args.shards,
        args.queries,
        args.k,
        hnsw.m,
        hnsw.ef_construction,
        match milvus.and_then(|m| m.version.as_deref()) {
            Some(v) => format!("; Milvus {v} standalone on the same machine"),
            None => String::new(),
        }
    )?;
    if milvus.is_none() {
        writeln!(
            out,
            "milvus: skipped (MILVUS_URL is not set: scripts/bench-stores.sh runs it beside a \
             Milvus)"
        )?;
    }
    let per_s = |r: &Run| args.count as f64 / r.upsert_s;
    let upsert = |name: &str, r: &Run| {
        format!(
            "{name} {:.0} items/s ({:.1} s; per request p50 {:.0} ms, p99 {:.0} ms)",
            per_s(r),
            r.upsert_s,
            r.upsert_p50_ms,
            r.upsert_p99_ms
        )
    };
    writeln!(
        out,
        "upsert, {} items per request, one client: {}, {}, milvus/embedded {}",
        args.batch,
        upsert("embedded", embedded),
        milvus.map_or("milvus -".into(), |m| upsert("milvus", m)),
        ratio(milvus.map(per_s), per_s(embedded))
    )?;
    for (name, run) in [("embedded", Some(embedded)), ("milvus", milvus)] {
        let Some(run) = run else { continue };
        let s = &run.settle;
        write!(
            out,
            "settling ({name}; server ready in {:.1} s{}): recall@{} at ef_search {} {:.4} on \
             the first pass after the last upsert, {:.4} {} {:.1} s ({} passes)",
            run.startup_s,
            match run.flush_s {
                Some(f) => format!("; Milvus asked to flush after the upserts, took {f:.1} s"),
                None => String::new(),
            },
            args.k,
            hnsw.ef_search,
            s.first_recall,
            s.recall,
            if s.settled {
                "settled from"
            } else {
                "not settled after"
            },
            s.seconds,
            s.passes
        )?;
        match &s.segments {
            Some((first, last)) => writeln!(
                out,
                "; Milvus on the first pass: {}; on the last: {}",
                first.describe(args.count),
                last.describe(args.count)
            )?,
            None => writeln!(out)?,
        }
    }

    let mut header = format!(
        "{:>11}  {:>10}  {:>10}",
        "ef_search", "recall emb", "recall mil"
    );
    for c in &args.concurrency {
        write!(
            header,
            "  {:>11}  {:>11}  {:>7}",
            format!("q/s x{c} emb"),
            format!("q/s x{c} mil"),
            "mil/emb"
        )?;
    }
    let c0 = args.concurrency[0];
    write!(
        header,
        "  {:>15}  {:>15}",
        format!("x{c0} p50/p99 emb"),
        format!("x{c0} p50/p99 mil")
    )?;
    writeln!(out, "{header}")?;
    let labels = args
        .ef_search
        .iter()
        .map(|ef| match *ef == hnsw.ef_search {
            true => format!("{ef}*"),
            false => ef.to_string(),
        })
        .chain([format!("filter {}*", hnsw.ef_search)]);
    let embedded_rows: Vec<&Row> = embedded.rows.iter().chain([&embedded.filtered]).collect();
    let milvus_rows: Vec<Option<&Row>> = match milvus {
        Some(m) => m.rows.iter().chain([&m.filtered]).map(Some).collect(),
        None => vec![None; embedded_rows.len()],
    };
    let latency = |l: &Load| format!("{:.2}/{:.2}", l.p50_ms, l.p99_ms);
    for ((label, e), m) in labels.zip(embedded_rows).zip(milvus_rows) {
        let mut line = format!(
            "{:>10}  {:>10.4}  {:>10}",
            label,
            e.recall,
            or_dash(m.map(|m| m.recall), 4)
        );
        for (i, el) in e.loads.iter().enumerate() {
            let ml = m.map(|m| m.loads[i].per_s);
            write!(
                line,
                "  {:>11.0}  {:>11}  {:>7}",
                el.per_s,
                or_dash(ml, 0),
                ratio(ml, el.per_s)
            )?;
        }
        write!(
            line,
            "  {:>15}  {:>15}",
            latency(&e.loads[0]),
            m.map_or("-".into(), |m| latency(&m.loads[0]))
        )?;
        writeln!(out, "{line}")?;
    }
    let errors: usize = [Some(embedded), milvus]
        .into_iter()
        .flatten()
        .flat_map(|r| r.rows.iter().chain([&r.filtered]))
        .flat_map(|row| &row.loads)
        .map(|l| l.errors)
        .sum();
    let in_shard = (0..args.count)
        .filter(|n| n % args.shards == args.shard)
        .count();
    writeln!(
        out,
        "recall@{} against exact search over all items, or (filter) over the {in_shard} items of \
         shard {} that the filter leaves (of which the embedded store answered {} of {} searches \
         by an exact scan); *: the collection's ef_search (the request's 0); q/s xN: N clients \
         searching back to back for {} s; p50/p99: latency in ms; {errors} failed searches",
        args.k, args.shard, embedded.filtered.exact, args.queries, args.seconds,
    )?;
    // Where a store returned fewer hits than asked for, which recall@k counts as misses.
    let labels: Vec<String> = args
        .ef_search
        .iter()
        .map(|ef| format!("ef_search {ef}"))
        .chain(["filter".to_string()])
        .collect();
    let short: Vec<String> = [("embedded", Some(embedded)), ("milvus", milvus)]
        .into_iter()
        .filter_map(|(name, run)| Some((name, run?)))
        .flat_map(|(name, run)| {
            let rows = run.rows.iter().chain([&run.filtered]);
            rows.zip(&labels)
                .filter(|(row, _)| row.hits < args.k as f64)
                .map(move |(row, label)| format!("{name} {label}: {:.1}", row.hits))
        })
        .collect();
    if !short.is_empty() {
        writeln!(
            out,
            "fewer than {} hits per search on average: {}",
            args.k,
            short.join(", ")
        )?;
    }
    if let Some(r) = milvus.and_then(|m| m.replicas.as_ref()) {
        let cells: Vec<String> = args
            .concurrency
            .iter()
            .zip(r.one.iter().zip(&r.two))
            .map(|(c, (one, two))| {
                format!(
                    "x{c}: one {:.0} q/s, two {:.0} q/s, two/one {:.2} (p50 {:.2} / {:.2} ms)",
                    one.per_s,
                    two.per_s,
                    two.per_s / one.per_s,
                    one.p50_ms,
                    two.p50_ms
                )
            })
            .collect();
        writeln!(
            out,
            "two clipd servers on one Milvus (same collection_prefix; the second ready in {:.1} s, \
             its recall {:.4}), clients spread over both against all on one, ef_search {}: {}",
            r.start_s,
            r.second_recall,
            hnsw.ef_search,
            cells.join("; ")
        )?;
    }
    Ok(out)
}
