//! Collections and Search: the demo model's pictures found by text and by image, writes,
//! filters, restarts, a crash, concurrency and bad requests.

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use clipd::demo::eval::png;
use clipd::demo::shapes::{class_labels, Scene};
use clipd::grpc::pb::collections_client::CollectionsClient;
use clipd::grpc::pb::{self, item::Content, search_request::Query};
use clipd::rng::SplitMix64;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::*;

fn demo_settings() -> TestSettings {
    let mut s = settings("tiny-a");
    s.model.source = None;
    // Small test collections walk the graph like large ones do.
    s.index.exact_scan_max_items = 0;
    s
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn item(id: &str, content: Content, pairs: &[(&str, &str)]) -> pb::Item {
    pb::Item {
        id: id.into(),
        content: Some(content),
        metadata: meta(pairs),
    }
}

fn vector(values: Vec<f32>) -> Content {
    Content::Vector(pb::Vector { values })
}

async fn upsert(
    c: &mut CollectionsClient<Channel>,
    collection: &str,
    items: Vec<pb::Item>,
) -> Result<pb::UpsertResponse, tonic::Status> {
    c.upsert(pb::UpsertRequest {
        collection: collection.into(),
        items,
    })
    .await
    .map(tonic::Response::into_inner)
}

fn search_request(
    collection: &str,
    query: Query,
    top_k: u32,
    filter: &[(&str, &str)],
) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: collection.into(),
        query: Some(query),
        top_k,
        filter: meta(filter),
        ef_search: 0,
        ..Default::default()
    }
}

async fn search(
    client: &mut clipd::grpc::pb::clip_client::ClipClient<Channel>,
    request: pb::SearchRequest,
) -> Result<pb::SearchResponse, tonic::Status> {
    client
        .search(request)
        .await
        .map(tonic::Response::into_inner)
}

fn ids(response: &pb::SearchResponse) -> Vec<&str> {
    response.hits.iter().map(|h| h.id.as_str()).collect()
}

/// `n` scenes of each of the 24 colour x shape classes, from `seed`, class by class.
fn per_class(seed: u64, n: usize) -> Vec<Vec<Scene>> {
    let mut rng = SplitMix64::new(seed);
    let mut found: Vec<Vec<Scene>> = vec![Vec::new(); 24];
    while found.iter().any(|scenes| scenes.len() < n) {
        let scene = Scene::random(&mut rng);
        let class = scene.class();
        if found[class].len() < n {
            found[class].push(scene);
        }
    }
    found
}

