//! tonic refuses a request message over the size limit with OUT_OF_RANGE, in the response's
//! trailers, before any handler runs; clipd's contract says INVALID_ARGUMENT for a request that
//! is too large, with the limit named. This rewrites that one answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// What tonic's decoder says (tonic 0.14, codec/decode.rs).
const TONIC_MESSAGE: &str = "Error, decoded message length too large: found ";

pub fn rewrite<B: Body + Unpin>(response: http::Response<B>) -> http::Response<Rewritten<B>> {
    let (mut parts, body) = response.into_parts();
    rewrite_status(&mut parts.headers);
    http::Response::from_parts(parts, Rewritten(body))
}

/// A response body whose trailers get `rewrite_status`.
pub struct Rewritten<B>(B);

impl<B: Body + Unpin> Body for Rewritten<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        rewrite_status(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// OUT_OF_RANGE "decoded message length too large" (headers or trailers) -> INVALID_ARGUMENT.
fn rewrite_status(headers: &mut HeaderMap) {
    let is_out_of_range = headers.get("grpc-status").is_some_and(|s| s == "11");
    let numbers: Option<Vec<String>> = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        // grpc-message is percent-encoded.
        .and_then(|m| percent_encoding::percent_decode_str(m).decode_utf8().ok())
        .and_then(|m| m.strip_prefix(TONIC_MESSAGE).map(str::to_owned))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        });
    let (true, Some(numbers)) = (is_out_of_range, numbers) else {
        return;
    };
    let text = match &numbers[..] {
        [found, limit] => format!(
            "the request message is {found} bytes; the limit is {limit} (server.max_message_bytes)"
        ),
        _ => "the request message is over server.max_message_bytes".to_owned(),
    };
    headers.insert("grpc-status", HeaderValue::from_static("3"));
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert("grpc-message", value);
    }
}
