//! Classify over the bundled demo model, which knows six colours and four shapes.

use clipd::classify::ClassifierSettings;
use clipd::demo::eval::png;
use clipd::demo::shapes::{class_labels, label_vocabulary, Scene};
use clipd::grpc::pb::{self, classify_request::Labels};
use clipd::rng::SplitMix64;

use crate::support::*;

fn demo_settings() -> TestSettings {
    let mut s = settings("tiny-a");
    s.model.source = None;
    s.classifiers.insert(
        "colours".into(),
        ClassifierSettings {
            labels: ["red", "green", "blue", "yellow", "purple", "orange"]
                .map(|c| format!("{c} shape"))
                .to_vec(),
            templates: vec!["a photo of a {}.".into()],
            thresholds: [("red shape".to_string(), 0.5)].into(),
            ..ClassifierSettings::default()
        },
    );
    s
}

fn scenes(seed: u64, count: usize) -> (Vec<Scene>, Vec<pb::Input>) {
    let mut rng = SplitMix64::new(seed);
    let scenes: Vec<Scene> = (0..count).map(|_| Scene::random(&mut rng)).collect();
    let inputs = scenes
        .iter()
        .map(|s| image_bytes(png(s, 64 + rng.below(96))))
        .collect();
    (scenes, inputs)
}

fn label_set(labels: Vec<String>, templates: &[&str]) -> Option<Labels> {
    Some(Labels::LabelSet(pb::LabelSet {
        labels,
        templates: templates.iter().map(|t| t.to_string()).collect(),
        template_set: 0,
    }))
}

fn request(inputs: Vec<pb::Input>, labels: Option<Labels>, top_k: u32) -> pb::ClassifyRequest {
    pb::ClassifyRequest {
        inputs,
        labels,
        top_k,
    }
}

/// Zero-shot accuracy over the 24 colour x shape classes through the API, on pictures the model
/// never saw; and an ensemble of templates does no worse than one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_model_classifies_fresh_pictures() {
    let mut server = TestServer::start(demo_settings()).await;
    let (scenes, inputs) = scenes(0xC1A55, 240);
    let labels = class_labels();
    let mut accuracy = Vec::new();
    for templates in [
        &["a photo of a {}."][..],
        &[
            "a photo of a {}.",
            "a {}.",
            "a drawing of a {}",
            "a picture of a {}",
        ][..],
    ] {
        let mut correct = 0;
        for (chunk, scenes) in inputs.chunks(120).zip(scenes.chunks(120)) {
            let response = server
                .client
                .classify(request(
                    chunk.to_vec(),
                    label_set(labels.clone(), templates),
                    3,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.results.len(), chunk.len());
            for (result, scene) in response.results.iter().zip(scenes) {
                assert_eq!(result.scores.len(), 3);
                let probabilities: Vec<f32> = result.scores.iter().map(|s| s.probability).collect();
                assert!(
                    probabilities.windows(2).all(|w| w[0] >= w[1]),
                    "{probabilities:?}"
                );
                correct += usize::from(result.scores[0].label == labels[scene.class()]);
            }
        }
        accuracy.push(correct as f64 / scenes.len() as f64);
    }
    assert!(accuracy[0] >= 0.9, "single template: {accuracy:?}");
    assert!(accuracy[1] >= accuracy[0] - 0.01, "ensemble: {accuracy:?}");
}