/// A random vector with `dim` values (the server normalises it).
fn random_vector(rng: &mut SplitMix64, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.unit() as f32 - 0.5).collect()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// Text finds pictures, a picture finds pictures of its class, a picture finds its caption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_model_finds_pictures_by_text_and_by_image() {
    let mut server = TestServer::start(demo_settings()).await;
    let mut c = collections(&server).await;
    create(&mut c, "shapes").await;
    let labels = class_labels();
    let mut items = Vec::new();
    for (scenes, label) in per_class(1, 3).iter().zip(&labels) {
        for (n, scene) in scenes.iter().enumerate() {
            let picture = Content::Image(png(scene, 96).into());
            let pairs = [("kind", "picture"), ("label", label.as_str())];
            items.push(item(&format!("picture/{label}/{n}"), picture, &pairs));
        }
        let caption = Content::Text(format!("a photo of a {label}."));
        let pairs = [("kind", "caption"), ("label", label.as_str())];
        items.push(item(&format!("caption/{label}"), caption, &pairs));
    }
    let written = upsert(&mut c, "shapes", items).await.unwrap();
    assert_eq!((written.inserted, written.replaced), (96, 0));
    assert!(written.timing.is_some());
    assert_eq!(info(&mut c, "shapes").await.count, 96);

    let (mut by_text, mut by_image, mut to_caption, mut unfiltered) = (0, 0, 0, 0);
    let top_label = |found: &pb::SearchResponse, kind: &str| {
        assert!(found.hits.iter().all(|h| h.metadata["kind"] == kind));
        found.hits[0].metadata["label"].clone()
    };
    for (scenes, label) in per_class(2, 1).iter().zip(&labels) {
        let q = Query::Text(format!("a {label}"));
        let request = search_request("shapes", q, 3, &[("kind", "picture")]);
        let found = search(&mut server.client, request).await.unwrap();
        assert_eq!(found.hits.len(), 3);
        by_text += usize::from(&top_label(&found, "picture") == label);
        // Filters this wide are answered by a scan: without one, the graph answers.
        let request = search_request("shapes", Query::Text(format!("a {label}")), 3, &[]);
        let found = search(&mut server.client, request).await.unwrap();
        assert!(!found.exact, "an unfiltered search walks the graph");
        unfiltered += usize::from(&found.hits[0].metadata["label"] == label);

        let q = || Query::Image(png(&scenes[0], 80).into());
        let request = search_request("shapes", q(), 1, &[("kind", "picture")]);
        let found = search(&mut server.client, request).await.unwrap();
        by_image += usize::from(&top_label(&found, "picture") == label);
        let request = search_request("shapes", q(), 1, &[("kind", "caption")]);
        let found = search(&mut server.client, request).await.unwrap();
        to_caption += usize::from(&top_label(&found, "caption") == label);
    }
    // The demo model classifies about 9 in 10 fresh pictures right (a small model); a broken
    // search path would score near chance, 1 in 24.
    assert!(by_text >= 20, "text -> picture: {by_text}/24 right");
    assert!(unfiltered >= 20, "text -> anything: {unfiltered}/24 right");
    assert!(by_image >= 20, "picture -> picture: {by_image}/24 right");
    assert!(
        to_caption >= 20,
        "picture -> caption: {to_caption}/24 right"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_replaces_delete_removes_and_filters_restrict() {
    let mut server = TestServer::start(demo_settings()).await;
    let mut c = collections(&server).await;
    let dim = create(&mut c, "v").await.dim as usize;
    let mut rng = SplitMix64::new(3);
    let vectors: Vec<Vec<f32>> = (0..40).map(|_| random_vector(&mut rng, dim)).collect();
    let items = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let parity = if i % 2 == 0 { "even" } else { "odd" };
            item(
                &format!("{i}"),
                vector(v.clone()),
                &[("parity", parity), ("tens", &(i / 10).to_string())],
            )
        })
        .collect();
    upsert(&mut c, "v", items).await.unwrap();
    let by_vector = |v: &Vec<f32>, top_k, filter: &[(&str, &str)]| {
        search_request(
            "v",
            Query::Vector(pb::Vector { values: v.clone() }),
            top_k,
            filter,
        )
    };
    let found = search(&mut server.client, by_vector(&vectors[7], 5, &[]))
        .await
        .unwrap();
    assert_eq!(found.hits[0].id, "7");
    assert!(
        (found.hits[0].score - 1.0).abs() < 1e-5,
        "{}",
        found.hits[0].score
    );
    assert_eq!(
        found.hits[0].metadata,
        meta(&[("parity", "odd"), ("tens", "0")])
    );

    // Upsert replaces the vector and the metadata.
    let written = upsert(
        &mut c,
        "v",
        vec![item(
            "7",
            vector(vectors[30].clone()),
            &[("parity", "seven")],
        )],
    )
    .await
    .unwrap();
    assert_eq!((written.inserted, written.replaced), (0, 1));
    assert!(written.timing.is_none(), "nothing was embedded");
    let found = search(&mut server.client, by_vector(&vectors[30], 2, &[]))
        .await
        .unwrap();
    let mut top2 = ids(&found);
    top2.sort();
    assert_eq!(top2, ["30", "7"]);
    let got = c
        .get_items(pb::GetItemsRequest {
            collection: "v".into(),
            ids: vec!["7".into(), "nope".into(), "3".into()],
            with_vectors: true,
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(
        got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["7", "3"]
    );
    assert_eq!(got[0].metadata, meta(&[("parity", "seven")]));
    let Some(Content::Vector(stored)) = &got[0].content else {
        panic!("{got:?}")
    };
    let expected = normalised(&vectors[30]);
    assert!(stored
        .values
        .iter()
        .zip(&expected)
        .all(|(a, b)| (a - b).abs() < 1e-6));

    // Delete removes; deleting again counts nothing.
    let delete = || pb::DeleteRequest {
        collection: "v".into(),
        ids: vec!["30".into(), "31".into(), "never".into()],
        ..Default::default()
    };
    assert_eq!(c.delete(delete()).await.unwrap().into_inner().deleted, 2);
    assert_eq!(c.delete(delete()).await.unwrap().into_inner().deleted, 0);
    let found = search(&mut server.client, by_vector(&vectors[30], 40, &[]))
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 38);
    assert_eq!(found.hits[0].id, "7");
    assert!(!ids(&found).contains(&"30") && !ids(&found).contains(&"31"));
    let described = info(&mut c, "v").await;
    assert_eq!((described.count, described.tombstones), (38, 3));

    // Filters: every pair must match, and top_k still fills up.
    let found = search(
        &mut server.client,
        by_vector(&vectors[0], 4, &[("parity", "even"), ("tens", "2")]),
    )
    .await
    .unwrap();
    assert_eq!(found.hits.len(), 4);
    for hit in &found.hits {
        let i: usize = hit.id.parse().unwrap();
        assert!(i.is_multiple_of(2) && i / 10 == 2, "{}", hit.id);
    }
    let found = search(
        &mut server.client,
        by_vector(&vectors[0], 4, &[("parity", "blue")]),
    )
    .await
    .unwrap();
    assert!(found.hits.is_empty());

    // By id: the item itself is left out.
    let found = search(
        &mut server.client,
        search_request("v", Query::Id("12".into()), 3, &[]),
    )
    .await
    .unwrap();
    assert_eq!(found.hits.len(), 3);
    assert!(!ids(&found).contains(&"12"));
    let exact = search(&mut server.client, by_vector(&vectors[12], 4, &[]))
        .await
        .unwrap();
    assert_eq!(ids(&found), ids(&exact)[1..]);
}

