//! Embed: what comes back, whatever batch an input lands in.

use std::process::Command;

use clipd::grpc::pb;

use crate::common::{self, cosine, floats};
use crate::support::*;

/// The same inputs through `clipd embed` and through the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_equal_the_command_line() {
    let mut server = TestServer::start(settings("tiny-a")).await;
    let mut args = vec![
        "embed".to_owned(),
        "--model".into(),
        common::model_dir("tiny-a").display().to_string(),
    ];
    for t in TEXTS {
        args.extend(["--text".into(), t.into()]);
    }
    for i in IMAGES {
        args.extend([
            "--image".into(),
            common::image_path(i).display().to_string(),
        ]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_clipd"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let inputs: Vec<pb::Input> = TEXTS
        .iter()
        .map(|t| text(t))
        .chain(IMAGES.iter().map(|i| image(i)))
        .collect();
    let response = embed(&mut server.client, inputs).await;
    assert_eq!(response.model, "tiny-a");
    assert_eq!(response.embeddings.len(), TEXTS.len() + IMAGES.len());
    let expected: Vec<Vec<f32>> = cli["text"]
        .as_array()
        .unwrap()
        .iter()
        .chain(cli["image"].as_array().unwrap())
        .map(floats)
        .collect();
    for (i, (got, want)) in response.embeddings.iter().zip(&expected).enumerate() {
        assert_eq!(got.values.len(), 24);
        let c = cosine(&got.values, want);
        assert!(c >= 0.99999, "input {i}: cosine {c}");
        assert!(!got.truncated);
    }
    let timing = response.timing.expect("timing");
    assert!(
        timing.batches >= 2,
        "texts and images run in separate batches"
    );
    assert!(timing.model_micros > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_texts_say_they_were_truncated() {
    let mut server = TestServer::start(settings("tiny-b")).await;
    let long = "many words ".repeat(100);
    let response = embed(&mut server.client, vec![text(&long), text("short")]).await;
    assert!(response.embeddings[0].truncated);
    assert!(!response.embeddings[1].truncated);
}

/// One input alone, then inside a crowd of concurrent requests, then in a request that is split
/// across several batches: the same embedding each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_embeds_the_same_in_any_batch() {
    let mut s = settings("tiny-a");
    s.batching.max_batch_size = 5;
    s.batching.max_delay_ms = 20;
    let server = TestServer::start(s).await;
    let mut client = server.client.clone();
    let alone_image = embed(&mut client, vec![image("q75_420_333x251.jpg")]).await;
    let alone_text = embed(&mut client, vec![text("a purple square")]).await;
    assert_eq!(alone_image.timing.unwrap().batch_size, 1);

    let mut crowd = Vec::new();
    for i in 0..12 {
        let mut client = server.client.clone();
        crowd.push(tokio::spawn(async move {
            let input = match i % 2 {
                0 => image(IMAGES[i % IMAGES.len()]),
                _ => text(TEXTS[i % TEXTS.len()]),
            };
            embed(&mut client, vec![input]).await
        }));
    }
    let split = embed(
        &mut client,
        (0..13)
            .map(|i| match i {
                7 => image("q75_420_333x251.jpg"),
                11 => text("a purple square"),
                _ if i % 2 == 0 => image(IMAGES[i % IMAGES.len()]),
                _ => text(TEXTS[i % TEXTS.len()]),
            })
            .collect(),
    )
    .await;
    for task in crowd {
        task.await.unwrap();
    }
    let timing = split.timing.unwrap();
    assert!(timing.batches >= 3, "13 inputs in batches of 5: {timing:?}");
    assert!(timing.batch_size > 1);
    let c = cosine(
        &split.embeddings[7].values,
        &alone_image.embeddings[0].values,
    );
    assert!(c >= 0.99999, "image: {c}");
    let c = cosine(
        &split.embeddings[11].values,
        &alone_text.embeddings[0].values,
    );
    assert!(c >= 0.99999, "text: {c}");
}

/// Single-input clients arriving together share batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_input_clients_are_batched() {
    let mut s = settings("tiny-b");
    s.batching.max_batch_size = 16;
    s.batching.max_delay_ms = 200;
    let server = TestServer::start(s).await;
    let before = server.stats();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let mut client = server.client.clone();
            tokio::spawn(async move {
                embed(&mut client, vec![text(&format!("caption number {i}"))]).await
            })
        })
        .collect();
    let mut largest = 0;
    for task in tasks {
        let response = task.await.unwrap();
        largest = largest.max(response.timing.unwrap().batch_size);
    }
    let after = server.stats();
    assert_eq!(after.text_inputs - before.text_inputs, 16);
    let batches = after.text_batches - before.text_batches;
    assert!(batches < 16, "16 inputs ran in {batches} batches");
    assert!(largest > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_info_describes_the_model_and_the_limits() {
    let mut s = settings("tiny-b");
    s.limits.max_inputs_per_request = 64;
    s.batching.max_batch_size = 8;
    s.batching.max_delay_ms = 3;
    let mut server = TestServer::start(s).await;
    let info = model_info(&mut server.client).await;
    assert_eq!(info.name, "tiny-b");
    assert_eq!(info.dim, 20);
    assert_eq!(info.image_size, 48);
    assert_eq!(info.context_length, 77);
    assert_eq!(info.device, "cpu");
    assert_eq!(info.dtype, "f32");
    assert_eq!(info.max_inputs_per_request, 64);
    assert_eq!(info.max_image_bytes, 20 << 20);
    assert_eq!(info.max_image_pixels, 40_000_000);
    assert_eq!(info.max_text_bytes, 16 << 10);
    assert_eq!(info.max_message_bytes, 64 << 20);
    assert_eq!(info.max_batch_size, 8);
    assert_eq!(info.max_delay_ms, 3);
}

/// Every kind of bad input fails its own request with INVALID_ARGUMENT naming the input, while a
/// good request sent alongside succeeds and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_alone() {
    let mut s = settings("tiny-a");
    s.limits.max_inputs_per_request = 4;
    s.limits.max_image_bytes = 200_000;
    s.limits.max_image_pixels = 500_000;
    s.limits.max_text_bytes = 100;
    s.batching.max_delay_ms = 50;
    let server = TestServer::start(s).await;
    let good = || vec![text("a red circle"), image("rgb_64x64.png")];
    let mut truncated_jpeg = std::fs::read(common::image_path("q90_444_320x240.jpg")).unwrap();
    truncated_jpeg.truncate(truncated_jpeg.len() / 2);
    let cases: Vec<(&str, Vec<pb::Input>, &str)> = vec![
        ("no inputs", vec![], "no inputs"),
        (
            "an input with neither text nor image",
            vec![text("fine"), pb::Input { kind: None }],
            "input 1 is empty",
        ),
        (
            "too many inputs",
            vec![text("x"); 5],
            "5 inputs; the limit is 4",
        ),
        (
            "an empty image",
            vec![image_bytes(vec![])],
            "input 0: image is empty",
        ),
        (
            "bytes that are no image",
            vec![text("ok"), image_bytes(b"hello, world".to_vec())],
            "input 1: unsupported image format",
        ),
        (
            "a truncated JPEG",
            vec![image_bytes(truncated_jpeg)],
            "input 0: cannot decode image",
        ),
        (
            "an image over the byte limit",
            vec![image("rgb_1000x999.png")],
            "input 0: image is",
        ),
        (
            "an image over the pixel limit",
            vec![image_bytes(png(1000, 600))],
            "input 0: image is 1000x600 pixels",
        ),
        (
            "a text over the byte limit",
            vec![text("ok"), text("ok"), text(&"y".repeat(101))],
            "input 2: text is 101 bytes",
        ),
    ];
    for (what, inputs, message) in cases {
        let mut bad_client = server.client.clone();
        let mut good_client = server.client.clone();
        let (bad, fine) = tokio::join!(
            async move { bad_client.embed(request(inputs)).await },
            async move { embed(&mut good_client, good()).await },
        );
        // Shown with the failure, if this case fails.
        eprintln!("{what}");
        refused(bad, tonic::Code::InvalidArgument, message);
        assert_eq!(fine.embeddings.len(), 2, "{what}");
    }
    assert_eq!(server.stats().failed, 0);
}

