//! The client's deadline, as gRPC sends it: the `grpc-timeout` header.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Request, Status};

use crate::engine::EngineError;

/// tonic's own timeout layer answers CANCELLED at the client's deadline; clipd answers
/// DEADLINE_EXCEEDED (and drops the request's queued inputs) this much earlier, so that its answer
/// is the one sent.
const MARGIN: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

/// An interceptor: notes the deadline when the request arrives, before its body is read.
pub fn stamp(mut request: Request<()>) -> Result<Request<()>, Status> {
    let deadline = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| parse(value.to_str().ok()?))
        .and_then(|timeout| Instant::now().checked_add(timeout.saturating_sub(MARGIN)));
    if let Some(deadline) = deadline {
        request.extensions_mut().insert(Deadline(deadline));
    }
    Ok(request)
}

/// The deadline `stamp` noted, if the client set one. A malformed header counts as none, as
/// tonic's timeout layer treats it.
pub fn of<T>(request: &Request<T>) -> Option<Instant> {
    request.extensions().get::<Deadline>().map(|d| d.0)
}

/// Runs `work`, or gives up with DEADLINE_EXCEEDED at the deadline.
pub async fn within<T, E: From<EngineError>>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or(Err(EngineError::DeadlineExceeded.into())),
        None => work.await,
    }
}

/// "TimeoutValue TimeoutUnit": at most 8 ASCII digits, then H, M, S, m, u or n.
fn parse(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn every_unit() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for value in ["", "S", "5", "5s", "123456789S", "-5S", "1.5S", "5 S"] {
            assert_eq!(parse(value), None, "{value:?}");
        }
    }
}
