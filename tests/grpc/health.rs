//! Health transitions, reflection, and the `clipd serve` process.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clipd::server::RunningServer;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::admission::slow_batching;
use crate::common;
use crate::support::*;

async fn status(channel: Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

/// A checkpoint whose config.json is a FIFO: loading blocks on it until the test writes it.
struct BlockedCheckpoint {
    dir: TempDir,
}

impl BlockedCheckpoint {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("clipd-blocked-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let source = common::model_dir("tiny-a");
        for file in ["model.safetensors", "preprocessor_config.json"] {
            std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
        }
        std::fs::copy(
            common::fixtures().join("models/tokenizer/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let made = Command::new("mkfifo")
            .arg(dir.path().join("config.json"))
            .status()
            .unwrap();
        assert!(made.success());
        Self { dir }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Lets the loader read config.json.
    fn release(&self) {
        let config = std::fs::read(common::model_dir("tiny-a").join("config.json")).unwrap();
        let fifo = self.dir().join("config.json");
        std::thread::spawn(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(fifo)
                .unwrap()
                .write_all(&config)
                .unwrap();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_until_the_model_is_loaded() {
    let checkpoint = BlockedCheckpoint::new();
    let mut s = settings("tiny-a");
    s.model.source = Some(checkpoint.dir().to_owned());
    let mut server = RunningServer::start(s.settings(), clipd::config::locations_from_env())
        .await
        .unwrap();
    let channel = channel(&server).await;
    for service in ["", "clipd.v1.Clip"] {
        assert_eq!(
            status(channel.clone(), service).await,
            ServingStatus::NotServing
        );
    }
    let mut client = clipd::grpc::pb::clip_client::ClipClient::new(channel.clone());
    let refused = embed_err(&mut client, vec![text("too early")]).await;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    checkpoint.release();
    server.ready().await.unwrap();
    for service in ["", "clipd.v1.Clip"] {
        // The health reporter is updated just after the engine is published.
        let mut now = status(channel.clone(), service).await;
        for _ in 0..100 {
            if now == ServingStatus::Serving {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            now = status(channel.clone(), service).await;
        }
        assert_eq!(now, ServingStatus::Serving, "{service:?}");
    }
    embed(&mut client, vec![text("now")]).await;
    server.shutdown().await.unwrap();
}

/// A forward pass longer than the stall limit turns health NOT_SERVING until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_model_is_not_serving() {
    let mut s = settings("tiny-a");
    s.batching.stall_timeout_ms = 1;
    s.batching.max_batch_size = 256;
    s.limits.max_inputs_per_request = 256;
    let server = TestServer::start(s).await;
    let channel = channel(&server.server).await;
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "clipd.v1.Clip".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(update)) = watch.message().await {
            log.lock().unwrap().push(update.status());
        }
    });
    let long = "a long caption of many words ".repeat(20);
    let statuses = || seen.lock().unwrap().clone();
    for _ in 0..5 {
        embed(&mut server.client.clone(), vec![text(&long); 256]).await;
        if statuses().contains(&ServingStatus::NotServing) {
            break;
        }
    }
    assert_eq!(statuses().first(), Some(&ServingStatus::Serving));
    assert!(
        statuses().contains(&ServingStatus::NotServing),
        "{:?}",
        statuses()
    );
    // Serving again once the forward pass is over.
    for _ in 0..500 {
        if statuses().last() == Some(&ServingStatus::Serving) && statuses().len() > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        statuses().last(),
        Some(&ServingStatus::Serving),
        "{:?}",
        statuses()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_in_both_versions() {
    use tokio_stream::StreamExt;
    let server = TestServer::start(settings("tiny-b")).await;
    let channel = channel(&server.server).await;

    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("{response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in ["clipd.v1.Clip", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }

    use tonic_reflection::pb::v1alpha;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "clipd.v1.Clip".into(),
            ),
        ),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );
}

/// The binary: serves on the address it logs, and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clipd_serve_runs_and_stops_on_sigterm() {
    let data = scratch_dir("serve");
    let (child, addr) = spawn_serve(
        serve_command()
            .arg("--model")
            .arg(common::model_dir("tiny-b"))
            .env("CLIPD__BATCHING__MAX_DELAY_MS", "1")
            .env("CLIPD__INDEX__DATA_DIR", data.path()),
    );
    let channel = connect(&addr).await;
    let mut client = clipd::grpc::pb::clip_client::ClipClient::new(channel.clone());
    let response = embed(&mut client, vec![text("hello"), image("rgb_64x64.png")]).await;
    assert_eq!(response.model, "tiny-b");
    assert_eq!(status(channel, "").await, ServingStatus::Serving);
    terminate(child);
}

/// Shutdown: health turns NOT_SERVING, a new request gets UNAVAILABLE, the queued request still
/// gets its answer, and the server stops within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_queued_work_and_refuses_new_requests() {
    let mut s = slow_batching();
    s.server.shutdown_grace_ms = 20_000;
    // The queued request must still be waiting for its batch when the refusal below comes back:
    // on a loaded machine, 1.5 s was not always enough for that.
    s.batching.max_delay_ms = 5_000;
    let server = TestServer::start(s).await;
    let channel = channel(&server.server).await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: "clipd.v1.Clip".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let mut client = server.client.clone();
    let queued = tokio::spawn(async move { embed(&mut client, vec![text("queued")]).await });
    let engine = server.server.engine().unwrap().clone();
    while engine.queued_inputs() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let TestServer {
        server, mut client, ..
    } = server;
    let stopping = tokio::spawn(server.shutdown());
    let update = watch.message().await.unwrap().unwrap();
    assert_eq!(update.status(), ServingStatus::NotServing);
    // An open Watch would hold the graceful stop until the grace period: close it.
    drop(watch);
    // Refused by the server (UNAVAILABLE), or, once the connection is going away, by the
    // transport: tonic's client then reports the connection's end, as CANCELLED "connection
    // closed" or INTERNAL "h2 protocol error" (GOAWAY), with the transport error as its source.
    let refused = embed_err(&mut client, vec![text("too late")]).await;
    let by_transport =
        std::error::Error::source(&refused).is_some_and(|e| e.is::<tonic::transport::Error>());
    assert!(
        refused.code() == tonic::Code::Unavailable || by_transport,
        "{refused:?}"
    );
    assert!(
        !queued.is_finished(),
        "the queued request was still waiting for its batch"
    );
    assert_eq!(queued.await.unwrap().embeddings.len(), 1);
    stopping.await.unwrap().unwrap();
}