/// Everything written comes back after a restart: snapshot at shutdown, and log replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_everything() {
    let s = demo_settings();
    let server = TestServer::start(s.clone()).await;
    let mut c = collections(&server).await;
    let dim = create(&mut c, "kept").await.dim as usize;
    c.create_collection(pb::CreateCollectionRequest {
        name: "tuned".into(),
        m: 8,
        ef_construction: 50,
        ef_search: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rng = SplitMix64::new(4);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| random_vector(&mut rng, dim)).collect();
    for chunk in vectors.chunks(100).enumerate() {
        let items = chunk
            .1
            .iter()
            .enumerate()
            .map(|(i, v)| {
                item(
                    &format!("{}", chunk.0 * 100 + i),
                    vector(v.clone()),
                    &[("n", &i.to_string())],
                )
            })
            .collect();
        upsert(&mut c, "kept", items).await.unwrap();
    }
    c.delete(pb::DeleteRequest {
        collection: "kept".into(),
        ids: vec!["5".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let query = |v: &Vec<f32>| {
        search_request(
            "kept",
            Query::Vector(pb::Vector { values: v.clone() }),
            10,
            &[],
        )
    };
    let mut client = server.client.clone();
    let before = search(&mut client, query(&vectors[9])).await.unwrap();
    let described = info(&mut c, "kept").await;
    assert_eq!(described.unsnapshotted_writes, 4);
    server.server.shutdown().await.unwrap();

    let mut server = TestServer::start(s.clone()).await;
    let mut c = collections(&server).await;
    let after = search(&mut server.client, query(&vectors[9]))
        .await
        .unwrap();
    assert_eq!(ids(&after), ids(&before));
    let reopened = info(&mut c, "kept").await;
    assert_eq!(reopened.count, 299);
    assert_eq!(reopened.unsnapshotted_writes, 0, "snapshotted at shutdown");
    let tuned = info(&mut c, "tuned").await;
    assert_eq!(
        (tuned.m, tuned.ef_construction, tuned.ef_search),
        (8, 50, 20)
    );

    // Written after the snapshot and not snapshotted (the server is dropped, not shut down):
    // replayed from the log.
    upsert(
        &mut c,
        "kept",
        vec![item("late", vector(vectors[0].clone()), &[])],
    )
    .await
    .unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut server = TestServer::start(s).await;
    let mut c = collections(&server).await;
    let replayed = info(&mut c, "kept").await;
    assert_eq!((replayed.count, replayed.unsnapshotted_writes), (300, 1));
    let found = search(&mut server.client, query(&vectors[0]))
        .await
        .unwrap();
    let mut top2 = ids(&found)[..2].to_vec();
    top2.sort();
    assert_eq!(top2, ["0", "late"]);
}

/// `clipd serve` with a data directory, snapshotting every second.
fn spawn_serve_on(data: &std::path::Path) -> (Child, String) {
    spawn_serve(
        serve_command()
            .env("CLIPD__INDEX__DATA_DIR", data)
            .env("CLIPD__INDEX__SNAPSHOT_INTERVAL_S", "1")
            .env("CLIPD__BATCHING__MAX_DELAY_MS", "1"),
    )
}

/// SIGKILL in the middle of a stream of upserts (and of periodic snapshots): after a restart,
/// every acknowledged item is there with its vector, and the collection still takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_every_acknowledged_write() {
    let data = scratch_dir("killed");
    let (mut child, addr) = spawn_serve_on(data.path());
    let channel = connect(&addr).await;
    let mut c = CollectionsClient::new(channel.clone());
    let dim = create(&mut c, "crash").await.dim as usize;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Vec<f32>)>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (mut c, acked) = (c.clone(), acked.clone());
            tokio::spawn(async move {
                let mut rng = SplitMix64::new(w);
                for batch in 0.. {
                    let items: Vec<(String, Vec<f32>)> = (0..8)
                        .map(|i| (format!("w{w}-b{batch}-{i}"), random_vector(&mut rng, dim)))
                        .collect();
                    let request = items
                        .iter()
                        .map(|(id, v)| item(id, vector(v.clone()), &[("writer", &w.to_string())]))
                        .collect();
                    if upsert(&mut c, "crash", request).await.is_err() {
                        return;
                    }
                    acked.lock().unwrap().extend(items);
                }
            })
        })
        .collect();
    // Long enough for a periodic snapshot (every second) to land among the writes.
    while acked.lock().unwrap().len() < 4000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    let (child, addr) = spawn_serve_on(data.path());
    let channel = connect(&addr).await;
    let mut c = CollectionsClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
    let count = info(&mut c, "crash").await.count as usize;
    assert!(
        count >= acked.len(),
        "{count} items, {} acknowledged",
        acked.len()
    );
    assert!(
        count <= acked.len() + 4 * 8,
        "at most one unacknowledged batch per writer"
    );
    for chunk in acked.chunks(1000) {
        let got = c
            .get_items(pb::GetItemsRequest {
                collection: "crash".into(),
                ids: chunk.iter().map(|(id, _)| id.clone()).collect(),
                with_vectors: true,
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(got.len(), chunk.len(), "acknowledged items are missing");
        for (got, (id, v)) in got.iter().zip(chunk) {
            assert_eq!(&got.id, id);
            let Some(Content::Vector(stored)) = &got.content else {
                panic!()
            };
            let expected = normalised(v);
            assert!(
                stored
                    .values
                    .iter()
                    .zip(&expected)
                    .all(|(a, b)| (a - b).abs() < 1e-6),
                "{id}"
            );
        }
    }
    let mut client = clipd::grpc::pb::clip_client::ClipClient::new(channel);
    let (id, v) = &acked[acked.len() / 2];
    let found = search(
        &mut client,
        search_request(
            "crash",
            Query::Vector(pb::Vector { values: v.clone() }),
            1,
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(&found.hits[0].id, id);
    upsert(&mut c, "crash", vec![item("after", vector(v.clone()), &[])])
        .await
        .unwrap();
    terminate(child);
    data.close().unwrap();
}

/// Searches running while items are replaced and deleted, through background rebuilds: every
/// search answers, the untouched items are always found, removed ones never; and some searches
/// are seen to start and end within one rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_go_on_during_writes_and_rebuilds() {
    let mut s = demo_settings();
    s.index.rebuild_min_tombstones = 100;
    s.index.rebuild_tombstone_ratio = 0.1;
    let server = TestServer::start(s).await;
    let mut c = collections(&server).await;
    let dim = create(&mut c, "busy").await.dim as usize;
    let mut rng = SplitMix64::new(5);
    let anchors: Vec<Vec<f32>> = (0..20).map(|_| random_vector(&mut rng, dim)).collect();
    let mut items: Vec<pb::Item> = anchors
        .iter()
        .enumerate()
        .map(|(i, v)| item(&format!("anchor-{i}"), vector(v.clone()), &[]))
        .collect();
    items.extend((0..200).map(|i| {
        item(
            &format!("churn-{i}"),
            vector(random_vector(&mut rng, dim)),
            &[],
        )
    }));
    upsert(&mut c, "busy", items).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleted_rounds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let during_rebuilds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let searchers: Vec<_> = (0..3)
        .map(|t| {
            let (mut client, anchors, stop) =
                (server.client.clone(), anchors.clone(), stop.clone());
            let (deleted_rounds, during_rebuilds) =
                (deleted_rounds.clone(), during_rebuilds.clone());
            let mut c = c.clone();
            tokio::spawn(async move {
                let mut searches = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let before = info(&mut c, "busy").await;
                    let i = (searches * 7 + t) % anchors.len();
                    let q = Query::Vector(pb::Vector {
                        values: anchors[i].clone(),
                    });
                    let gone = deleted_rounds.load(std::sync::atomic::Ordering::SeqCst);
                    let found = search(&mut client, search_request("busy", q, 5, &[]))
                        .await
                        .unwrap();
                    assert_eq!(found.hits[0].id, format!("anchor-{i}"));
                    // Items of rounds whose Delete was acknowledged before this search began
                    // are gone.
                    for hit in &found.hits {
                        if let Some(rest) = hit.id.strip_prefix("deleted-") {
                            let round: usize = rest.split('-').next().unwrap().parse().unwrap();
                            assert!(round >= gone, "{} found after its deletion", hit.id);
                        }
                    }
                    let after = info(&mut c, "busy").await;
                    if before.rebuilding && after.rebuilding && before.rebuilds == after.rebuilds {
                        during_rebuilds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    // Rebuilds of this small collection are quick: go on until a search is seen inside one.
    let mut round = 0;
    while round < 30
        || (during_rebuilds.load(std::sync::atomic::Ordering::Relaxed) == 0 && round < 1000)
    {
        let replaced = (0..50)
            .map(|i| {
                item(
                    &format!("churn-{}", (round * 50 + i) % 200),
                    vector(random_vector(&mut rng, dim)),
                    &[],
                )
            })
            .collect();
        upsert(&mut c, "busy", replaced).await.unwrap();
        let doomed: Vec<pb::Item> = (0..10)
            .map(|i| {
                item(
                    &format!("deleted-{round}-{i}"),
                    vector(random_vector(&mut rng, dim)),
                    &[],
                )
            })
            .collect();
        let ids = doomed.iter().map(|i| i.id.clone()).collect();
        upsert(&mut c, "busy", doomed).await.unwrap();
        c.delete(pb::DeleteRequest {
            collection: "busy".into(),
            ids,
            ..Default::default()
        })
        .await
        .unwrap();
        deleted_rounds.store(round + 1, std::sync::atomic::Ordering::SeqCst);
        round += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for searcher in searchers {
        assert!(searcher.await.unwrap() > 0);
    }
    let overlapped = during_rebuilds.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        overlapped > 0,
        "no search ran inside a rebuild in {round} rounds"
    );
    let described = info(&mut c, "busy").await;
    assert!(described.rebuilds > 0, "{described:?}");
    assert_eq!(described.count, 220);
    // 1,800 replacements and deletions went in: rebuilds dropped most of their tombstones.
    assert!(described.tombstones < 600, "{described:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_collection_and_search_requests_are_refused_clearly() {
    let mut s = demo_settings();
    s.index.max_top_k = 100;
    let mut server = TestServer::start(s).await;
    let mut c = collections(&server).await;
    let dim = create(&mut c, "good").await.dim as usize;
    let ok = vec![0.5; dim];
    upsert(&mut c, "good", vec![item("a", vector(ok.clone()), &[])])
        .await
        .unwrap();

    let create_named = |name: &str, m: u32| pb::CreateCollectionRequest {
        name: name.into(),
        m,
        ..Default::default()
    };
    refused(
        c.create_collection(create_named("good", 0)).await,
        Code::AlreadyExists,
        "exists",
    );
    for name in ["", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
        refused(
            c.create_collection(create_named(name, 0)).await,
            Code::InvalidArgument,
            "collection name",
        );
    }
    let huge_ef = pb::CreateCollectionRequest {
        ef_construction: u32::MAX,
        ..create_named("huge-ef", 0)
    };
    refused(
        c.create_collection(huge_ef).await,
        Code::InvalidArgument,
        "ef_construction is 4294967295",
    );
    refused(
        c.create_collection(create_named("big-m", 256)).await,
        Code::InvalidArgument,
        "m is 256",
    );
    refused(
        c.drop_collection(pb::DropCollectionRequest {
            name: "nope".into(),
        })
        .await,
        Code::NotFound,
        "no collection named \"nope\"",
    );
    refused(
        upsert(&mut c, "nope", vec![item("x", vector(ok.clone()), &[])]).await,
        Code::NotFound,
        "nope",
    );

    let bad_items: Vec<(Vec<pb::Item>, &str)> = vec![
        (vec![], "no items"),
        (
            vec![item("x", vector(vec![1.0; dim + 1]), &[])],
            "item 0: the vector has",
        ),
        (
            vec![
                item("x", vector(ok.clone()), &[]),
                item("y", vector(vec![f32::NAN; dim]), &[]),
            ],
            "item 1: the vector's value 0 is NaN",
        ),
        (
            vec![item("x", vector(vec![0.0; dim]), &[])],
            "cannot be normalised",
        ),
        (
            vec![item("", vector(ok.clone()), &[])],
            "item 0: the id is empty",
        ),
        (
            vec![
                item("x", vector(ok.clone()), &[]),
                item("x", vector(ok.clone()), &[]),
            ],
            "items 0 and 1 have the same id",
        ),
        (
            vec![pb::Item {
                id: "x".into(),
                content: None,
                metadata: HashMap::new(),
            }],
            "item 0 is empty",
        ),
        (
            vec![
                item("x", Content::Text("fine".into()), &[]),
                item("y", Content::Image(b"not an image".to_vec().into()), &[]),
            ],
            "item 1: unsupported image format",
        ),
        (
            vec![item("x", vector(ok.clone()), &[("", "v")])],
            "metadata key is empty",
        ),
        (
            (0..300)
                .map(|i| item(&i.to_string(), Content::Text("a cat".into()), &[]))
                .collect(),
            "300 texts and images to embed; the limit is 256",
        ),
        (
            (0..5000)
                .map(|i| item(&i.to_string(), vector(ok.clone()), &[]))
                .collect(),
            "5000 items; the limit is 4096",
        ),
    ];
    for (items, words) in bad_items {
        refused(
            upsert(&mut c, "good", items).await,
            Code::InvalidArgument,
            words,
        );
    }
    let bad_ids: Vec<(Vec<String>, &str)> = vec![
        (vec![], "no ids"),
        (vec!["a".into(), "".into()], "id 1: the id is empty"),
        (vec!["x".repeat(1025)], "id 0: the id is 1025 bytes"),
        ((0..5000).map(|i| i.to_string()).collect(), "5000 ids"),
    ];
    for (ids, words) in bad_ids {
        let delete = pb::DeleteRequest {
            collection: "good".into(),
            ids: ids.clone(),
            ..Default::default()
        };
        refused(c.delete(delete).await, Code::InvalidArgument, words);
        let get = pb::GetItemsRequest {
            collection: "good".into(),
            ids,
            with_vectors: false,
        };
        refused(c.get_items(get).await, Code::InvalidArgument, words);
    }
    let good = info(&mut c, "good").await;
    assert_eq!(good.count, 1, "nothing of a refused request was written");
    assert_eq!(good.unsnapshotted_writes, 1, "nor logged");

    let vq = |values: Vec<f32>| Query::Vector(pb::Vector { values });
    let cases = vec![
        (
            search_request("nope", vq(ok.clone()), 1, &[]),
            Code::NotFound,
            "no collection named",
        ),
        (
            search_request("good", Query::Id("zzz".into()), 1, &[]),
            Code::NotFound,
            "has no item \"zzz\"",
        ),
        (
            search_request("good", vq(vec![1.0; 3]), 1, &[]),
            Code::InvalidArgument,
            "the query: the vector has 3 values",
        ),
        (
            search_request("good", vq(vec![f32::INFINITY; dim]), 1, &[]),
            Code::InvalidArgument,
            "is inf",
        ),
        (
            search_request("good", vq(ok.clone()), 101, &[]),
            Code::InvalidArgument,
            "top_k is 101; the limit is 100",
        ),
        (
            search_request("good", vq(ok.clone()), u32::MAX, &[]),
            Code::InvalidArgument,
            "top_k",
        ),
        (
            search_request("good", Query::Image(vec![1, 2, 3].into()), 1, &[]),
            Code::InvalidArgument,
            "the query: unsupported image format",
        ),
        (
            pb::SearchRequest {
                ef_search: 5000,
                ..search_request("good", vq(ok.clone()), 1, &[])
            },
            Code::InvalidArgument,
            "ef_search is 5000; the limit is 4096",
        ),
        (
            pb::SearchRequest {
                collection: "good".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "set a query",
        ),
    ];
    for (request, code, words) in cases {
        refused(search(&mut server.client, request).await, code, words);
    }
    // The server is still up, and top_k 0 means 10.
    let found = search(
        &mut server.client,
        search_request("good", vq(ok.clone()), 0, &[]),
    )
    .await
    .unwrap();
    assert_eq!(ids(&found), ["a"]);
    assert_eq!(
        embed(&mut server.client, vec![text("still here")])
            .await
            .embeddings
            .len(),
        1
    );
}

/// A collection of another model is listed and refused FAILED_PRECONDITION, and can be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_another_model_is_refused_until_dropped() {
    let demo = demo_settings();
    let server = TestServer::start(demo.clone()).await;
    let mut c = collections(&server).await;
    create(&mut c, "demo-made").await;
    server.server.shutdown().await.unwrap();

    let mut other = settings("tiny-b");
    other.index.data_dir = demo.index.data_dir.clone();
    let mut server = TestServer::start(other).await;
    let mut c = collections(&server).await;
    let listed = c
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collections.len(), 1);
    assert_eq!(listed.collections[0].model, "clipd-demo");
    refused(
        search(
            &mut server.client,
            search_request("demo-made", Query::Text("x".into()), 1, &[]),
        )
        .await,
        Code::FailedPrecondition,
        "clipd-demo",
    );
    c.drop_collection(pb::DropCollectionRequest {
        name: "demo-made".into(),
    })
    .await
    .unwrap();
    create(&mut c, "demo-made").await;
}

/// A copy of a fixture checkpoint in `dir`; `scrambled`: its weights in reverse order (another
/// model of the same shapes).
fn checkpoint_copy(model: &str, dir: &std::path::Path, scrambled: bool) -> std::path::PathBuf {
    let from = crate::common::model_dir(model);
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "preprocessor_config.json", "tokenizer.json"] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
    }
    let mut weights = std::fs::read(from.join("model.safetensors")).unwrap();
    if scrambled {
        let header = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
        // f16 values: reversing whole values keeps every one of them finite.
        let values = &mut weights[header..];
        assert_eq!(values.len() % 2, 0);
        let mut halves: Vec<[u8; 2]> = values.chunks(2).map(|c| [c[0], c[1]]).collect();
        halves.reverse();
        values.copy_from_slice(&halves.concat());
    }
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    dir.to_owned()
}

/// A checkpoint is known by what it embeds, not by its directory's name: another checkpoint
/// mounted at the same path is refused, the same one under another name is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_know_their_checkpoint_by_its_embeddings_not_its_path() {
    let mounts = scratch_dir("mounts");
    let mounted = mounts.path().join("a").join("models");
    let mut s = settings("tiny-a");
    s.model.source = Some(checkpoint_copy("tiny-a", &mounted, false));
    let server = TestServer::start(s.clone()).await;
    let mut c = collections(&server).await;
    let dim = create(&mut c, "made-by-a").await.dim as usize;
    upsert(
        &mut c,
        "made-by-a",
        vec![item("x", vector(vec![0.5; dim]), &[])],
    )
    .await
    .unwrap();
    server.server.shutdown().await.unwrap();

    // A manifest written before probes were kept is accepted by name, and gets the probe.
    let manifest_path = s
        .index
        .data_dir
        .join("collections/made-by-a/collection.json");
    let manifest_json = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap()
    };
    let probe = manifest_json()["probe"].clone();
    assert_eq!(probe.as_array().map(Vec::len), Some(dim));
    let mut old = manifest_json();
    old.as_object_mut().unwrap().remove("probe");
    std::fs::write(&manifest_path, old.to_string()).unwrap();
    let server = TestServer::start(s.clone()).await;
    let mut c = collections(&server).await;
    assert_eq!(info(&mut c, "made-by-a").await.count, 1);
    server.server.shutdown().await.unwrap();
    assert_eq!(manifest_json()["probe"], probe, "recorded again");

    let mut renamed = s.clone();
    renamed.model.source = Some(checkpoint_copy(
        "tiny-a",
        &mounts.path().join("elsewhere"),
        false,
    ));
    let server = TestServer::start(renamed).await;
    let mut c = collections(&server).await;
    assert_eq!(
        info(&mut c, "made-by-a").await.count,
        1,
        "same weights, other name"
    );
    server.server.shutdown().await.unwrap();

    checkpoint_copy("tiny-a", &mounted, true);
    let server = TestServer::start(s).await;
    let mut c = collections(&server).await;
    refused(
        c.get_collection(pb::GetCollectionRequest {
            name: "made-by-a".into(),
        })
        .await,
        Code::FailedPrecondition,
        "embeds differently",
    );
}
