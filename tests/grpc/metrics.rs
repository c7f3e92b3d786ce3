//! GET /metrics, /livez and /readyz on the metrics port: the series a dashboard needs, valid by
//! `promtool check metrics`, readiness following the server's state.

use std::io::Write;
use std::process::{Command, Stdio};

use clipd::grpc::pb;

use crate::support::*;

/// (status code, body) of GET `path` on the server's metrics port.
async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", server.server.metrics_addr().unwrap());
    tokio::task::spawn_blocking(move || match ureq::get(&url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("GET {url}: {e}"),
    })
    .await
    .unwrap()
}

/// The value of the series with exactly this name and these labels (as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_the_traffic_and_pass_promtool() {
    let mut s = settings("tiny-a");
    s.server.max_message_bytes = s.limits.max_image_bytes;
    let mut server = TestServer::start(s).await;
    assert_eq!(get(&server, "/livez").await.0, 200);
    assert_eq!(get(&server, "/readyz").await.0, 200);

    embed(
        &mut server.client,
        vec![text("one"), image("rgb_64x64.png")],
    )
    .await;
    embed_err(&mut server.client, vec![pb::Input { kind: None }]).await;
    let big = pb::EmbedRequest {
        inputs: vec![image_bytes(vec![0; 30 << 20]); 1],
    };
    let refused = server.client.embed(big).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let mut collections = collections(&server).await;
    collections
        .create_collection(pb::CreateCollectionRequest {
            name: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    collections
        .upsert(pb::UpsertRequest {
            collection: "m".into(),
            items: vec![pb::Item {
                id: "a".into(),
                content: Some(pb::item::Content::Text("a cat".into())),
                metadata: Default::default(),
            }],
        })
        .await
        .unwrap();
    server
        .client
        .search(pb::SearchRequest {
            collection: "m".into(),
            query: Some(pb::search_request::Query::Text("a dog".into())),
            top_k: 1,
            ..Default::default()
        })
        .await
        .unwrap();

    // The same label set twice: embedded once, then found in the cache.
    for _ in 0..2 {
        let classify = pb::ClassifyRequest {
            inputs: vec![image("rgb_64x64.png")],
            labels: Some(pb::classify_request::Labels::LabelSet(pb::LabelSet {
                labels: vec!["metrics-cat".into(), "metrics-dog".into()],
                templates: vec!["{}".into()],
                template_set: 0,
            })),
            top_k: 1,
        };
        server.client.classify(classify).await.unwrap();
    }

    let (status, text) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    // Metrics are process-wide and other tests run alongside: lower bounds only.
    let at_least = |series: &str, n: f64| {
        let v = value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= n, "{series} = {v}");
    };
    at_least(
        r#"clipd_requests_total{rpc="clipd.v1.Clip/Embed",code="OK"}"#,
        1.0,
    );
    at_least(
        r#"clipd_requests_total{rpc="clipd.v1.Clip/Embed",code="InvalidArgument"}"#,
        2.0,
    );
    at_least(
        r#"clipd_requests_total{rpc="clipd.v1.Clip/Search",code="OK"}"#,
        1.0,
    );
    at_least(
        r#"clipd_requests_total{rpc="clipd.v1.Collections/Upsert",code="OK"}"#,
        1.0,
    );
    at_least(
        r#"clipd_request_duration_seconds_count{rpc="clipd.v1.Clip/Embed"}"#,
        3.0,
    );
    at_least(r#"clipd_batch_size_count{modality="image"}"#, 1.0);
    at_least(r#"clipd_model_batch_seconds_count{modality="text"}"#, 1.0);
    at_least(r#"clipd_queue_wait_seconds_count{modality="text"}"#, 2.0);
    at_least("clipd_search_duration_seconds_count", 1.0);
    at_least("clipd_index_items", 1.0);
    at_least("clipd_collections", 1.0);
    at_least("clipd_classify_cache_misses_total", 2.0);
    at_least("clipd_classify_cache_hits_total", 2.0);
    // Counters that start at 0, so that rate() and alerts see zeros rather than gaps.
    for series in [
        "clipd_inputs_rejected_total",
        "clipd_inputs_expired_total",
        "clipd_inputs_cancelled_total",
        "clipd_inputs_failed_total",
    ] {
        assert!(value(&text, series).is_some(), "no {series} in\n{text}");
    }
    assert!(value(&text, "clipd_queue_depth").is_some(), "{text}");
    assert!(text.contains("clipd_build_info{version=\""), "{text}");
    assert!(text.contains("model=\"tiny-a\""), "{text}");
    for described in [
        "clipd_requests_total",
        "clipd_request_duration_seconds",
        "clipd_queue_wait_seconds",
        "clipd_model_batch_seconds",
        "clipd_batch_size",
        "clipd_queue_depth",
        "clipd_inputs_rejected_total",
        "clipd_inputs_expired_total",
        "clipd_inputs_cancelled_total",
        "clipd_inputs_failed_total",
        "clipd_classify_cache_hits_total",
        "clipd_classify_cache_misses_total",
        "clipd_collections",
        "clipd_index_items",
        "clipd_index_tombstones",
        "clipd_search_duration_seconds",
        "clipd_build_info",
    ] {
        assert!(
            text.contains(&format!("# HELP {described} ")),
            "{described}\n{text}"
        );
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup-tools.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let addr = server.server.metrics_addr().unwrap();
    let TestServer { server, .. } = server;
    let stopping = tokio::spawn(server.shutdown());
    stopping.await.unwrap().unwrap();
    let gone = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{addr}/livez")).call().is_err()
    })
    .await
    .unwrap();
    assert!(gone, "the metrics port closes at exit");
}
