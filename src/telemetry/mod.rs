//! Prometheus metrics: every name in one place, described once, recorded through the `metrics`
//! facade and rendered by `metrics-exporter-prometheus` for `GET /metrics` (see `http`).
//!
//! Label values are bounded and never come from requests: RPC names from the proto's descriptor
//! set, status codes, modalities.

pub mod http;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

pub const REQUESTS: &str = "clipd_requests_total";
pub const REQUEST_DURATION: &str = "clipd_request_duration_seconds";
pub const QUEUE_WAIT: &str = "clipd_queue_wait_seconds";
pub const MODEL_BATCH: &str = "clipd_model_batch_seconds";
pub const BATCH_SIZE: &str = "clipd_batch_size";
pub const QUEUE_DEPTH: &str = "clipd_queue_depth";
pub const INPUTS_REJECTED: &str = "clipd_inputs_rejected_total";
pub const INPUTS_EXPIRED: &str = "clipd_inputs_expired_total";
pub const INPUTS_CANCELLED: &str = "clipd_inputs_cancelled_total";
pub const INPUTS_FAILED: &str = "clipd_inputs_failed_total";
pub const CACHE_HITS: &str = "clipd_classify_cache_hits_total";
pub const CACHE_MISSES: &str = "clipd_classify_cache_misses_total";
pub const COLLECTIONS: &str = "clipd_collections";
pub const INDEX_ITEMS: &str = "clipd_index_items";
pub const INDEX_TOMBSTONES: &str = "clipd_index_tombstones";
pub const SEARCH_DURATION: &str = "clipd_search_duration_seconds";
pub const BUILD_INFO: &str = "clipd_build_info";
pub const RELOADS: &str = "clipd_reloads_total";

const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process's recorder (metrics are process-wide; servers started in one process share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "gRPC requests answered, by method and status code."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "gRPC request latency, by method (streams: until the stream ends)."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time an input waited in the queue for its batch, by modality."
    );
    describe_histogram!(
        MODEL_BATCH,
        Unit::Seconds,
        "Model time per batch, by modality."
    );
    describe_histogram!(BATCH_SIZE, "Inputs per batch the model ran, by modality.");
    describe_gauge!(QUEUE_DEPTH, "Inputs admitted and not yet answered.");
    describe_counter!(
        INPUTS_REJECTED,
        "Inputs refused because the queue was full (RESOURCE_EXHAUSTED)."
    );
    describe_counter!(
        INPUTS_EXPIRED,
        "Inputs whose deadline passed before they reached the model."
    );
    describe_counter!(
        INPUTS_CANCELLED,
        "Inputs whose request went away before they reached the model."
    );
    describe_counter!(INPUTS_FAILED, "Inputs in batches the model failed on.");
    describe_counter!(
        CACHE_HITS,
        "Label vectors of request label sets found in the cache."
    );
    describe_counter!(
        CACHE_MISSES,
        "Label vectors of request label sets that had to be embedded."
    );
    describe_gauge!(COLLECTIONS, "Collections served.");
    describe_gauge!(INDEX_ITEMS, "Live items over all collections.");
    describe_gauge!(
        INDEX_TOMBSTONES,
        "Replaced or deleted items still in the graphs, over all collections."
    );
    describe_histogram!(
        SEARCH_DURATION,
        Unit::Seconds,
        "Time to search a collection's index (query embedding excluded)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which clipd and model run where."
    );
    describe_counter!(
        RELOADS,
        "Re-reads of files the server runs with (what: api_keys, tls) that changed what is in \
         force (outcome changed) or could not be used (outcome failed; the old stayed)."
    );
    // Unlabelled series exist from the start, so that rate() and alerts see zeros, not gaps.
    for name in [
        INPUTS_REJECTED,
        INPUTS_EXPIRED,
        INPUTS_CANCELLED,
        INPUTS_FAILED,
        CACHE_HITS,
        CACHE_MISSES,
    ] {
        counter!(name).absolute(0);
    }
}

/// A batch the model answered: its size, its model time, and how long each input waited.
/// `modality` is the label value ("text" or "image").
pub fn batch_ran(
    modality: &'static str,
    size: usize,
    model: Duration,
    waits: impl Iterator<Item = Duration>,
) {
    let m = modality;
    histogram!(BATCH_SIZE, "modality" => m).record(size as f64);
    histogram!(MODEL_BATCH, "modality" => m).record(model.as_secs_f64());
    let wait = histogram!(QUEUE_WAIT, "modality" => m);
    for w in waits {
        wait.record(w.as_secs_f64());
    }
}

pub fn inputs_rejected(count: usize) {
    counter!(INPUTS_REJECTED).increment(count as u64);
}

pub fn input_expired() {
    counter!(INPUTS_EXPIRED).increment(1);
}

pub fn input_cancelled() {
    counter!(INPUTS_CANCELLED).increment(1);
}

pub fn inputs_failed(count: usize) {
    counter!(INPUTS_FAILED).increment(count as u64);
}

pub fn cache_lookup(hit: bool) {
    counter!(if hit { CACHE_HITS } else { CACHE_MISSES }).increment(1);
}

pub fn reloaded(what: &'static str, changed: bool) {
    let outcome = if changed { "changed" } else { "failed" };
    counter!(RELOADS, "what" => what, "outcome" => outcome).increment(1);
}

pub fn searched(took: Duration) {
    histogram!(SEARCH_DURATION).record(took.as_secs_f64());
}

/// A gRPC request answered (or abandoned by its client: `code` "Cancelled").
pub fn request_done(rpc: &'static str, code: &'static str, took: Duration) {
    counter!(REQUESTS, "rpc" => rpc, "code" => code).increment(1);
    histogram!(REQUEST_DURATION, "rpc" => rpc).record(took.as_secs_f64());
}

/// Levels read when scraped.
pub struct Levels {
    pub queue_depth: usize,
    pub collections: usize,
    pub items: usize,
    pub tombstones: usize,
}

pub fn set_levels(levels: &Levels) {
    gauge!(QUEUE_DEPTH).set(levels.queue_depth as f64);
    gauge!(COLLECTIONS).set(levels.collections as f64);
    gauge!(INDEX_ITEMS).set(levels.items as f64);
    gauge!(INDEX_TOMBSTONES).set(levels.tombstones as f64);
}

pub fn build_info(model: &str, device: &str, dtype: &str) {
    gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "model" => model.to_owned(),
        "device" => device.to_owned(),
        "dtype" => dtype.to_owned()
    )
    .set(1.0);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve GET /metrics, /livez and /readyz.
    pub enabled: bool,
    /// Where (port 0: any free port).
    pub addr: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: ([0, 0, 0, 0], 9090).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_counters_start_at_zero() {
        let text = handle().render();
        assert!(text.contains("\nclipd_inputs_expired_total 0\n"), "{text}");
    }
}
