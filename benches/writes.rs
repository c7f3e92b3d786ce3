//! What writes to a collection cost the searches running beside them (scripts/bench-writes.sh
//! runs it).
//!
//! cargo bench --bench writes -- [--count 20000] [--dim 512] [--writes 300] [--batch 1]
//!     [--searchers 1] [--seconds 3] [--seed 1]
//!
//! Fills a collection (through `Collection::upsert`, write-ahead log and all, under
//! target/bench/writes/) with --count random unit vectors, then measures --searchers threads
//! searching it one query after another (top 10, the default ef_search): first alone for
//! --seconds, then while another thread makes --writes upserts of --batch items each, every one
//! acknowledged as a server would (log flushed to disk). The table compares the two phases in one
//! run: searches/s, latency percentiles and their ratio, and the writes' own latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod quantile;

use anyhow::ensure;
use clap::Parser;
use clipd::ann::HnswSettings;
use clipd::index::IndexSettings;
use clipd::index::{unit_vector, Collection, Item, Manifest, Metadata, Search, Target};
use clipd::rng::SplitMix64;

const OUT_DIR: &str = "target/bench/writes";

/// What writes to a collection cost the searches running beside them.
#[derive(Parser)]
#[command(name = "writes", bin_name = "cargo bench --bench writes --")]
#[command(args_override_self = true)]
struct Args {
    /// Items the collection is filled with before measuring.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Dimensions of every vector.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Upserts made beside the searches, each acknowledged (log flushed to disk).
    #[arg(long, default_value_t = 300)]
    writes: usize,
    /// Items per upsert.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Threads searching, one query after another.
    #[arg(long, default_value_t = 1)]
    searchers: usize,
    /// How long the searches run alone, in seconds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seed of the vectors and queries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let args = Args::parse();
    ensure!(
        args.count > 0 && args.dim > 0,
        "--count and --dim must be positive"
    );
    ensure!(
        args.writes > 0 && args.batch > 0,
        "--writes and --batch must be positive"
    );
    ensure!(args.searchers > 0, "--searchers must be positive");
    Ok(args)
}

fn unit(rng: &mut SplitMix64, dim: usize) -> Vec<f32> {
    let values = (0..dim).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    unit_vector(values, dim).expect("random values have a length")
}

fn item(id: usize, vector: Vec<f32>) -> Item {
    Item {
        id: format!("item-{id}"),
        metadata: [("shard".to_string(), (id % 16).to_string())].into(),
        vector,
        text: None,
    }
}

/// Latencies in milliseconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self(values)
    }

    fn quantile(&self, q: f64) -> f64 {
        quantile::quantile(&self.0, q).unwrap_or(f64::NAN)
    }
}

/// Searches from `searchers` threads until `stop` is set: each thread's latencies, merged.
fn search_until(
    collection: &Arc<Collection>,
    queries: &Arc<Vec<Vec<f32>>>,
    searchers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<f64>>> {
    (0..searchers)
        .map(|t| {
            let (collection, queries, stop) = (collection.clone(), queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let search = Search {
                        target: Target::Vector(queries[i % queries.len()].clone()),
                        top_k: 10,
                        ef_search: None,
                        filter: Metadata::new(),
                    };
                    let started = Instant::now();
                    let found = collection.search(&search).expect("a search");
                    latencies.push(started.elapsed().as_secs_f64() * 1e3);
                    assert_eq!(found.hits.len(), 10);
                    i += searchers;
                }
                latencies
            })
        })
        .collect()
}

struct Phase {
    seconds: f64,
    searches: Latencies,
}

fn joined(handles: Vec<std::thread::JoinHandle<Vec<f64>>>) -> Latencies {
    Latencies::new(
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a searcher"))
            .collect(),
    )
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = std::path::Path::new(OUT_DIR).join("collection");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(OUT_DIR)?;
    let manifest = Manifest {
        name: "bench".into(),
        model: "bench".into(),
        dim: args.dim,
        hnsw: HnswSettings::default(),
        probe: None,
    };
    let settings = Arc::new(IndexSettings::default());
    let collection = Collection::create(&dir, manifest, settings)?;
    let mut rng = SplitMix64::new(args.seed);

    let started = Instant::now();
    for chunk in (0..args.count).collect::<Vec<_>>().chunks(1000) {
        let items = chunk.iter().map(|&i| item(i, unit(&mut rng, args.dim)));
        collection.upsert(items.collect())?;
    }
    eprintln!(
        "filled {} items in {:.1} s",
        args.count,
        started.elapsed().as_secs_f64()
    );
    let queries = Arc::new((0..1000).map(|_| unit(&mut rng, args.dim)).collect());
    // Half new ids, half replacements: replacements leave tombstones, as real updates do.
    let writes: Vec<Vec<Item>> = (0..args.writes)
        .map(|w| {
            (0..args.batch)
                .map(|b| {
                    let n = w * args.batch + b;
                    let id = if n % 2 == 0 {
                        args.count + n
                    } else {
                        n % args.count
                    };
                    item(id, unit(&mut rng, args.dim))
                })
                .collect()
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles = search_until(&collection, &queries, args.searchers, &stop);
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let alone = Phase {
        searches: joined(handles),
        seconds: started.elapsed().as_secs_f64(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles = search_until(&collection, &queries, args.searchers, &stop);
    let mut write_ms = Vec::with_capacity(args.writes);
    for items in writes {
        let began = Instant::now();
        collection.upsert(items)?;
        write_ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    let writing = Phase {
        searches: joined(handles),
        seconds: started.elapsed().as_secs_f64(),
    };
    let write_ms = Latencies::new(write_ms);
    std::fs::remove_dir_all(&dir)?;

    println!(
        "Searches beside writes: {} unit vectors of {} dimensions, m {}, ef_search {}, top 10, \
         {} searching thread(s); {} upserts of {} item(s), half of them replacements",
        args.count,
        args.dim,
        HnswSettings::default().m,
        HnswSettings::default().ef_search,
        args.searchers,
        args.writes,
        args.batch
    );
    println!(
        "{:<16} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "phase", "searches", "searches/s", "p50 ms", "p99 ms", "max ms"
    );
    for (name, phase) in [("alone", &alone), ("beside writes", &writing)] {
        println!(
            "{:<16} {:>9} {:>10.0} {:>9.3} {:>9.3} {:>9.3}",
            name,
            phase.searches.0.len(),
            phase.searches.0.len() as f64 / phase.seconds,
            phase.searches.quantile(0.5),
            phase.searches.quantile(0.99),
            phase.searches.quantile(1.0),
        );
    }
    let rate = |p: &Phase| p.searches.0.len() as f64 / p.seconds;
    println!(
        "beside writes / alone: searches/s {:.2}, p50 {:.2}, p99 {:.2}",
        rate(&writing) / rate(&alone),
        writing.searches.quantile(0.5) / alone.searches.quantile(0.5),
        writing.searches.quantile(0.99) / alone.searches.quantile(0.99),
    );
    println!(
        "writes: {:.1} upserts/s over {:.1} s; per upsert p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (log flushed to disk before each returns)",
        args.writes as f64 / writing.seconds,
        writing.seconds,
        write_ms.quantile(0.5),
        write_ms.quantile(0.99),
        write_ms.quantile(1.0),
    );
    Ok(())
}
