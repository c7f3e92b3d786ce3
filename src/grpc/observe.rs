//! Counts and times every gRPC request by method and final status code. The status of a
//! successful or streamed response is in its trailers, so the response body is wrapped and the
//! request is recorded when the body ends (or is dropped: a client that went away, "Cancelled").

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use tonic::codegen::Bytes;
use tower::{Layer, Service};

use crate::telemetry;

#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

type Response = http::Response<tonic::body::Body>;

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = rpc_label(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // A trailers-only response (an error before any message) has the status in its headers.
            let code = code_of(response.headers());
            Ok(response.map(|inner| {
                tonic::body::Body::new(Observed {
                    inner: tonic::body::Body::new(inner),
                    rpc,
                    started,
                    code,
                    recorded: false,
                })
            }))
        })
    }
}

fn code_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// The name of a code, as gRPC's own libraries print it ("InvalidArgument").
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

struct Observed {
    inner: tonic::body::Body,
    rpc: &'static str,
    started: Instant,
    code: Option<tonic::Code>,
    recorded: bool,
}

impl Observed {
    fn record(&mut self) {
        if !std::mem::replace(&mut self.recorded, true) {
            let code = self.code.map_or("Cancelled", code_name);
            telemetry::request_done(self.rpc, code, self.started.elapsed());
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_of) {
                    self.code = Some(code);
                }
            }
            Poll::Ready(None) => self.record(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.record();
    }
}

/// The gRPC methods the server has, as `package.Service/Method`: the only values of the `rpc`
/// label (anything else is "unknown", so that made-up paths cannot grow the label set).
pub fn rpc_label(path: &str) -> &'static str {
    static METHODS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let methods = METHODS.get_or_init(|| {
        use prost::Message;
        let mut names: Vec<String> = vec![
            "grpc.health.v1.Health/Check".into(),
            "grpc.health.v1.Health/Watch".into(),
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into(),
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".into(),
        ];
        let set = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET)
            .expect("the built-in descriptor set decodes");
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    names.push(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        names
            .into_iter()
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .collect()
    });
    let path = path.strip_prefix('/').unwrap_or(path);
    methods.get(path).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_are_the_servers_methods() {
        assert_eq!(rpc_label("/clipd.v1.Clip/Embed"), "clipd.v1.Clip/Embed");
        assert_eq!(
            rpc_label("/clipd.v1.Collections/Upsert"),
            "clipd.v1.Collections/Upsert"
        );
        assert_eq!(
            rpc_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(rpc_label("/clipd.v1.Clip/Nope"), "unknown");
        assert_eq!(rpc_label("/x"), "unknown");
    }
}
