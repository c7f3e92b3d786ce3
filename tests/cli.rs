//! The `clipd` binary as a user runs it: `clipd embed` prints one JSON object to stdout whose
//! vectors equal the library's, logs and errors go to stderr, and bad arguments or inputs exit
//! non-zero with a message naming the culprit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clipd::preprocess::InputLimits;
use common::*;
use serde_json::Value;
use tempfile::TempDir;

const PNG: &str = "rgb_640x480.png";
const JPEG: &str = "q75_420_333x251.jpg";

fn clipd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clipd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Debug logging on purpose: it must all go to stderr, never into the JSON on stdout.
        .env("RUST_LOG", "debug")
        .output()
        .expect("cannot run clipd")
}

/// `clipd embed --model tests/fixtures/models/tiny-a ARGS...`
fn embed_tiny(args: &[&str]) -> Output {
    let model = model_dir("tiny-a");
    let mut all = vec!["embed", "--model", path_arg(&model)];
    all.extend_from_slice(args);
    clipd(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_fails(output: &Output, what: &str) -> String {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "{what}: clipd succeeded; stdout {:?}, stderr {err}",
        stdout(output)
    );
    assert!(
        output.stdout.is_empty(),
        "{what}: a failed run wrote to stdout: {:?}",
        stdout(output)
    );
    err
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A file named `name` in its own temporary folder, removed on drop.
struct TempFile {
    _dir: TempDir,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("clipd-cli-")
            .tempdir()
            .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        Self { _dir: dir, path }
    }
}

fn vectors(value: &Value, key: &str) -> Vec<Vec<f32>> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array: {value}"))
        .iter()
        .map(floats)
        .collect()
}

#[test]
fn embed_prints_one_json_object_equal_to_the_library() {
    let model = model_dir("tiny-a");
    let (png, jpeg) = (image_path(PNG), image_path(JPEG));
    let texts = ["a photo of a cat", ""];
    let output = clipd(&[
        "embed",
        "--model",
        path_arg(&model),
        "--device",
        "cpu",
        "--text",
        texts[0],
        "--text",
        texts[1],
        "--image",
        path_arg(&png),
        "--image",
        path_arg(&jpeg),
    ]);
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "clipd failed: {}\nstdout: {out}",
        stderr(&output)
    );

    // Exactly one JSON value on stdout, then a newline, nothing else.
    let values: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"));
    assert_eq!(values.len(), 1, "stdout holds {} JSON values", values.len());
    assert!(
        out.ends_with('\n') && out.trim_end().ends_with('}'),
        "{out:?}"
    );
    assert_eq!(out.lines().count(), 1, "stdout has more than one line");
    let json = &values[0];
    let object = json.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["dim", "image", "model", "text"]);
    assert_eq!(json["model"].as_str(), Some("tiny-a"));
    assert_eq!(json["dim"].as_u64(), Some(24));

    let (text, image) = (vectors(json, "text"), vectors(json, "image"));
    assert_eq!((text.len(), image.len()), (2, 2));
    for v in text.iter().chain(&image) {
        assert_eq!(v.len(), 24);
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() <= 1e-4, "norm {norm}");
    }

    let clip = load_cpu(&model);
    let want_text = clip.embed_texts(&texts).unwrap();
    let bytes = [std::fs::read(&png).unwrap(), std::fs::read(&jpeg).unwrap()];
    let want_image = clip.embed_images(&[&bytes[0], &bytes[1]]).unwrap();
    for (i, (got, want)) in text.iter().zip(&want_text).enumerate() {
        let cos = cosine(got, &want.values);
        assert!(cos >= 0.99999, "text #{i}: cosine {cos}");
    }
    for (i, (got, want)) in image.iter().zip(&want_image).enumerate() {
        let cos = cosine(got, want);
        assert!(cos >= 0.99999, "image #{i}: cosine {cos}");
    }
    // The two texts, and the two images, are different inputs with different embeddings.
    assert!(cosine(&text[0], &text[1]) < 0.9999);
    assert!(cosine(&image[0], &image[1]) < 0.9999);
}

#[test]
fn embed_with_only_texts_gives_an_empty_image_list() {
    let output = clipd(&[
        "embed",
        "--model",
        path_arg(&model_dir("tiny-b")),
        "--device",
        "cpu",
        "--text",
        "hello",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["model"].as_str(), Some("tiny-b"));
    assert_eq!(json["dim"].as_u64(), Some(20));
    assert_eq!(vectors(&json, "text").len(), 1);
    assert_eq!(vectors(&json, "text")[0].len(), 20);
    assert_eq!(json["image"], Value::Array(vec![]));
}

#[test]
fn without_a_model_the_bundled_demo_model_is_used_and_said_so() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_clipd"))
            .args(["embed", "--device", "cpu", "--text", "a red circle"])
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .unwrap()
    };
    let output = run();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("demo model"),
        "{}",
        stderr(&output)
    );
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["model"], "clipd-demo");
    assert_eq!(json["dim"], 64);
    // Unpacked once into the cache, reused by the next run.
    let unpacked: Vec<_> = std::fs::read_dir(cache.path().join("clipd"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(unpacked.len(), 1, "{unpacked:?}");
    let again = run();
    assert_eq!(stdout(&again), stdout(&output));
}

#[test]
fn nonexistent_model_directory_is_named() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("no-model");
    let output = clipd(&["embed", "--model", path_arg(&dir), "--text", "a cat"]);
    let err = assert_fails(&output, "nonexistent model");
    assert!(err.contains(path_arg(&dir)), "{err}");
}

