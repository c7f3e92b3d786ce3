//! The plain-HTTP side port: `GET /metrics` (Prometheus text), `GET /livez` (200 while the process
//! runs) and `GET /readyz` (200 while the server takes requests; 503 while the model loads, while a
//! forward pass is stalled, and during shutdown). Kubernetes' gRPC probes cannot speak TLS: with
//! TLS on, the chart probes these instead.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Levels;

/// What the endpoints ask the server.
pub trait Probe: Send + Sync + 'static {
    fn ready(&self) -> bool;
    fn levels(&self) -> Levels;
}

/// Serves the endpoints on `listener` until `stop` resolves.
pub fn serve(
    listener: TcpListener,
    probe: Arc<dyn Probe>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<std::io::Result<()>> {
    let handle = super::handle();
    let levels = Arc::clone(&probe);
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let probe = Arc::clone(&levels);
                async move {
                    super::set_levels(&probe.levels());
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = probe.ready();
                async move {
                    match ready {
                        true => (StatusCode::OK, "ready\n"),
                        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
    })
}
