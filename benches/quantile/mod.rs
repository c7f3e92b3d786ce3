//! Nearest-rank quantiles of measured latencies, shared by the load benchmarks.

/// The value at quantile `q` (0 to 1) of `sorted`, ascending; `None` when it is empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * q).round() as usize).copied()
}
