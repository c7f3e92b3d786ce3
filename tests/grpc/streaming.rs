//! EmbedStream: order, errors, and back-pressure on a client that does not read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clipd::grpc::pb;

use crate::common::cosine;
use crate::support::*;

fn message(i: usize) -> pb::EmbedRequest {
    let inputs = (0..=(i % 3))
        .map(|j| match (i + j) % 2 {
            0 => text(&format!("message {i} input {j}")),
            _ => image(IMAGES[(i + j) % IMAGES.len()]),
        })
        .collect();
    request(inputs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_come_in_request_order() {
    let mut s = settings("tiny-a");
    s.batching.max_batch_size = 4;
    s.server.stream_max_in_flight = 3;
    let mut server = TestServer::start(s).await;
    let messages: Vec<pb::EmbedRequest> = (0..20).map(message).collect();
    let mut stream = open_stream(&mut server.client, messages.clone()).await;
    let mut i = 0;
    while let Some(response) = stream.message().await.unwrap() {
        let alone = embed(&mut server.client, messages[i].inputs.clone()).await;
        assert_eq!(
            response.embeddings.len(),
            alone.embeddings.len(),
            "message {i}"
        );
        for (got, want) in response.embeddings.iter().zip(&alone.embeddings) {
            assert!(cosine(&got.values, &want.values) >= 0.99999, "message {i}");
        }
        i += 1;
    }
    assert_eq!(i, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_ends_the_stream_after_the_good_ones() {
    let mut server = TestServer::start(settings("tiny-b")).await;
    let mut messages: Vec<pb::EmbedRequest> = (0..5).map(message).collect();
    messages.insert(
        3,
        request(vec![text("fine"), image_bytes(b"not an image".to_vec())]),
    );
    let mut stream = open_stream(&mut server.client, messages).await;
    for i in 0..3 {
        assert!(stream.message().await.unwrap().is_some(), "message {i}");
    }
    refused(
        stream.message().await,
        tonic::Code::InvalidArgument,
        "message 3: input 1: unsupported image format",
    );
    embed(&mut server.client, vec![text("still serving")]).await;
}

/// A client that sends large messages and reads nothing: once its receive window is full of
/// responses, the server stops reading the stream (a bounded number of messages in flight)
/// instead of buffering all of them; once the client reads, every response arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_held_back() {
    const MESSAGES: usize = 100;
    let mut s = settings("tiny-a");
    s.server.stream_max_in_flight = 2;
    let server = TestServer::start(s).await;
    // A small receive window: a few responses fill it.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.server.addr()))
            .unwrap()
            .initial_stream_window_size(1024)
            .connect()
            .await
            .unwrap();
    let mut client = clipd::grpc::pb::clip_client::ClipClient::new(channel);
    // About 1 MB per message, so that the server's receive window holds about one.
    let big = image_bytes(bmp(600, 560));
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let outgoing = tokio_stream::iter((0..MESSAGES).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        request(vec![big.clone(), text(&format!("message {i}"))])
    }));
    let mut stream = client.embed_stream(outgoing).await.unwrap().into_inner();
    // Let the client push as much as the server takes.
    let mut last = usize::MAX;
    while pulled.load(Ordering::SeqCst) != last {
        last = pulled.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        last < MESSAGES / 2,
        "the client got {last} of {MESSAGES} messages out without reading a response"
    );
    let mut received = 0;
    while let Some(response) = stream.message().await.unwrap() {
        assert_eq!(response.embeddings.len(), 2);
        received += 1;
    }
    assert_eq!(received, MESSAGES);
}

/// An uncompressed 24-bit BMP: its size is what travels.
fn bmp(width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    pixels
        .write_to(&mut bytes, image::ImageFormat::Bmp)
        .unwrap();
    bytes.into_inner()
}
