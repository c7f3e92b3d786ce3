use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use clipd::clip::{Clip, InputLimits};
use clipd::model::{DeviceSpec, Dtype, ModelOptions};

/// clipd: OpenAI's CLIP on libtorch. Embeds images and texts into one vector space.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts and images and print one JSON object to stdout:
    /// {"model": NAME, "dim": N, "text": [[...], ...], "image": [[...], ...]}, each list in the
    /// order given, every vector L2-normalised.
    Embed(EmbedArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// A CLIP checkpoint directory in Hugging Face layout (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json).
    #[arg(long, value_name = "DIR")]
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

fn load(args: &ModelArgs) -> anyhow::Result<Clip> {
    let Some(dir) = &args.model else {
        bail!("no model given: pass --model DIR, a CLIP checkpoint in Hugging Face layout");
    };
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let options = ModelOptions {
        device: args.device,
        dtype: args.dtype,
    };
    let clip = Clip::load(dir, &options, &InputLimits::default())
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    tracing::info!(model = %clip.name, device = ?clip.model.device, dtype = %clip.model.dtype, "model loaded");
    Ok(clip)
}

fn embed(args: &EmbedArgs) -> anyhow::Result<()> {
    let images = args
        .image
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clip = load(&args.model)?;
    let batch = args.batch_size.max(1);
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let mut text = Vec::with_capacity(texts.len());
    for (c, chunk) in texts.chunks(batch).enumerate() {
        let embedded = clip.embed_texts(chunk).map_err(|(i, e)| {
            let i = c * batch + i;
            anyhow::anyhow!("--text #{} ({:?}): {e}", i + 1, texts[i])
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
        Command::Embed(args) => embed(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
