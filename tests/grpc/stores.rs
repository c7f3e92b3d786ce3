//! What Collections and Search do on every collection store, run against each: the embedded
//! store always, Milvus when the test runs beside one (`scripts/test.sh` runs
//! `scripts/with-milvus.sh cargo test --release --test grpc -- --ignored stores::milvus::`, and
//! `stores::milvus_auth` beside a Milvus with authorization, `MILVUS_AUTH=1`; outside it the
//! Milvus variants are ignored, listed as such, and fail if asked to run without one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clipd::grpc::pb::collections_client::CollectionsClient;
use clipd::grpc::pb::{self, item::Content, search_request::Query};
use clipd::index::{Backend, Consistency};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{
    collections, create, info, refused, settings, text, TestServer, TestSettings,
};

#[derive(Debug, Clone, Copy)]
enum Store {
    Embedded,
    Milvus,
}

/// Settings for a server with the fixture model `model` on `store`; the Milvus collections of
/// each call get their own prefix, so that tests sharing one Milvus never meet.
fn on(store: Store, model: &str) -> TestSettings {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let mut s = settings(model);
    if let Store::Milvus = store {
        s.index.backend = Backend::Milvus;
        s.index.milvus.url = std::env::var("MILVUS_URL")
            .expect("MILVUS_URL: run the Milvus variants under scripts/with-milvus.sh");
        s.index.milvus.collection_prefix = format!(
            "t{}_{}_",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        s.index.milvus.request_timeout_ms = 5_000;
        s.index.milvus.connect_timeout_ms = 1_000;
    }
    s
}

/// `to` uses the same collections as `from` (the same data directory, or Milvus prefix).
fn sharing(from: &TestSettings, mut to: TestSettings) -> TestSettings {
    to.index.data_dir = from.index.data_dir.clone();
    to.index.milvus = from.index.milvus.clone();
    to.index.backend = from.index.backend;
    to
}

fn vector_item(id: &str, values: Vec<f32>, metadata: &[(&str, &str)]) -> pb::Item {
    pb::Item {
        id: id.into(),
        content: Some(Content::Vector(pb::Vector { values })),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A unit vector of `dim` values pointing mostly along `axis`.
fn axis(dim: usize, axis: usize) -> Vec<f32> {
    let mut v = vec![0.05; dim];
    v[axis % dim] = 1.0;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

async fn upsert(
    c: &mut CollectionsClient<Channel>,
    name: &str,
    items: Vec<pb::Item>,
) -> pb::UpsertResponse {
    c.upsert(pb::UpsertRequest {
        collection: name.into(),
        items,
    })
    .await
    .expect("upsert")
    .into_inner()
}

fn search(name: &str, query: Query, top_k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: name.into(),
        query: Some(query),
        top_k,
        ..Default::default()
    }
}

/// A search for the vector `axis(dim, n)`.
fn near(name: &str, dim: usize, n: usize, top_k: u32) -> pb::SearchRequest {
    search(
        name,
        Query::Vector(pb::Vector {
            values: axis(dim, n),
        }),
        top_k,
    )
}

fn ids(response: &pb::SearchResponse) -> Vec<&str> {
    response.hits.iter().map(|h| h.id.as_str()).collect()
}

async fn collections_are_created_described_listed_and_dropped(store: Store) {
    let server = TestServer::start(on(store, "tiny-a")).await;
    let mut c = collections(&server).await;
    let dim = server.server.engine().unwrap().description().dim as u32;
    let created = create(&mut c, "photos.2024-a_b").await;
    assert_eq!(
        (created.name.as_str(), created.dim, created.count),
        ("photos.2024-a_b", dim, 0)
    );
    assert_eq!(
        (created.m, created.ef_construction, created.ef_search),
        (24, 200, 128)
    );
    let again = c
        .create_collection(pb::CreateCollectionRequest {
            name: "photos.2024-a_b".into(),
            ..Default::default()
        })
        .await;
    refused(again, Code::AlreadyExists, "photos.2024-a_b");
    let tuned = c
        .create_collection(pb::CreateCollectionRequest {
            name: "tuned".into(),
            m: 8,
            ef_construction: 64,
            ef_search: 32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .collection
        .unwrap();
    assert_eq!(
        (tuned.m, tuned.ef_construction, tuned.ef_search),
        (8, 64, 32)
    );
    for (name, m, words) in [
        ("bad/name", 0, "may hold only"),
        ("", 0, "1 to 64"),
        ("ok", 300, "m is 300"),
    ] {
        let bad = c
            .create_collection(pb::CreateCollectionRequest {
                name: name.into(),
                m,
                ..Default::default()
            })
            .await;
        refused(bad, Code::InvalidArgument, words);
    }
    let listed = c
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["photos.2024-a_b", "tuned"]);
    let unknown = c
        .get_collection(pb::GetCollectionRequest {
            name: "nope".into(),
        })
        .await;
    refused(unknown, Code::NotFound, "nope");
    c.drop_collection(pb::DropCollectionRequest {
        name: "tuned".into(),
    })
    .await
    .unwrap();
    let gone = c
        .drop_collection(pb::DropCollectionRequest {
            name: "tuned".into(),
        })
        .await;
    refused(gone, Code::NotFound, "tuned");
    let search = server
        .client
        .clone()
        .search(search(
            "tuned",
            Query::Vector(pb::Vector {
                values: axis(dim as usize, 0),
            }),
            1,
        ))
        .await;
    refused(search, Code::NotFound, "tuned");
}

async fn items_are_upserted_read_replaced_and_deleted(store: Store) {
    let server = TestServer::start(on(store, "tiny-a")).await;
    let mut c = collections(&server).await;
    let mut clip = server.client.clone();
    let dim = server.server.engine().unwrap().description().dim as usize;
    create(&mut c, "things").await;
    let mut items: Vec<pb::Item> = (0..6)
        .map(|i| vector_item(&format!("v{i}"), axis(dim, i), &[("n", &i.to_string())]))
        .collect();
    items.push(pb::Item {
        id: "caption".into(),
        content: Some(Content::Text("a photo of a red circle".into())),
        metadata: Default::default(),
    });
    let written = upsert(&mut c, "things", items).await;
    assert_eq!((written.inserted, written.replaced), (7, 0));
    assert_eq!(info(&mut c, "things").await.count, 7);

    let by_vector = clip
        .search(near("things", dim, 2, 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_vector.hits[0].id, "v2");
    assert!(
        (by_vector.hits[0].score - 1.0).abs() < 1e-4,
        "{:?}",
        by_vector.hits[0]
    );
    assert_eq!(by_vector.hits[0].metadata["n"], "2");
    assert_eq!(by_vector.hits.len(), 3);
    let by_text = clip
        .search(search(
            "things",
            Query::Text("a photo of a red circle".into()),
            1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&by_text), ["caption"]);
    assert!(by_text.hits[0].score > 0.9999, "{:?}", by_text.hits[0]);
    let by_id = clip
        .search(search("things", Query::Id("v4".into()), 7))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.hits.len(), 6, "every other item, not v4 itself");
    assert!(!ids(&by_id).contains(&"v4"));
    let unknown = clip
        .search(search("things", Query::Id("v9".into()), 3))
        .await;
    refused(unknown, Code::NotFound, "v9");

    let got = c
        .get_items(pb::GetItemsRequest {
            collection: "things".into(),
            ids: vec!["v3".into(), "missing".into(), "v1".into()],
            with_vectors: true,
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    let got_ids: Vec<&str> = got.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        got_ids,
        ["v3", "v1"],
        "in the order asked, missing ids skipped"
    );
    let Some(Content::Vector(v)) = &got[0].content else {
        panic!("{:?}", got[0])
    };
    let expected = axis(dim, 3);
    assert!(v
        .values
        .iter()
        .zip(&expected)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(got[1].metadata["n"], "1");

    let replaced = upsert(
        &mut c,
        "things",
        vec![
            vector_item("v0", axis(dim, 5), &[("n", "zero")]),
            vector_item("v6", axis(dim, 6), &[]),
        ],
    )
    .await;
    assert_eq!((replaced.inserted, replaced.replaced), (1, 1));
    let moved = clip
        .search(near("things", dim, 5, 2))
        .await
        .unwrap()
        .into_inner();
    let mut top2 = ids(&moved);
    top2.sort();
    assert_eq!(top2, ["v0", "v5"], "v0 now points where v5 does");

    let deleted = c
        .delete(pb::DeleteRequest {
            collection: "things".into(),
            ids: vec!["v5".into(), "v0".into(), "never".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 2);
    assert_eq!(info(&mut c, "things").await.count, 6);
    let after = clip
        .search(near("things", dim, 5, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !ids(&after).contains(&"v5") && !ids(&after).contains(&"v0"),
        "{after:?}"
    );
    assert_eq!(after.hits.len(), 6);
}

async fn filters_narrow_and_hostile_values_stay_data(store: Store) {
    let server = TestServer::start(on(store, "tiny-a")).await;
    let mut c = collections(&server).await;
    let mut clip = server.client.clone();
    let dim = server.server.engine().unwrap().description().dim as usize;
    create(&mut c, "filtered").await;
    let hostile = [
        "x\" || id != \"",
        "a' or 1==1",
        "back\\slash",
        "new\nline",
        "]) || (true",
        "ünïcödé 🍎",
        "",
    ];
    let mut items: Vec<pb::Item> = hostile
        .iter()
        .enumerate()
        .map(|(i, value)| {
            vector_item(
                &format!("h{i}"),
                axis(dim, i),
                &[("k", value), ("kind", "hostile")],
            )
        })
        .collect();
    items.push(vector_item(
        "odd key",
        axis(dim, 9),
        &[("k\"] == \"x", "v"), ("kind", "plain")],
    ));
    items.push(vector_item(
        "unicode key",
        axis(dim, 10),
        &[("ключ é🍎", "v"), ("kind", "plain")],
    ));
    upsert(&mut c, "filtered", items).await;
    let query = Query::Vector(pb::Vector {
        values: axis(dim, 0),
    });
    let with_filter = |pairs: &[(&str, &str)]| pb::SearchRequest {
        filter: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..search("filtered", query.clone(), 20)
    };
    for (i, value) in hostile.iter().enumerate() {
        let found = clip
            .search(with_filter(&[("k", value)]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ids(&found),
            [format!("h{i}").as_str()],
            "filter k = {value:?}"
        );
    }
    let odd = clip
        .search(with_filter(&[("k\"] == \"x", "v")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&odd), ["odd key"]);
    let unicode = clip
        .search(with_filter(&[("ключ é🍎", "v")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&unicode), ["unicode key"]);
    for value in ["x", "\" || \"\" == \"", "*", "h0"] {
        let none = clip
            .search(with_filter(&[("k", value)]))
            .await
            .unwrap()
            .into_inner();
        assert!(
            none.hits.is_empty(),
            "filter k = {value:?} found {:?}",
            ids(&none)
        );
    }
    let both = clip
        .search(with_filter(&[("kind", "hostile"), ("k", "a' or 1==1")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&both), ["h1"], "every pair must hold");
    let hostiles = clip
        .search(with_filter(&[("kind", "hostile")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hostiles.hits.len(), hostile.len());
}

async fn bad_requests_are_refused_the_same_way(store: Store) {
    let server = TestServer::start(on(store, "tiny-a")).await;
    let mut c = collections(&server).await;
    let mut clip = server.client.clone();
    let dim = server.server.engine().unwrap().description().dim as usize;
    create(&mut c, "strict").await;
    let query = Query::Vector(pb::Vector {
        values: axis(dim, 0),
    });
    let too_many = clip.search(search("strict", query.clone(), 1001)).await;
    refused(too_many, Code::InvalidArgument, "top_k is 1001");
    let short = clip
        .search(search(
            "strict",
            Query::Vector(pb::Vector {
                values: vec![1.0; dim - 1],
            }),
            1,
        ))
        .await;
    refused(short, Code::InvalidArgument, "the query: the vector has");
    let empty = c
        .upsert(pb::UpsertRequest {
            collection: "strict".into(),
            items: vec![],
        })
        .await;
    refused(empty, Code::InvalidArgument, "no items");
    let zero = c
        .upsert(pb::UpsertRequest {
            collection: "strict".into(),
            items: vec![
                vector_item("a", axis(dim, 0), &[]),
                vector_item("z", vec![0.0; dim], &[]),
            ],
        })
        .await;
    refused(
        zero,
        Code::InvalidArgument,
        "item 1: the vector cannot be normalised",
    );
    let twice = c
        .upsert(pb::UpsertRequest {
            collection: "strict".into(),
            items: vec![
                vector_item("a", axis(dim, 0), &[]),
                vector_item("a", axis(dim, 1), &[]),
            ],
        })
        .await;
    refused(twice, Code::InvalidArgument, "the same id");
    // 64 pairs of 1 KiB: each within its limit, 130 KiB in all, more than every store keeps.
    let keys: Vec<String> = (0..64).map(|i| format!("key{i:02}")).collect();
    let value = "v".repeat(1024);
    let heavy: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
    let bulky = c
        .upsert(pb::UpsertRequest {
            collection: "strict".into(),
            items: vec![
                vector_item("a", axis(dim, 0), &[]),
                vector_item("b", axis(dim, 1), &heavy),
            ],
        })
        .await;
    refused(bulky, Code::InvalidArgument, "item 1: the metadata is");
    let unknown = c
        .upsert(pb::UpsertRequest {
            collection: "nope".into(),
            items: vec![vector_item("a", axis(dim, 0), &[])],
        })
        .await;
    refused(unknown, Code::NotFound, "nope");
    assert_eq!(
        info(&mut c, "strict").await.count,
        0,
        "nothing of a refused request is kept"
    );
    let embedded = clip
        .embed(pb::EmbedRequest {
            inputs: vec![text("still serving")],
        })
        .await;
    assert!(embedded.is_ok());
}

async fn another_models_collections_are_refused(store: Store) {
    let first = on(store, "tiny-a");
    let a = TestServer::start(first.clone()).await;
    create(&mut collections(&a).await, "of-a").await;
    drop(a);
    let b = TestServer::start(sharing(&first, on(store, "tiny-b"))).await;
    let mut clip = b.client.clone();
    let dim = b.server.engine().unwrap().description().dim as usize;
    let refused_search = clip
        .search(search(
            "of-a",
            Query::Vector(pb::Vector {
                values: axis(dim, 0),
            }),
            1,
        ))
        .await;
    refused(refused_search, Code::FailedPrecondition, "tiny-a");
    let listed = collections(&b)
        .await
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].model.as_str()),
        ("of-a", "tiny-a")
    );
}

fn text_item(id: &str, text: &str, metadata: &[(&str, &str)]) -> pb::Item {
    pb::Item {
        content: Some(Content::Text(text.into())),
        ..vector_item(id, Vec::new(), metadata)
    }
}

fn pairs(metadata: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creating twice with `if_not_exists` describes the first (its settings stand); without it the
/// second is ALREADY_EXISTS.
async fn create_if_not_exists_makes_setup_idempotent(store: Store) {
    let server = TestServer::start(on(store, "tiny-a")).await;
    let mut c = collections(&server).await;
    let ask = |m: u32| pb::CreateCollectionRequest {
        name: "setup".into(),
        m,
        if_not_exists: true,
        ..Default::default()
    };
    let first = c.create_collection(ask(8)).await.unwrap().into_inner();
    assert!(first.created);
    let dim = server.server.engine().unwrap().description().dim as usize;
    upsert(&mut c, "setup", vec![vector_item("a", axis(dim, 1), &[])]).await;
    let again = c.create_collection(ask(16)).await.unwrap().into_inner();
    assert!(!again.created);
    let described = again.collection.unwrap();
    assert_eq!((described.m, described.count), (8, 1), "the first one's");
    refused(
        c.create_collection(pb::CreateCollectionRequest {
            if_not_exists: false,
            ..ask(8)
        })
        .await,
        Code::AlreadyExists,
        "setup",
    );
}

/// A server with the fixture model tiny-a on `store`, a Collections client, the model's
/// dimension, and an empty collection `name`.
async fn with_collection(
    settings: TestSettings,
    name: &str,
) -> (TestServer, CollectionsClient<Channel>, usize) {
    let server = TestServer::start(settings).await;
    let mut c = collections(&server).await;
    let dim = server.server.engine().unwrap().description().dim as usize;
    create(&mut c, name).await;
    (server, c, dim)
}

/// Texts are kept with their items: GetItems and ListItems return them as the content (vectors
/// when asked for), hits carry them; `min_score` cuts the hits below it.
async fn texts_are_kept_and_min_score_cuts_hits(store: Store) {
    let (server, mut c, dim) = with_collection(on(store, "tiny-a"), "texts").await;
    let mut clip = server.client.clone();
    let caption = "a photo of a red circle";
    upsert(
        &mut c,
        "texts",
        vec![
            text_item("t", caption, &[("kind", "caption")]),
            vector_item("v", axis(dim, 2), &[]),
        ],
    )
    .await;
    let got = c
        .get_items(pb::GetItemsRequest {
            collection: "texts".into(),
            ids: vec!["t".into(), "v".into()],
            with_vectors: false,
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(got[0].content, Some(Content::Text(caption.into())));
    assert_eq!(got[1].content, None, "a vector item has no text");
    let with_vectors = c
        .get_items(pb::GetItemsRequest {
            collection: "texts".into(),
            ids: vec!["t".into()],
            with_vectors: true,
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(matches!(&with_vectors[0].content, Some(Content::Vector(v)) if v.values.len() == dim));
    let found = clip
        .search(search("texts", Query::Text(caption.into()), 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&found), ["t", "v"]);
    assert_eq!(
        (found.hits[0].text.as_str(), found.hits[1].text.as_str()),
        (caption, "")
    );
    assert!(found.hits[0].score > 0.999, "{}", found.hits[0].score);
    let floor = (found.hits[0].score + found.hits[1].score) / 2.0;
    let cut = clip
        .search(pb::SearchRequest {
            min_score: Some(floor),
            ..search("texts", Query::Text(caption.into()), 2)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&cut), ["t"]);
    let none = clip
        .search(pb::SearchRequest {
            min_score: Some(1.5),
            ..search("texts", Query::Text(caption.into()), 2)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.hits.is_empty());
    refused(
        clip.search(pb::SearchRequest {
            min_score: Some(f32::NAN),
            ..search("texts", Query::Text(caption.into()), 2)
        })
        .await,
        Code::InvalidArgument,
        "min_score",
    );
}

async fn list_page(
    c: &mut CollectionsClient<Channel>,
    filter: &[(&str, &str)],
    page_size: u32,
    page_token: String,
) -> pb::ListItemsResponse {
    c.list_items(pb::ListItemsRequest {
        collection: "paged".into(),
        filter: pairs(filter),
        page_size,
        page_token,
        with_vectors: false,
    })
    .await
    .expect("list items")
    .into_inner()
}

/// `count` vector items `{prefix}00`, `{prefix}01`...; the metadata `key` of every `every`th
/// is `one`, of the others `other`.
fn tagged(
    dim: usize,
    count: usize,
    prefix: &str,
    (key, every, one, other): (&str, usize, &str, &str),
) -> Vec<pb::Item> {
    (0..count)
        .map(|i| {
            let value = if i % every == 0 { one } else { other };
            vector_item(&format!("{prefix}{i:02}"), axis(dim, i), &[(key, value)])
        })
        .collect()
}

/// Every item, in id order, a page at a time (filtered or not, whatever the page size); a
/// made-up token or an oversized page is INVALID_ARGUMENT.
async fn items_are_listed_page_by_page(store: Store) {
    let (_server, mut c, dim) = with_collection(on(store, "tiny-a"), "paged").await;
    let items = tagged(dim, 40, "i", ("group", 4, "rare", "common"));
    // In two writes, the second first, so that ids do not arrive in their order.
    upsert(&mut c, "paged", items[20..].to_vec()).await;
    upsert(&mut c, "paged", items[..20].to_vec()).await;
    for (filter, expected) in [
        (&[][..], (0..40).collect::<Vec<usize>>()),
        (&[("group", "rare")][..], (0..40).step_by(4).collect()),
        (&[("group", "none")][..], Vec::new()),
    ] {
        let expected: Vec<String> = expected.iter().map(|i| format!("i{i:02}")).collect();
        for size in [1u32, 7, 40, 100] {
            let mut walked = Vec::new();
            let mut token = String::new();
            loop {
                let page = list_page(&mut c, filter, size, token).await;
                assert!(page.items.len() <= size as usize);
                walked.extend(page.items.into_iter().map(|i| i.id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            assert_eq!(walked, expected, "filter {filter:?}, pages of {size}");
        }
    }
    let default = list_page(&mut c, &[], 0, String::new()).await;
    assert_eq!(
        (default.items.len(), default.next_page_token.as_str()),
        (40, "")
    );
    let ask = |page_size: u32, page_token: &str| pb::ListItemsRequest {
        collection: "paged".into(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    refused(
        c.list_items(ask(0, "not a token!")).await,
        Code::InvalidArgument,
        "page_token",
    );
    refused(
        c.list_items(ask(100_000, "")).await,
        Code::InvalidArgument,
        "page_size",
    );
    refused(
        c.list_items(pb::ListItemsRequest {
            collection: "nothing".into(),
            ..ask(0, "")
        })
        .await,
        Code::NotFound,
        "nothing",
    );
}

/// A Delete by filter removes every match however many, and nothing else; ids and a filter
/// together, or neither, are refused.
async fn deletes_by_filter_remove_every_match(store: Store) {
    let (server, mut c, dim) = with_collection(on(store, "tiny-a"), "sweep").await;
    let items = tagged(dim, 30, "s", ("tenant", 3, "gone", "kept"));
    upsert(&mut c, "sweep", items).await;
    let by_filter = |tenant: &str| pb::DeleteRequest {
        collection: "sweep".into(),
        filter: pairs(&[("tenant", tenant)]),
        ..Default::default()
    };
    assert_eq!(
        c.delete(by_filter("gone"))
            .await
            .unwrap()
            .into_inner()
            .deleted,
        10
    );
    assert_eq!(
        c.delete(by_filter("gone"))
            .await
            .unwrap()
            .into_inner()
            .deleted,
        0
    );
    assert_eq!(info(&mut c, "sweep").await.count, 20);
    let mut clip = server.client.clone();
    let found = clip
        .search(pb::SearchRequest {
            filter: pairs(&[("tenant", "gone")]),
            ..near("sweep", dim, 3, 5)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.hits.is_empty());
    refused(
        c.delete(pb::DeleteRequest {
            ids: vec!["s01".into()],
            ..by_filter("kept")
        })
        .await,
        Code::InvalidArgument,
        "not both",
    );
    refused(
        c.delete(pb::DeleteRequest {
            collection: "sweep".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "drop the collection",
    );
    assert_eq!(info(&mut c, "sweep").await.count, 20, "nothing lost");
}

/// Vectors need no embedding: an Upsert of more vectors than the model's per-request limit, and
/// a Delete and GetItems of as many ids, are one call each; texts over that limit are refused.
async fn vector_writes_are_not_held_to_the_models_batch_limit(store: Store) {
    let mut settings = on(store, "tiny-a");
    settings.limits.max_inputs_per_request = 8;
    settings.batching.max_queued_inputs = 8;
    settings.index.max_items_per_request = 600;
    let (server, mut c, dim) = with_collection(settings, "bulk").await;
    let items: Vec<pb::Item> = (0..600)
        .map(|i| vector_item(&format!("b{i}"), axis(dim, i), &[]))
        .collect();
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    assert_eq!(upsert(&mut c, "bulk", items.clone()).await.inserted, 600);
    let got = c
        .get_items(pb::GetItemsRequest {
            collection: "bulk".into(),
            ids: ids.clone(),
            with_vectors: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.items.len(), 600);
    let texts: Vec<pb::Item> = (0..9)
        .map(|i| text_item(&format!("x{i}"), "a cat", &[]))
        .collect();
    let mut too_many = items;
    too_many.push(vector_item("b600", axis(dim, 1), &[]));
    for (items, words) in [(texts, "max_inputs_per_request"), (too_many, "601")] {
        let request = pb::UpsertRequest {
            collection: "bulk".into(),
            items,
        };
        refused(c.upsert(request).await, Code::InvalidArgument, words);
    }
    let deleted = c
        .delete(pb::DeleteRequest {
            collection: "bulk".into(),
            ids,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 600);
    let model = crate::support::model_info(&mut server.client.clone()).await;
    assert_eq!(
        (model.max_items_per_request, model.max_inputs_per_request),
        (600, 8)
    );
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Store::Embedded).await
                }
            )*
        }

        mod milvus {
            $(
                #[tokio::test]
                #[ignore = "needs Milvus: scripts/with-milvus.sh cargo test --test grpc -- --ignored stores::milvus::"]
                async fn $name() {
                    super::$name(super::Store::Milvus).await
                }
            )*

            #[tokio::test]
            #[ignore = "needs Milvus: scripts/with-milvus.sh cargo test --test grpc -- --ignored stores::milvus::"]
            async fn replicas_on_one_milvus_read_each_others_writes() {
                super::replicas_on_one_milvus_read_each_others_writes().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs Milvus: scripts/with-milvus.sh cargo test --test grpc -- --ignored stores::milvus::"]
            async fn a_replica_killed_mid_stream_loses_no_acknowledged_write() {
                super::a_replica_killed_mid_stream_loses_no_acknowledged_write().await
            }

            #[tokio::test]
            #[ignore = "needs Milvus: scripts/with-milvus.sh cargo test --test grpc -- --ignored stores::milvus::"]
            async fn clipd_copy_moves_a_collection_to_milvus_and_back() {
                super::clipd_copy_moves_a_collection_to_milvus_and_back().await
            }

            #[tokio::test]
            #[ignore = "needs Milvus: scripts/with-milvus.sh cargo test --test grpc -- --ignored stores::milvus::"]
            async fn milvus_away_answers_unavailable_and_serving_recovers() {
                super::milvus_away_answers_unavailable_and_serving_recovers().await
            }
        }
    };
}

on_every_store!(
    collections_are_created_described_listed_and_dropped,
    items_are_upserted_read_replaced_and_deleted,
    filters_narrow_and_hostile_values_stay_data,
    bad_requests_are_refused_the_same_way,
    another_models_collections_are_refused,
    create_if_not_exists_makes_setup_idempotent,
    texts_are_kept_and_min_score_cuts_hits,
    items_are_listed_page_by_page,
    deletes_by_filter_remove_every_match,
    vector_writes_are_not_held_to_the_models_batch_limit,
);

/// A Milvus with authorization (`MILVUS_AUTH=1 scripts/with-milvus.sh`, as scripts/test.sh runs
/// it): its token (`MILVUS_TOKEN`) is accepted, a wrong one or none is refused at start-up with a
/// message that says so, and a token rotated in its file takes effect while the server runs.
mod milvus_auth {
    use super::*;

    /// Settings whose `token_file` holds `token`, re-read every 100 ms.
    fn with_token(token: &str, dir: &std::path::Path) -> (TestSettings, std::path::PathBuf) {
        let file = dir.join("milvus-token");
        std::fs::write(&file, token).unwrap();
        let mut s = on(Store::Milvus, "tiny-a");
        s.index.milvus.token_file = Some(file.clone());
        s.index.milvus.reload_interval_ms = 100;
        (s, file)
    }

    fn token() -> String {
        std::env::var("MILVUS_TOKEN")
            .expect("MILVUS_TOKEN: run under MILVUS_AUTH=1 scripts/with-milvus.sh")
    }

    #[tokio::test]
    #[ignore = "needs a Milvus with authorization: MILVUS_AUTH=1 scripts/with-milvus.sh"]
    async fn the_token_is_accepted_and_a_rotated_one_takes_effect() {
        let dir = crate::support::scratch_dir("auth");
        let (settings, file) = with_token(&token(), dir.path());
        let server = TestServer::start(settings).await;
        let mut c = collections(&server).await;
        let dim = server.server.engine().unwrap().description().dim as usize;
        create(&mut c, "guarded").await;
        upsert(&mut c, "guarded", vec![vector_item("g", axis(dim, 1), &[])]).await;
        std::fs::write(&file, "root:not-the-password").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let refusal = loop {
            match c
                .get_collection(pb::GetCollectionRequest {
                    name: "guarded".into(),
                })
                .await
            {
                Err(status) => break status,
                Ok(_) => {
                    assert!(Instant::now() < deadline, "the wrong token was never used");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
        assert!(refusal.message().contains("token"), "{refusal:?}");
        std::fs::write(&file, token()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .get_collection(pb::GetCollectionRequest {
                name: "guarded".into(),
            })
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the right token was never used again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(info(&mut c, "guarded").await.count, 1);
    }

    #[tokio::test]
    #[ignore = "needs a Milvus with authorization: MILVUS_AUTH=1 scripts/with-milvus.sh"]
    async fn a_wrong_token_or_none_is_refused_at_start_up() {
        let dir = crate::support::scratch_dir("auth");
        let (wrong, _) = with_token("root:not-the-password", dir.path());
        let none = on(Store::Milvus, "tiny-a");
        for settings in [wrong, none] {
            let mut server = clipd::server::RunningServer::start(
                settings.settings(),
                clipd::config::locations_from_env(),
            )
            .await
            .expect("the port is bound before loading");
            let failure = server
                .ready()
                .await
                .err()
                .expect("refused at start-up")
                .to_string();
            assert!(
                failure.contains("Milvus refused clipd's token"),
                "{failure}"
            );
            server.shutdown().await.unwrap();
        }
    }
}

/// Two clipd servers on one Milvus, with strong reads: what one acknowledges, the other serves.
async fn replicas_on_one_milvus_read_each_others_writes() {
    let mut first = on(Store::Milvus, "tiny-a");
    first.index.milvus.consistency = Consistency::Strong;
    let a = TestServer::start(first.clone()).await;
    let b = TestServer::start(sharing(&first, on(Store::Milvus, "tiny-a"))).await;
    let dim = a.server.engine().unwrap().description().dim as usize;
    let (mut ca, mut cb) = (collections(&a).await, collections(&b).await);
    create(&mut ca, "shared").await;
    for round in 0..5 {
        let id = format!("r{round}");
        upsert(
            &mut ca,
            "shared",
            vec![vector_item(&id, axis(dim, round), &[])],
        )
        .await;
        let got = cb
            .get_items(pb::GetItemsRequest {
                collection: "shared".into(),
                ids: vec![id.clone()],
                with_vectors: false,
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(got.len(), 1, "round {round}: b does not see a's write");
        let found = b
            .client
            .clone()
            .search(near("shared", dim, round, 1))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(&found), [id.as_str()], "round {round}");
    }
    cb.delete(pb::DeleteRequest {
        collection: "shared".into(),
        ids: vec!["r0".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(info(&mut ca, "shared").await.count, 4);
}

/// Milvus killed: Collections and Search answer UNAVAILABLE at once, Embed goes on; Milvus back
/// (on the same data): the same server serves the collection again, with nothing acknowledged
/// lost.
async fn milvus_away_answers_unavailable_and_serving_recovers() {
    let server = TestServer::start(on(Store::Milvus, "tiny-a")).await;
    let mut c = collections(&server).await;
    let mut clip = server.client.clone();
    let dim = server.server.engine().unwrap().description().dim as usize;
    create(&mut c, "durable").await;
    let items: Vec<pb::Item> = (0..20)
        .map(|i| vector_item(&format!("d{i}"), axis(dim, i), &[]))
        .collect();
    upsert(&mut c, "durable", items).await;
    let restarted = MilvusBack;
    milvus_ctl("kill");
    let started = Instant::now();
    let away = clip.search(near("durable", dim, 3, 1)).await;
    refused(away, Code::Unavailable, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    refused(
        c.list_collections(pb::ListCollectionsRequest {}).await,
        Code::Unavailable,
        "unavailable",
    );
    assert!(clip
        .embed(pb::EmbedRequest {
            inputs: vec![text("still here")]
        })
        .await
        .is_ok());
    // The failed calls marked Milvus away: only the Collections service says so.
    assert_eq!(health(&server, "clipd.v1.Collections").await, NOT_SERVING);
    assert_eq!(health(&server, "clipd.v1.Clip").await, SERVING);
    assert_eq!(health(&server, "").await, SERVING);
    drop(restarted);
    let deadline = Instant::now() + Duration::from_secs(90);
    let found = loop {
        let answer = clip.search(near("durable", dim, 3, 1)).await;
        match answer {
            Ok(found) => break found.into_inner(),
            Err(status) if Instant::now() < deadline => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => panic!("not back after Milvus restarted: {status:?}"),
        }
    };
    assert_eq!(ids(&found), ["d3"]);
    assert_eq!(
        info(&mut c, "durable").await.count,
        20,
        "no acknowledged write lost"
    );
    // The next probe (index.milvus.health_interval_ms) finds Milvus back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&server, "clipd.v1.Collections").await != SERVING {
        assert!(Instant::now() < deadline, "Collections not SERVING again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// What the server's health service says of `service`.
async fn health(server: &TestServer, service: &str) -> i32 {
    let channel = crate::support::channel(&server.server).await;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// A `clipd serve` replica on Milvus gets SIGKILL while four clients stream upserts to it:
/// another replica (strong reads) then serves every write the killed one acknowledged, with
/// its vector.
async fn a_replica_killed_mid_stream_loses_no_acknowledged_write() {
    let mut reader = on(Store::Milvus, "tiny-a");
    reader.index.milvus.consistency = Consistency::Strong;
    let milvus = &reader.index.milvus;
    let (mut child, addr) = crate::support::spawn_serve(
        crate::support::serve_command()
            .arg("--model")
            .arg(crate::common::model_dir("tiny-a"))
            .env("CLIPD__INDEX__BACKEND", "milvus")
            .env("CLIPD__INDEX__MILVUS__URL", &milvus.url)
            .env(
                "CLIPD__INDEX__MILVUS__COLLECTION_PREFIX",
                &milvus.collection_prefix,
            )
            .env("CLIPD__BATCHING__MAX_DELAY_MS", "1"),
    );
    let channel = crate::support::connect(&addr).await;
    let mut c = CollectionsClient::new(channel);
    let dim = create(&mut c, "crash").await.dim as usize;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<pb::Item>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (mut c, acked) = (c.clone(), acked.clone());
            tokio::spawn(async move {
                for batch in 0.. {
                    let items: Vec<pb::Item> = (0..8)
                        .map(|i| {
                            let id = format!("w{w}-b{batch}-{i}");
                            vector_item(&id, axis(dim, w * 8 + i + batch), &[("w", "x")])
                        })
                        .collect();
                    let request = pb::UpsertRequest {
                        collection: "crash".into(),
                        items: items.clone(),
                    };
                    if c.upsert(request).await.is_err() {
                        return;
                    }
                    acked.lock().unwrap().extend(items);
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 800 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    let other = TestServer::start(reader).await;
    let mut c = collections(&other).await;
    let count = info(&mut c, "crash").await.count as usize;
    assert!(
        (acked.len()..=acked.len() + 4 * 8).contains(&count),
        "{count} items, {} acknowledged (at most one unacknowledged batch per writer more)",
        acked.len()
    );
    for chunk in acked.chunks(500) {
        let got = c
            .get_items(pb::GetItemsRequest {
                collection: "crash".into(),
                ids: chunk.iter().map(|i| i.id.clone()).collect(),
                with_vectors: true,
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(got.len(), chunk.len(), "acknowledged items are missing");
        for (got, sent) in got.iter().zip(chunk) {
            let (Some(Content::Vector(a)), Some(Content::Vector(b))) =
                (&got.content, &sent.content)
            else {
                panic!("no vector: {got:?}");
            };
            let cosine: f32 = a.values.iter().zip(&b.values).map(|(p, q)| p * q).sum();
            assert!(cosine > 0.9999, "{}: {cosine}", got.id);
        }
    }
}

/// `clipd copy` with a settings file naming both stores.
fn clipd_copy(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clipd"))
        .args(["copy", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run clipd copy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every item of a collection, by ListItems, with vectors.
async fn every_item(c: &mut CollectionsClient<Channel>, name: &str) -> Vec<pb::Item> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_items(pb::ListItemsRequest {
                collection: name.into(),
                page_size: 9,
                page_token,
                with_vectors: true,
                ..Default::default()
            })
            .await
            .expect("list items")
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        page_token = page.next_page_token;
    }
}

/// An embedded collection copied to Milvus by `clipd copy` is served from there as it was
/// (vectors, metadata, texts), and back; a cursor left by an interrupted copy resumes it; the
/// same store twice, or another copy's cursor, is refused.
async fn clipd_copy_moves_a_collection_to_milvus_and_back() {
    let settings = on(Store::Milvus, "tiny-a");
    let mut embedded = settings.clone();
    embedded.index.backend = Backend::Embedded;
    let config = crate::support::scratch_dir("copy");
    let config_file = config.path().join("clipd.toml");
    std::fs::write(&config_file, settings.redacted_toml()).unwrap();
    let cursor = config.path().join("moving.cursor");
    let cursor_arg = cursor.to_str().unwrap();

    let source = TestServer::start(embedded.clone()).await;
    let mut c = collections(&source).await;
    let dim = source.server.engine().unwrap().description().dim as usize;
    create(&mut c, "moving").await;
    let mut items = tagged(dim, 25, "m", ("half", 2, "even", "odd"));
    items.push(text_item(
        "caption",
        "a photo of a red circle",
        &[("half", "text")],
    ));
    upsert(&mut c, "moving", items).await;
    let before = every_item(&mut c, "moving").await;
    source.server.shutdown().await.unwrap();

    let there = [
        "--from",
        "embedded",
        "--to",
        "milvus",
        "--collection",
        "moving",
    ];
    let (ok, out) = clipd_copy(
        &config_file,
        &[&there[..], &["--page-size", "7", "--cursor", cursor_arg]].concat(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("copied 26 items"), "{out}");
    assert!(!cursor.exists(), "the cursor goes once the copy is done");

    let milvus = TestServer::start(settings.clone()).await;
    let mut m = collections(&milvus).await;
    assert_eq!(every_item(&mut m, "moving").await, before);
    let mut clip = milvus.client.clone();
    let found = clip
        .search(search(
            "moving",
            Query::Text("a photo of a red circle".into()),
            1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (found.hits[0].id.as_str(), found.hits[0].text.as_str()),
        ("caption", "a photo of a red circle")
    );

    // As left by a copy interrupted after "m19": the rest is copied, the counts agree.
    let interrupted = serde_json::json!({
        "from": "embedded", "to": "milvus", "collection": "moving", "target": "moving",
        "after": "m19",
    });
    std::fs::write(&cursor, interrupted.to_string()).unwrap();
    let (ok, out) = clipd_copy(
        &config_file,
        &[&there[..], &["--cursor", cursor_arg]].concat(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("resumed after id \"m19\""), "{out}");
    // m20..m24: the ids after "m19" in bytewise order ("caption" sorts before it).
    assert!(out.contains("copied 5 items"), "{out}");

    std::fs::write(&cursor, interrupted.to_string()).unwrap();
    let (ok, out) = clipd_copy(
        &config_file,
        &[
            "--from",
            "milvus",
            "--to",
            "embedded",
            "--collection",
            "moving",
            "--cursor",
            cursor_arg,
        ],
    );
    assert!(
        !ok && out.contains("remove it"),
        "another copy's cursor: {out}"
    );
    std::fs::remove_file(&cursor).unwrap();
    let (ok, out) = clipd_copy(
        &config_file,
        &[
            "--from",
            "milvus",
            "--to",
            "milvus",
            "--collection",
            "moving",
            "--cursor",
            cursor_arg,
        ],
    );
    assert!(!ok && out.contains("two different stores"), "{out}");
    drop(milvus);

    let (ok, out) = clipd_copy(
        &config_file,
        &[
            "--from",
            "milvus",
            "--to",
            "embedded",
            "--collection",
            "moving",
            "--target",
            "returned",
            "--cursor",
            cursor_arg,
        ],
    );
    assert!(ok, "{out}");
    let back = TestServer::start(embedded).await;
    let mut c = collections(&back).await;
    let returned = every_item(&mut c, "returned").await;
    assert_eq!(returned.len(), before.len());
    for (a, b) in returned.iter().zip(&before) {
        assert_eq!((&a.id, &a.metadata), (&b.id, &b.metadata));
        let (Some(Content::Vector(x)), Some(Content::Vector(y))) = (&a.content, &b.content) else {
            panic!("no vectors: {a:?}");
        };
        let cosine: f32 = x.values.iter().zip(&y.values).map(|(p, q)| p * q).sum();
        assert!(cosine > 0.99999, "{} moved: {cosine}", a.id);
    }
}

/// Starts Milvus again when dropped, also when the test fails while Milvus is down (the tests
/// after it share that Milvus).
struct MilvusBack;

impl Drop for MilvusBack {
    fn drop(&mut self) {
        milvus_ctl("start");
    }
}

fn milvus_ctl(command: &str) {
    let ctl = std::env::var("MILVUS_CTL").expect("MILVUS_CTL: run under scripts/with-milvus.sh");
    let status = std::process::Command::new("bash")
        .arg(ctl)
        .arg(command)
        .status()
        .expect("run milvus-ctl");
    assert!(status.success(), "milvus-ctl {command}: {status}");
}
