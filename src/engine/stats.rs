//! Counters the engine keeps about itself: what ran, what was refused or dropped, and whether the
//! model thread is inside a forward pass (for stall detection).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::telemetry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Text,
    Image,
}

impl Modality {
    /// The value of the metrics' `modality` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
        }
    }
}

#[derive(Debug)]
pub struct Stats {
    epoch: Instant,
    batches: [AtomicU64; 2],
    inputs: [AtomicU64; 2],
    rejected: AtomicU64,
    expired: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    /// Microseconds since `epoch` at which the running forward pass started, plus one; 0: idle.
    busy_since: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub text_batches: u64,
    pub text_inputs: u64,
    pub image_batches: u64,
    pub image_inputs: u64,
    /// Inputs refused because the queue was full.
    pub rejected: u64,
    /// Inputs whose deadline passed before they reached the model.
    pub expired: u64,
    /// Inputs whose request went away before they reached the model.
    pub cancelled: u64,
    /// Inputs in batches the model failed on.
    pub failed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            batches: Default::default(),
            inputs: Default::default(),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Relaxed);
        StatsSnapshot {
            text_batches: get(&self.batches[0]),
            text_inputs: get(&self.inputs[0]),
            image_batches: get(&self.batches[1]),
            image_inputs: get(&self.inputs[1]),
            rejected: get(&self.rejected),
            expired: get(&self.expired),
            cancelled: get(&self.cancelled),
            failed: get(&self.failed),
        }
    }

    pub(crate) fn rejected(&self, inputs: usize) {
        self.rejected.fetch_add(inputs as u64, Relaxed);
        telemetry::inputs_rejected(inputs);
    }

    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Relaxed);
        telemetry::input_expired();
    }

    pub(crate) fn cancelled(&self) {
        self.cancelled.fetch_add(1, Relaxed);
        telemetry::input_cancelled();
    }

    pub(crate) fn failed(&self, inputs: usize) {
        self.failed.fetch_add(inputs as u64, Relaxed);
        telemetry::inputs_failed(inputs);
    }

    pub(crate) fn forward_started(&self) {
        let since = self.epoch.elapsed().as_micros() as u64 + 1;
        self.busy_since.store(since, Relaxed);
    }

    pub(crate) fn forward_ended(&self) {
        self.busy_since.store(0, Relaxed);
    }

    /// A batch the model answered.
    pub(crate) fn ran(&self, modality: Modality, inputs: usize) {
        let i = modality as usize;
        self.batches[i].fetch_add(1, Relaxed);
        self.inputs[i].fetch_add(inputs as u64, Relaxed);
    }

    /// How long the running forward pass has taken so far; zero when idle.
    pub(crate) fn busy_for(&self) -> Duration {
        match self.busy_since.load(Relaxed) {
            0 => Duration::ZERO,
            since => self
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_micros(since - 1)),
        }
    }
}
