//! tonic refuses a request message over the size limit with OUT_OF_RANGE, in the response's
//! trailers, before any handler runs; clipd's contract says INVALID_ARGUMENT for a request that
//! is too large, with the limit named. This rewrites that one answer (and `explain` words it for
//! EmbedStream, where the status reaches the handler instead).

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
    if headers.get("grpc-status").is_none_or(|s| s != "11") {
        return;
    }
    let Some(text) = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        // grpc-message is percent-encoded.
        .and_then(|m| percent_encoding::percent_decode_str(m).decode_utf8().ok())
        .and_then(|m| explain(&m))
    else {
        return;
    };
    headers.insert("grpc-status", HeaderValue::from_static("3"));
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert("grpc-message", value);
    }
}

/// clipd's words for tonic's "message too large" message; None for any other message.
pub fn explain(tonic_message: &str) -> Option<String> {
    // "N bytes, the limit is: M bytes"
    let rest = tonic_message.strip_prefix(TONIC_MESSAGE)?;
    let numbers: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    Some(match numbers[..] {
        [found, limit] => format!(
            "the request message is {found} bytes; the limit is {limit} (server.max_message_bytes)"
        ),
        _ => "the request message is over server.max_message_bytes".to_owned(),
    })
}
