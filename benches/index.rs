//! The HNSW index against exact search and against Python's hnswlib with the same settings, in one
//! run (scripts/bench-index.sh runs it).
//!
//! cargo bench --bench index -- [--count 100000] [--queries 1000] [--dim 512] [--m 24]
//!     [--ef-construction 200] [--ef-search 16,32,64,128,256] [--k 10] [--threads 2] [--seed 1]
//!     [--seconds 1]
//!
//! Makes clustered unit vectors and queries from --seed, finds each query's exact --k nearest by
//! brute force, builds the index on --threads threads (timed: hnsw_rs's graph, then its flat
//! copy that searches walk, with hnsw_rs's graph dropped), then for each ef_search measures
//! recall@k and the queries/s of one thread issuing queries one after another, as a server thread
//! would, for at least --seconds. The vectors and exact neighbours go to target/bench/index/ for
//! benches/reference/hnswlib_bench.py, which does the same with hnswlib; one table compares both.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod clustered;

use anyhow::{bail, ensure, Context};
use clap::Parser;
use clipd::ann::{HnswSettings, UnitIndex};
use clustered::{exact_neighbours, Clusters};
use serde::Deserialize;

const OUT_DIR: &str = "target/bench/index";

/// The HNSW index against exact search and against Python's hnswlib with the same settings.
#[derive(Parser)]
#[command(name = "index", bin_name = "cargo bench --bench index --")]
#[command(args_override_self = true)]
struct Args {
    /// Vectors in the index.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Query vectors, each searched once per pass.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Dimensions of every vector.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// HNSW links per node (m).
    #[arg(long, default_value_t = 24)]
    m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Candidate list sizes to search with, comma-separated: one row of the table each.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef_search: Vec<usize>,
    /// Neighbours per query, and the k of recall@k.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Threads for building the index and for the exact search.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the vectors and queries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Least time to search for at each ef_search, in seconds.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
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
    ensure!(
        (1..=args.count).contains(&args.k),
        "--k must be 1 to --count"
    );
    ensure!(!args.ef_search.is_empty(), "--ef-search needs a value");
    let settings = settings(&args, args.ef_search[0]);
    if let Some(problem) = settings.problem() {
        bail!("{problem}");
    }
    Ok(args)
}

fn settings(args: &Args, ef_search: usize) -> HnswSettings {
    HnswSettings {
        m: args.m,
        ef_construction: args.ef_construction,
        ef_search,
    }
}

fn recall(found: &[Vec<usize>], truth: &[Vec<u32>], k: usize) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|&&id| t.contains(&(id as u32))).count())
        .sum();
    hits as f64 / (k * truth.len()) as f64
}

struct Measured {
    ef_search: usize,
    recall: f64,
    qps: f64,
}

/// Recall from the first pass over the queries; queries/s over all passes, repeated until at
/// least `seconds` have gone by.
fn measure(
    index: &UnitIndex,
    queries: &[f32],
    truth: &[Vec<u32>],
    args: &Args,
    ef_search: usize,
) -> Measured {
    let start = Instant::now();
    let found: Vec<Vec<usize>> = queries
        .chunks_exact(args.dim)
        .map(|q| index.search_ef(q, args.k, ef_search))
        .collect();
    let mut done = found.len();
    while start.elapsed().as_secs_f64() < args.seconds {
        for q in queries.chunks_exact(args.dim) {
            std::hint::black_box(index.search_ef(q, args.k, ef_search));
        }
        done += found.len();
    }
    Measured {
        ef_search,
        recall: recall(&found, truth, args.k),
        qps: done as f64 / start.elapsed().as_secs_f64(),
    }
}

