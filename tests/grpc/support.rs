//! A real server on 127.0.0.1:0 with a fixture checkpoint, and a real client.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use clipd::config::Settings;
use clipd::grpc::pb::clip_client::ClipClient;
use clipd::grpc::pb::collections_client::CollectionsClient;
use clipd::grpc::pb::{self, input::Kind};
use clipd::server::RunningServer;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;

use crate::common;

/// Server settings for a test: the fixture checkpoint `model`, any free port of 127.0.0.1, and a
/// data directory of their own (read and written through `Deref`).
pub fn settings(model: &str) -> TestSettings {
    let data_dir = scratch_dir("data");
    let mut settings = Settings::default();
    settings.server.grpc_addr = ([127, 0, 0, 1], 0).into();
    settings.model.source = Some(common::model_dir(model));
    settings.index.data_dir = data_dir.path().to_owned();
    settings.metrics.addr = ([127, 0, 0, 1], 0).into();
    TestSettings {
        settings,
        data_dir: Arc::new(data_dir),
    }
}

/// Settings and the temporary data directory they name, which is removed once every clone of
/// them and every `TestServer` started with them is dropped.
#[derive(Clone)]
pub struct TestSettings {
    settings: Settings,
    data_dir: Arc<TempDir>,
}

impl TestSettings {
    /// A copy of the settings, for `RunningServer::start`: keep `self` until that server is gone.
    pub fn settings(&self) -> Settings {
        self.settings.clone()
    }
}

impl Deref for TestSettings {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl DerefMut for TestSettings {
    fn deref_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

/// A new, empty directory under the system's temporary directory, removed when dropped.
pub fn scratch_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("clipd-grpc-{tag}-"))
        .tempdir()
        .unwrap()
}

pub struct TestServer {
    pub server: RunningServer,
    pub client: ClipClient<Channel>,
    /// Dropped after the server (fields drop in order).
    _data_dir: Arc<TempDir>,
}

impl TestServer {
    pub async fn start(settings: TestSettings) -> Self {
        let mut server =
            RunningServer::start(settings.settings(), clipd::config::locations_from_env())
                .await
                .expect("start the server");
        server.ready().await.expect("load the model");
        let client = ClipClient::new(channel(&server).await).max_decoding_message_size(usize::MAX);
        Self {
            server,
            client,
            _data_dir: settings.data_dir,
        }
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
    connect(&server.addr().to_string()).await
}

/// A plain-text channel to `addr` (host:port).
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn collections(server: &TestServer) -> CollectionsClient<Channel> {
    CollectionsClient::new(channel(&server.server).await).max_decoding_message_size(usize::MAX)
}

/// Creates the collection `name` with the default settings.
pub async fn create(c: &mut CollectionsClient<Channel>, name: &str) -> pb::CollectionInfo {
    c.create_collection(pb::CreateCollectionRequest {
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("create")
    .into_inner()
    .collection
    .unwrap()
}

/// What GetCollection says of the collection `name`.
pub async fn info(c: &mut CollectionsClient<Channel>, name: &str) -> pb::CollectionInfo {
    c.get_collection(pb::GetCollectionRequest { name: name.into() })
        .await
        .expect("get collection")
        .into_inner()
        .collection
        .unwrap()
}

pub async fn model_info(client: &mut ClipClient<Channel>) -> pb::ModelInfo {
    client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .expect("get model info")
        .into_inner()
}

/// Asserts that `result` is an error with `code` whose message contains `words`.
#[track_caller]
pub fn refused<T>(result: Result<T, tonic::Status>, code: Code, words: &str) {
    let Err(status) = result else {
        panic!("expected {code:?} with {words:?}")
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(words),
        "{:?} lacks {words:?}",
        status.message()
    );
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

/// Sends `clipd serve` SIGTERM: it must exit 0.
pub fn terminate(mut child: std::process::Child) {
    // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited for).
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM to clipd serve");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
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