/// The same labels again cost only the inputs: the label vectors come from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_vectors_are_cached() {
    let mut server = TestServer::start(demo_settings()).await;
    let (_, inputs) = scenes(7, 2);
    let labels = class_labels();
    // The configured classifier's labels went through the cache at start-up.
    let before = server.server.classify().unwrap().cache_stats();
    let first = server
        .client
        .classify(request(inputs.clone(), label_set(labels.clone(), &[]), 0))
        .await
        .unwrap()
        .into_inner();
    let texts_after_first = server.stats().text_inputs;
    let cache = server.server.classify().unwrap().cache_stats();
    assert_eq!(cache.misses - before.misses, 24);
    assert_eq!(cache.entries - before.entries, 24);
    let second = server
        .client
        .classify(request(inputs, label_set(labels, &[]), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        server.stats().text_inputs,
        texts_after_first,
        "no label embedded again"
    );
    let cache = server.server.classify().unwrap().cache_stats();
    assert_eq!(cache.hits - before.hits, 24);
    assert_eq!(first.results[0].scores.len(), 24, "top_k 0: every label");
    for (a, b) in first.results.iter().zip(&second.results) {
        assert_eq!(a.scores[0].label, b.scores[0].label);
        assert!((a.scores[0].probability - b.scores[0].probability).abs() < 1e-4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_classifiers_flag_labels_over_their_threshold() {
    let mut server = TestServer::start(demo_settings()).await;
    let mut rng = SplitMix64::new(99);
    let mut red = None;
    let mut other = None;
    while red.is_none() || other.is_none() {
        let scene = Scene::random(&mut rng);
        match scene.colour_name() {
            "red" => red = red.or(Some(scene)),
            "green" | "blue" => other = other.or(Some(scene)),
            _ => {}
        }
    }
    let inputs = [red.unwrap(), other.unwrap()]
        .iter()
        .map(|s| image_bytes(png(s, 96)))
        .collect();
    let response = server
        .client
        .classify(request(
            inputs,
            Some(Labels::Classifier("colours".into())),
            2,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results[0].scores[0].label, "red shape");
    assert_eq!(response.results[0].flagged, ["red shape"]);
    assert_eq!(response.results[1].scores.len(), 2);
    assert!(
        response.results[1].flagged.is_empty(),
        "{:?}",
        response.results[1]
    );
    let info = model_info(&mut server.client).await;
    assert_eq!(info.classifiers, ["colours"]);
    assert!(info.logit_scale > 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_classify_requests_are_refused() {
    let mut s = demo_settings();
    s.classify.max_labels = 30;
    s.classify.max_templates = 3;
    s.classify.max_top_k = 20;
    let mut server = TestServer::start(s).await;
    let input = || vec![text("a red circle")];
    let named = |name: &str| Some(Labels::Classifier(name.into()));
    let owned = |labels: &[&str]| labels.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, pb::ClassifyRequest, tonic::Code, &str)> = vec![
        (
            "unknown classifier",
            request(input(), named("nsfw"), 1),
            tonic::Code::NotFound,
            "nsfw",
        ),
        (
            "no labels at all",
            request(input(), None, 1),
            tonic::Code::InvalidArgument,
            "label_set",
        ),
        (
            "an empty label set",
            request(input(), label_set(vec![], &[]), 1),
            tonic::Code::InvalidArgument,
            "empty",
        ),
        (
            "a label without text",
            request(input(), label_set(owned(&["cat", " "]), &[]), 1),
            tonic::Code::InvalidArgument,
            "label 1 is empty",
        ),
        (
            "a label given twice",
            request(input(), label_set(owned(&["cat", "cat"]), &[]), 1),
            tonic::Code::InvalidArgument,
            "twice",
        ),
        (
            "a template without {}",
            request(
                input(),
                label_set(owned(&["cat"]), &["a photo of a {}.", "a photo"]),
                1,
            ),
            tonic::Code::InvalidArgument,
            "template 1",
        ),
        (
            "too many labels",
            request(
                input(),
                label_set((0..31).map(|i| format!("l{i}")).collect(), &[]),
                1,
            ),
            tonic::Code::InvalidArgument,
            "31 labels; the limit is 30",
        ),
        (
            "too many templates",
            request(
                input(),
                label_set(owned(&["cat"]), &["{}", "a {}", "the {}", "my {}"]),
                1,
            ),
            tonic::Code::InvalidArgument,
            "4 templates",
        ),
        (
            "top_k over the limit",
            request(input(), named("colours"), 21),
            tonic::Code::InvalidArgument,
            "top_k",
        ),
        (
            "an unknown template set",
            request(
                input(),
                Some(Labels::LabelSet(pb::LabelSet {
                    labels: owned(&["cat"]),
                    templates: vec![],
                    template_set: 9,
                })),
                1,
            ),
            tonic::Code::InvalidArgument,
            "template_set 9",
        ),
        (
            "no inputs",
            request(vec![], named("colours"), 1),
            tonic::Code::InvalidArgument,
            "no inputs",
        ),
        (
            "a bad image",
            request(vec![image_bytes(b"GIF89a".to_vec())], named("colours"), 1),
            tonic::Code::InvalidArgument,
            "input 0",
        ),
    ];
    for (what, request, code, message) in cases {
        // Shown with the failure, if this case fails.
        eprintln!("{what}");
        refused(server.client.classify(request).await, code, message);
    }
    let fine = server
        .client
        .classify(request(input(), named("colours"), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fine.results[0].scores.len(), 6, "top_k 0: every label");
}

/// A 20,000-label classifier answers from HNSW; its top-1 equals the exact top-1 on at least 99%
/// of queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_top_1_matches_exact_scoring_on_a_large_vocabulary() {
    use clipd::ann::HnswSettings;
    use clipd::classify::Classifier;
    use clipd::model::Scoring;
    let server = TestServer::start(demo_settings()).await;
    let engine = server.server.engine().unwrap().clone();
    let labels = label_vocabulary(20_000);
    let dim = engine.description().dim;
    let mut vectors = Vec::with_capacity(labels.len() * dim);
    for chunk in labels.chunks(256) {
        let inputs = chunk
            .iter()
            .map(|l| clipd::engine::EmbedInput::Text(format!("a photo of a {l}.")))
            .collect();
        let embedded = engine.embed(inputs, None).await.unwrap();
        vectors.extend(embedded.embeddings.into_iter().flat_map(|e| e.values));
    }
    let (_, inputs) = scenes(0x4A5, 200);
    let mut queries = Vec::new();
    for chunk in inputs.chunks(100) {
        let response = embed(&mut server.client.clone(), chunk.to_vec()).await;
        queries.extend(response.embeddings.into_iter().map(|e| e.values));
    }
    const SOFTMAX: Scoring = Scoring::Softmax { logit_scale: 100.0 };
    let hnsw = HnswSettings::default();
    let none = vec![None; labels.len()];
    let (approximate, exact) = tokio::task::spawn_blocking(move || {
        let approximate = Classifier::new(
            labels.clone(),
            vectors.clone(),
            64,
            none.clone(),
            2000,
            &hnsw,
        );
        let exact = Classifier::new(labels, vectors, dim, none, usize::MAX, &hnsw);
        (approximate, exact)
    })
    .await
    .unwrap();
    assert!(approximate.uses_index() && !exact.uses_index());
    let agree = queries
        .iter()
        .filter(|q| {
            let a = approximate.classify(q, 1, SOFTMAX);
            let e = exact.classify(q, 1, SOFTMAX);
            a.scores[0].label == e.scores[0].label
        })
        .count();
    assert!(
        agree * 100 >= queries.len() * 99,
        "{agree} of {}",
        queries.len()
    );
}

/// A label set whose prompts outnumber the whole queue budget (13 labels x 80 templates = 1,040
/// prompts; budget 1,024) is embedded in turns, and the request's own input still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_larger_than_the_queue_are_embedded_in_turns() {
    let mut server = TestServer::start(demo_settings()).await;
    let labels: Vec<String> = class_labels().into_iter().take(13).collect();
    let response = server
        .client
        .classify(request(
            vec![image("rgb_64x64.png")],
            Some(Labels::LabelSet(pb::LabelSet {
                labels,
                templates: vec![],
                template_set: pb::TemplateSet::Imagenet as i32,
            })),
            3,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results[0].scores.len(), 3);
    assert_eq!(server.stats().rejected, 0);
}
