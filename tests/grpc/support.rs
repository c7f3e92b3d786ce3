//! A real server on 127.0.0.1:0 with a fixture checkpoint, and a real client.

use std::time::Duration;

use clipd::config::Settings;
use clipd::grpc::pb::clip_client::ClipClient;
use clipd::grpc::pb::{self, input::Kind};
use clipd::server::RunningServer;
use tonic::transport::Channel;

use crate::common;

pub fn settings(model: &str) -> Settings {
    let mut settings = Settings::default();
    settings.server.grpc_addr = ([127, 0, 0, 1], 0).into();
    settings.model.source = Some(common::model_dir(model));
    settings.index.data_dir = scratch_dir("data");
    settings.metrics.addr = ([127, 0, 0, 1], 0).into();
    settings
}

/// A new, empty directory under the system's temporary directory.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("clipd-grpc-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct TestServer {
    pub server: RunningServer,
    pub client: ClipClient<Channel>,
}

impl TestServer {
    pub async fn start(settings: Settings) -> Self {
        let mut server = RunningServer::start(settings, clipd::config::locations_from_env())
            .await
            .expect("start the server");
        server.ready().await.expect("load the model");
        let client = ClipClient::new(channel(&server).await).max_decoding_message_size(usize::MAX);
        Self { server, client }
    }

    pub fn stats(&self) -> clipd::engine::StatsSnapshot {
        self.server.engine().expect("loaded").stats()
    }

    /// Polls the engine's counters until `done` holds (the engine updates them after replying).
    pub async fn wait_for_stats(&self, done: impl Fn(&clipd::engine::StatsSnapshot) -> bool) {
        for _ in 0..500 {
            if done(&self.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the counters never got there: {:?}", self.stats());
    }
}

pub async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub fn text(text: &str) -> pb::Input {
    pb::Input {
        kind: Some(Kind::Text(text.to_owned())),
    }
}

pub fn image_bytes(bytes: Vec<u8>) -> pb::Input {
    pb::Input {
        kind: Some(Kind::Image(bytes.into())),
    }
}

pub fn image(name: &str) -> pb::Input {
    image_bytes(std::fs::read(common::image_path(name)).unwrap())
}

pub fn request(inputs: Vec<pb::Input>) -> pb::EmbedRequest {
    pb::EmbedRequest { inputs }
}

/// A request with a deadline, as a client library sets it (the grpc-timeout header).
pub fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

pub async fn embed(client: &mut ClipClient<Channel>, inputs: Vec<pb::Input>) -> pb::EmbedResponse {
    client
        .embed(request(inputs))
        .await
        .expect("embed")
        .into_inner()
}

pub async fn embed_err(client: &mut ClipClient<Channel>, inputs: Vec<pb::Input>) -> tonic::Status {
    client
        .embed(request(inputs))
        .await
        .expect_err("the request should fail")
}

pub const IMAGES: [&str; 4] = [
    "rgb_640x480.png",
    "q90_444_320x240.jpg",
    "lossy_300x300.webp",
    "animated_160x120.gif",
];

pub const TEXTS: [&str; 4] = [
    "a photo of a red circle.",
    "a green star on a black background",
    "",
    "the quick brown fox jumps over the lazy dog",
];

/// An EmbedStream that sends `messages` and ends.
pub async fn open_stream(
    client: &mut ClipClient<Channel>,
    messages: Vec<pb::EmbedRequest>,
) -> tonic::Streaming<pb::EmbedResponse> {
    client
        .embed_stream(tokio_stream::iter(messages))
        .await
        .expect("open the stream")
        .into_inner()
}

/// Starts `clipd serve` as `command` says with `command`'s environment and returns
/// the child and the address it logs; its log is drained so that it never blocks.
pub fn spawn_serve(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run clipd serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("clipd serve exited early").unwrap();
        if let Some((_, addr)) = line.split_once("serving addr=") {
            break addr.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// `clipd serve` on any free port of 127.0.0.1.
pub fn serve_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_clipd"));
    command.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    command
}
