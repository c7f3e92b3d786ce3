//! The queue budget, deadlines and cancellation: refused at once, or dropped before the model.

use std::time::Duration;

use crate::support::*;

/// A batcher that holds partial batches for a long time: queued inputs stay queued while the test
/// looks at them.
pub fn slow_batching() -> TestSettings {
    let mut s = settings("tiny-a");
    s.batching.max_batch_size = 64;
    s.batching.max_delay_ms = 1500;
    s.batching.max_queued_inputs = 8;
    s.limits.max_inputs_per_request = 8;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let server = TestServer::start(slow_batching()).await;
    let mut first = server.client.clone();
    let queued = tokio::spawn(async move { embed(&mut first, vec![text("waiting"); 6]).await });
    let engine = server.server.engine().unwrap().clone();
    while engine.queued_inputs() < 6 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut second = server.client.clone();
    let status = embed_err(&mut second, vec![text("one"), text("two"), text("three")]).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        !queued.is_finished(),
        "refused before the queued request was answered"
    );
    // What fits is still admitted.
    let fits = embed(&mut second, vec![text("one"), text("two")]).await;
    assert_eq!(fits.embeddings.len(), 2);
    assert_eq!(queued.await.unwrap().embeddings.len(), 6);
    assert_eq!(server.stats().rejected, 3);
    // The admission budget comes back just after the answers go out.
    for _ in 0..200 {
        if engine.queued_inputs() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.queued_inputs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_past_their_deadline_never_reach_the_model() {
    let server = TestServer::start(slow_batching()).await;
    let mut client = server.client.clone();
    let late = client
        .embed(with_timeout(
            request(vec![text("late"), image("rgb_64x64.png")]),
            Duration::from_millis(100),
        ))
        .await;
    // The server answers just before the deadline, ahead of the client's own timer (tonic's
    // reports CANCELLED "Timeout expired").
    refused(late, tonic::Code::DeadlineExceeded, "deadline");
    server.wait_for_stats(|s| s.expired == 2).await;
    let stats = server.stats();
    assert_eq!(stats.text_inputs + stats.image_inputs, 0, "{stats:?}");
    assert_eq!(server.server.engine().unwrap().queued_inputs(), 0);
    // A generous deadline is met.
    let response = client
        .embed(with_timeout(
            request(vec![text("on time")]),
            Duration::from_secs(30),
        ))
        .await
        .unwrap();
    assert_eq!(response.into_inner().embeddings.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_never_reach_the_model() {
    let server = TestServer::start(slow_batching()).await;
    let mut client = server.client.clone();
    let engine = server.server.engine().unwrap().clone();
    let abandoned = tokio::spawn(async move {
        embed(&mut client, vec![text("abandoned"), image("rgb_64x64.png")]).await
    });
    while engine.queued_inputs() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    abandoned.abort();
    server.wait_for_stats(|s| s.cancelled == 2).await;
    let stats = server.stats();
    assert_eq!(stats.text_inputs + stats.image_inputs, 0, "{stats:?}");
    assert_eq!(stats.expired, 0);
    assert_eq!(engine.queued_inputs(), 0);
}

/// A stream of full text batches keeps the model's slot busy; a lone image whose partial batch is
/// due still gets its turn instead of waiting for the texts to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_modality_cannot_starve_the_other() {
    let mut s = settings("tiny-a");
    s.batching.max_batch_size = 64;
    s.batching.max_delay_ms = 1;
    let server = TestServer::start(s).await;
    // Each request is one full batch of long texts, slower to run than a client takes to send
    // the next one.
    let long = "words of a long caption ".repeat(20);
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let floods: Vec<_> = (0..6)
        .map(|i| {
            let mut client = server.client.clone();
            let flooding = flooding.clone();
            let caption = format!("{long} {i}");
            tokio::spawn(async move {
                let mut sent = 0;
                while flooding.load(std::sync::atomic::Ordering::SeqCst) && sent < 300 {
                    embed(&mut client, vec![text(&caption); 64]).await;
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let engine = server.server.engine().unwrap().clone();
    while engine.stats().text_batches < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut client = server.client.clone();
    embed(&mut client, vec![image("rgb_64x64.png")]).await;
    let texts_meanwhile = engine.stats().text_batches;
    flooding.store(false, std::sync::atomic::Ordering::SeqCst);
    for flood in floods {
        assert!(
            flood.await.unwrap() < 300,
            "the image waited for the floods to end"
        );
    }
    assert!(texts_meanwhile > 20);
}