/// A message over the server's size limit is refused with INVALID_ARGUMENT naming the limit, in a
/// unary call and in a stream, without harm to the connection's other requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let mut s = settings("tiny-a");
    s.server.max_message_bytes = 300_000;
    s.limits.max_image_bytes = 300_000;
    let mut server = TestServer::start(s).await;
    let big = vec![image("rgb_1000x999.png"); 2];
    let status = embed_err(&mut server.client, big.clone()).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("the limit is 300000"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_message_bytes"),
        "{}",
        status.message()
    );
    let messages = vec![request(vec![image("rgb_64x64.png")]), request(big)];
    let mut stream = open_stream(&mut server.client, messages).await;
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.expect_err("message 1 is too large");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("message 1: "),
        "{}",
        status.message()
    );
    embed(&mut server.client, vec![image("rgb_64x64.png")]).await;
}

/// A PNG of the given size, in memory.
fn png(width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_pixel(width, height, image::Rgb([200, 40, 40]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    pixels
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

/// The model's own texts (the probe that identifies it to collections) are not held to the
/// request limit: a tiny limit still loads, and binds requests only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_text_limit_binds_requests_not_loading() {
    let mut s = settings("tiny-a");
    s.limits.max_text_bytes = 8;
    let mut server = TestServer::start(s).await;
    assert_eq!(
        embed(&mut server.client, vec![text("short")])
            .await
            .embeddings
            .len(),
        1
    );
    let refused = embed_err(&mut server.client, vec![text("rather longer than 8")]).await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}