#[test]
fn nonexistent_image_path_is_named() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("does-not-exist.png");
    let output = embed_tiny(&[
        "--device",
        "cpu",
        "--image",
        path_arg(&image_path(PNG)),
        "--image",
        path_arg(&missing),
    ]);
    let err = assert_fails(&output, "nonexistent image");
    assert!(err.contains(path_arg(&missing)), "{err}");
}

#[test]
fn undecodable_image_file_is_named() {
    let junk = TempFile::new("junk.jpg", b"\xff\xd8\xffthis is not really a JPEG at all");
    let output = embed_tiny(&[
        "--device",
        "cpu",
        "--image",
        path_arg(&image_path(PNG)),
        "--image",
        path_arg(&junk.path),
    ]);
    let err = assert_fails(&output, "undecodable image");
    assert!(err.contains(path_arg(&junk.path)), "{err}");
    assert!(!err.contains(PNG), "the good image is blamed: {err}");
}

#[test]
fn text_file_passed_as_image_is_named_as_unsupported() {
    let text = TempFile::new("notes.txt", b"just some notes\n");
    let output = embed_tiny(&["--device", "cpu", "--image", path_arg(&text.path)]);
    let err = assert_fails(&output, "text as image");
    assert!(err.contains(path_arg(&text.path)), "{err}");
    assert!(err.contains("unsupported"), "{err}");
}

#[test]
fn too_long_text_is_named_by_position() {
    let long = "x".repeat(InputLimits::default().max_text_bytes + 1);
    let output = embed_tiny(&["--device", "cpu", "--text", "fine", "--text", &long]);
    let err = assert_fails(&output, "too long text");
    assert!(err.contains("--text #2"), "{}", &err[..err.len().min(500)]);
}

#[test]
fn bad_dtype_is_rejected() {
    let output = embed_tiny(&["--dtype", "f64", "--text", "a cat"]);
    let err = assert_fails(&output, "bad --dtype");
    assert!(err.contains("f64") && err.contains("--dtype"), "{err}");
}

#[test]
fn bad_device_is_rejected() {
    let output = embed_tiny(&["--device", "tpu:0", "--text", "a cat"]);
    let err = assert_fails(&output, "bad --device");
    assert!(err.contains("tpu:0") && err.contains("--device"), "{err}");
}

#[test]
fn cuda_device_without_a_gpu_is_a_clear_error() {
    if tch::Cuda::is_available() {
        eprintln!("skipped: this machine has a CUDA device");
        return;
    }
    let output = embed_tiny(&["--device", "cuda", "--text", "a cat"]);
    let err = assert_fails(&output, "--device cuda without a GPU");
    assert!(err.contains("cuda:0"), "{err}");
}

#[test]
fn unknown_subcommand_is_rejected() {
    let output = clipd(&["serve-everything"]);
    assert_fails(&output, "unknown subcommand");
}

#[test]
fn help_exits_zero_and_mentions_model() {
    for args in [&["--help"][..], &["embed", "--help"][..]] {
        let output = clipd(args);
        let out = stdout(&output);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(out.contains("embed"), "{args:?}: {out}");
        if args.len() == 2 {
            for flag in ["--model", "--text", "--image", "--device", "--dtype"] {
                assert!(
                    out.contains(flag),
                    "{args:?} does not mention {flag}: {out}"
                );
            }
        }
    }
}

#[test]
fn an_image_file_over_the_byte_limit_is_named_without_reading_it_whole() {
    let big = TempFile::new(
        "big.png",
        &vec![0u8; InputLimits::default().image.max_bytes + 10],
    );
    let output = embed_tiny(&["--device", "cpu", "--image", path_arg(&big.path)]);
    let err = assert_fails(&output, "oversized image");
    assert!(err.contains("big.png") && err.contains("limit"), "{err}");
}

/// `clipd config`: the effective settings, keys redacted; an invalid one named, exit 1.
#[test]
fn config_prints_the_effective_settings_with_keys_redacted() {
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clipd"));
        command.arg("config").args(args);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let shown = run(
        &[
            ("CLIPD__AUTH__WRITE_KEYS", "very-secret"),
            ("CLIPD__BATCHING__MAX_DELAY_MS", "9"),
        ],
        &["--metrics-addr", "127.0.0.1:9999"],
    );
    assert!(shown.status.success(), "{shown:?}");
    let text = stdout(&shown);
    assert!(!text.contains("very-secret"), "{text}");
    assert!(text.contains("write_keys = [\"<redacted>\"]"), "{text}");
    assert!(text.contains("max_delay_ms = 9"), "{text}");
    assert!(text.contains("addr = \"127.0.0.1:9999\""), "{text}");
    let refused = run(&[("CLIPD__INDEX__HNSW__M", "999")], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("index.hnsw: m is 999"),
        "{refused:?}"
    );
}