fn write_f32(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_inputs(
    dir: &Path,
    args: &Args,
    base: &[f32],
    queries: &[f32],
    truth: &[Vec<u32>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_f32(&dir.join("base.f32"), base)?;
    write_f32(&dir.join("queries.f32"), queries)?;
    let truth_bytes: Vec<u8> = truth
        .iter()
        .flat_map(|row| row.iter().flat_map(|id| id.to_le_bytes()))
        .collect();
    ensure!(
        truth_bytes.len() == args.queries * args.k * 4,
        "fewer than k exact neighbours"
    );
    std::fs::write(dir.join("truth.u32"), truth_bytes)?;
    let meta = serde_json::json!({
        "count": args.count,
        "queries": args.queries,
        "dim": args.dim,
        "k": args.k,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "ef_search": args.ef_search,
        "threads": args.threads,
        "seed": args.seed,
        "seconds": args.seconds,
        "files": {"base": "base.f32", "queries": "queries.f32", "truth": "truth.u32"},
        "format": "little-endian row-major: base and queries f32 [rows, dim], truth u32 [queries, k]",
    });
    std::fs::write(dir.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

#[derive(Deserialize)]
struct Reference {
    hnswlib: String,
    build_s: f64,
    runs: Vec<ReferenceRun>,
}

#[derive(Deserialize)]
struct ReferenceRun {
    ef_search: usize,
    recall: f64,
    qps: f64,
}

fn run_hnswlib(dir: &Path) -> anyhow::Result<Reference> {
    let python = std::env::var_os("CLIPD_HNSWLIB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".venv-ann/bin/python"));
    let output = Command::new(&python)
        .arg("benches/reference/hnswlib_bench.py")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running {} (scripts/bench-index.sh makes .venv-ann)",
                python.display()
            )
        })?;
    ensure!(
        output.status.success(),
        "hnswlib_bench.py failed: {}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout
        .lines()
        .last()
        .context("hnswlib_bench.py printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("parsing hnswlib_bench.py's {last:?}"))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // hnsw_rs inserts on rayon's global pool, sized from this variable on first use.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());

    let started = Instant::now();
    let clusters = Clusters::new(args.count, args.dim, args.seed);
    let base = clusters.sample(args.count, args.seed.wrapping_add(1));
    let queries = clusters.sample(args.queries, args.seed.wrapping_add(2));
    eprintln!("data: {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let truth = exact_neighbours(&base, &queries, args.dim, args.k, args.threads);
    eprintln!("exact neighbours: {:.1} s", started.elapsed().as_secs_f64());
    let dir = PathBuf::from(OUT_DIR);
    write_inputs(&dir, &args, &base, &queries, &truth)?;

    let started = Instant::now();
    let settings = settings(&args, args.ef_search[0]);
    let hnsw = UnitIndex::build_hnsw(&base, args.dim, &settings);
    let graph_s = started.elapsed().as_secs_f64();
    let flattening = Instant::now();
    let index = UnitIndex::from_hnsw(&hnsw, &base, args.dim, settings.ef_search);
    drop(hnsw);
    let build = Build {
        total_s: started.elapsed().as_secs_f64(),
        graph_s,
        flatten_s: flattening.elapsed().as_secs_f64(),
    };
    eprintln!(
        "clipd build: {:.1} s (hnsw_rs {graph_s:.1} s, flattening {:.2} s)",
        build.total_s, build.flatten_s
    );
    drop(base);
    let ours: Vec<Measured> = args
        .ef_search
        .iter()
        .map(|&ef| {
            let m = measure(&index, &queries, &truth, &args, ef);
            eprintln!(
                "clipd ef_search {ef}: recall {:.4}, {:.0} queries/s",
                m.recall, m.qps
            );
            m
        })
        .collect();
    // Free the index's memory before hnswlib makes its own.
    drop(index);

    let reference = run_hnswlib(&dir)?;
    print!("{}", table(&args, &build, &ours, &reference)?);
    Ok(())
}

/// The index's build time, in its two steps.
struct Build {
    total_s: f64,
    /// hnsw_rs building its graph.
    graph_s: f64,
    /// Copying it into the flat graph and dropping it.
    flatten_s: f64,
}

fn table(
    args: &Args,
    build: &Build,
    ours: &[Measured],
    reference: &Reference,
) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "HNSW index: {} clustered unit vectors of {} dimensions, {} queries, k {}, m {}, \
         ef_construction {}, {} build threads; hnswlib {}",
        args.count,
        args.dim,
        args.queries,
        args.k,
        args.m,
        args.ef_construction,
        args.threads,
        reference.hnswlib
    )?;
    writeln!(
        out,
        "build: clipd {:.1} s (hnsw_rs graph {:.1} s + flat copy {:.2} s), hnswlib {:.1} s, \
         clipd/hnswlib time {:.2}",
        build.total_s,
        build.graph_s,
        build.flatten_s,
        reference.build_s,
        build.total_s / reference.build_s
    )?;
    writeln!(
        out,
        "{:>9}  {:>12}  {:>14}  {:>11}  {:>13}  {:>17}",
        "ef_search",
        "clipd recall",
        "hnswlib recall",
        "clipd q/s",
        "hnswlib q/s",
        "clipd/hnswlib q/s"
    )?;
    for m in ours {
        let r = reference
            .runs
            .iter()
            .find(|r| r.ef_search == m.ef_search)
            .with_context(|| format!("hnswlib has no ef_search {}", m.ef_search))?;
        writeln!(
            out,
            "{:>9}  {:>12.4}  {:>14.4}  {:>11.0}  {:>13.0}  {:>17.2}",
            m.ef_search,
            m.recall,
            r.recall,
            m.qps,
            r.qps,
            m.qps / r.qps
        )?;
    }
    writeln!(
        out,
        "recall@{k} against exact search; q/s: one thread, one query at a time \
         (hnswlib through Python, one knn_query call per query)",
        k = args.k
    )?;
    Ok(out)
}
