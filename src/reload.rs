//! Re-reading files the server was started with (API keys, TLS certificates, Milvus' token)
//! while it runs, so that a rotated Kubernetes Secret takes effect without a restart.

use std::time::Duration;

use tokio::sync::watch;

use crate::telemetry;

/// What one re-read did.
pub enum Reread {
    Unchanged,
    /// Put in force; the text says what, for the log.
    Changed(String),
}

/// Calls `reread` every `interval` (on a blocking thread: it reads files) until `stopping`
/// turns true. A failed re-read keeps what is in force; changes and failures are logged and
/// counted as `what`.
pub fn every<E, F>(
    what: &'static str,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
    reread: F,
) where
    E: std::fmt::Display + Send + 'static,
    F: Fn() -> Result<Reread, E> + Clone + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.changed() => return,
            }
            match tokio::task::spawn_blocking(reread.clone()).await {
                Ok(Ok(Reread::Unchanged)) => {}
                Ok(Ok(Reread::Changed(what_changed))) => {
                    telemetry::reloaded(what, true);
                    tracing::info!(what, "reloaded: {what_changed}");
                }
                Ok(Err(e)) => {
                    telemetry::reloaded(what, false);
                    tracing::warn!(what, error = %e, "not reloaded; what was in force stays");
                }
                Err(e) => tracing::error!(what, error = %e, "reloading panicked"),
            }
        }
    });
}
