//! `--model org/name`: downloads from a hub-like HTTP server on 127.0.0.1 into the
//! huggingface_hub cache layout, works offline from that cache, and fails clearly otherwise.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clipd::hub::{HubError, HubSettings};
use clipd::model::Family;
use common::{load_cpu, model_dir};
use tempfile::TempDir;

/// The hub download as the model source asks for it: the model family's files.
fn fetch(id: &str, settings: &HubSettings) -> Result<PathBuf, HubError> {
    clipd::hub::fetch(id, settings, Family::hub_files())
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const WEIGHTS_SHA256: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// Serves tests/fixtures/models/tiny-a as the hub serves `test-org/tiny`: small files straight
/// from /resolve with the commit and an ETag, the weights through a redirect to a "CDN" path, as
/// for files in LFS. Counts the requests it answers.
struct Hub {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

fn start_hub() -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let dir = model_dir("tiny-a");
    let files: HashMap<&str, Vec<u8>> = [
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "model.safetensors",
    ]
    .into_iter()
    .map(|f| (f, std::fs::read(dir.join(f)).unwrap()))
    .collect();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap_or(0);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let mut words = request_line.split_whitespace();
            let head_only = words.next() == Some("HEAD");
            let path = words.next().unwrap_or("").to_owned();
            let prefix = "/test-org/tiny/resolve/main/";
            let (status, headers, body): (&str, Vec<String>, Vec<u8>) =
                match path.strip_prefix(prefix) {
                    Some("model.safetensors") => (
                        "302 Found",
                        vec![
                            format!("X-Repo-Commit: {COMMIT}"),
                            format!("X-Linked-Etag: \"{WEIGHTS_SHA256}\""),
                            format!("Location: /cdn/{WEIGHTS_SHA256}"),
                        ],
                        Vec::new(),
                    ),
                    Some(file) if files.contains_key(file) => (
                        "200 OK",
                        vec![
                            format!("X-Repo-Commit: {COMMIT}"),
                            format!("ETag: \"etag-{}\"", file.replace('.', "-")),
                        ],
                        files[file].clone(),
                    ),
                    _ if path == format!("/cdn/{WEIGHTS_SHA256}") => {
                        ("200 OK", Vec::new(), files["model.safetensors"].clone())
                    }
                    _ => (
                        "404 Not Found",
                        Vec::new(),
                        b"Repository not found".to_vec(),
                    ),
                };
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            if !head_only {
                let _ = stream.write_all(&body);
            }
        }
    });
    Hub { endpoint, requests }
}

/// A path that does not exist yet, for a cache, in a temporary folder (removed when dropped).
fn temp_cache(tag: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("clipd-hub-{tag}-"))
        .tempdir()
        .unwrap();
    let cache = dir.path().join("cache");
    (dir, cache)
}

fn settings(endpoint: &str, cache: &Path, offline: bool) -> HubSettings {
    HubSettings {
        endpoint: endpoint.to_owned(),
        cache: cache.to_owned(),
        offline,
        token: None,
    }
}

fn embed(dir: &Path) -> Vec<f32> {
    load_cpu(dir)
        .embed_texts(&["a photo of a cat"])
        .unwrap()
        .remove(0)
        .values
}

#[test]
fn a_hub_model_is_downloaded_into_the_hub_cache_layout_and_then_works_offline() {
    let hub = start_hub();
    let (_dir, cache) = temp_cache("download");
    let dir = fetch("test-org/tiny", &settings(&hub.endpoint, &cache, false)).unwrap();
    let repo = cache.join("models--test-org--tiny");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(repo.join("blobs").join(WEIGHTS_SHA256).is_file());
    assert_eq!(
        std::fs::read_link(dir.join("model.safetensors")).unwrap(),
        PathBuf::from("../../blobs").join(WEIGHTS_SHA256)
    );
    assert_eq!(embed(&dir), embed(&model_dir("tiny-a")));

    let before = hub.requests.load(Ordering::SeqCst);
    let offline = fetch("test-org/tiny", &settings(&hub.endpoint, &cache, true)).unwrap();
    assert_eq!(offline, dir);
    assert_eq!(
        hub.requests.load(Ordering::SeqCst),
        before,
        "offline mode made requests"
    );

    // The hub unreachable: what is cached is used.
    let unreachable = fetch(
        "test-org/tiny",
        &settings("http://127.0.0.1:9", &cache, false),
    )
    .unwrap();
    assert_eq!(unreachable, dir);
}

#[test]
fn offline_without_a_cached_copy_is_a_clear_error() {
    let (_dir, cache) = temp_cache("offline");
    let error = fetch(
        "test-org/tiny",
        &settings("http://127.0.0.1:9", &cache, true),
    )
    .unwrap_err();
    assert!(matches!(error, HubError::NotCached { .. }), "{error:?}");
    assert!(error.to_string().contains("HF_HUB_OFFLINE"), "{error}");
}

#[test]
fn an_unknown_repository_is_a_not_found_error_with_a_hint() {
    let hub = start_hub();
    let (_dir, cache) = temp_cache("missing");
    let error = fetch("test-org/nope", &settings(&hub.endpoint, &cache, false)).unwrap_err();
    assert!(
        matches!(error, HubError::Status { status: 404, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("test-org/nope"), "{error}");
}

#[test]
fn the_cli_takes_a_hub_id_and_honours_hf_endpoint_and_hf_home() {
    let hub = start_hub();
    let (_dir, home) = temp_cache("cli");
    let run = |offline: &str| {
        Command::new(env!("CARGO_BIN_EXE_clipd"))
            .args([
                "embed",
                "--model",
                "test-org/tiny",
                "--device",
                "cpu",
                "--text",
                "a cat",
            ])
            .env("HF_ENDPOINT", &hub.endpoint)
            .env("HF_HOME", &home)
            .env("HF_HUB_OFFLINE", offline)
            .output()
            .unwrap()
    };
    let online = run("0");
    assert!(
        online.status.success(),
        "{}",
        String::from_utf8_lossy(&online.stderr)
    );
    assert!(home.join("hub/models--test-org--tiny/refs/main").is_file());
    let offline = run("1");
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert_eq!(online.stdout, offline.stdout);
}
