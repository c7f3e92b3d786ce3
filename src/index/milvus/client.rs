//! The connection to Milvus: a lazily connected channel (clipd starts, and serves Embed and
//! Classify, while Milvus is away; calls then answer UNAVAILABLE and it reconnects on its own),
//! the token and database on every call, a deadline on every call, and Milvus' answers turned
//! into what went wrong.

use std::sync::Arc;

use parking_lot::RwLock;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::pb::common;
use super::pb::milvus::milvus_service_client::MilvusServiceClient;
use super::settings::MilvusSettings;
use crate::secret::Secret;

pub type Client = MilvusServiceClient<InterceptedService<Channel, Credentials>>;

/// What a call to Milvus came to, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Milvus cannot be reached, or did not answer in time: worth retrying.
    #[error("Milvus is unavailable: {0}")]
    Unavailable(String),
    /// Milvus refused the token.
    #[error("Milvus refused clipd's token: {0}")]
    Unauthorized(String),
    /// The collection does not exist (any more).
    #[error("no such collection in Milvus")]
    NoCollection,
    /// The collection is not in Milvus' memory (after Milvus restarted): load it and retry.
    #[error("the collection is not loaded in Milvus")]
    NotLoaded,
    /// Milvus refused what it was asked as invalid (a limit of its own): the request's to fix.
    #[error("Milvus refused the request: {0}")]
    Refused(String),
    /// Milvus answered with an error.
    #[error("Milvus failed: {0}")]
    Failed(String),
}

/// The token (`authorization`, as Milvus' own clients send it: base64 of `user:password` or of
/// the API key) and the database (`dbname`), added to every call. The token can be replaced
/// while the server runs (a rotated Secret).
#[derive(Clone)]
pub struct Credentials {
    token: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
    database: MetadataValue<Ascii>,
}

impl Credentials {
    pub fn set_token(&self, token: Option<&Secret>) -> Result<(), String> {
        let value = token.map(header).transpose()?;
        *self.token.write() = value;
        Ok(())
    }
}

fn header(token: &Secret) -> Result<MetadataValue<Ascii>, String> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(token.expose().trim());
    encoded
        .parse()
        .map_err(|_| "the token cannot be sent as a header".to_owned())
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = self.token.read().clone() {
            metadata.insert("authorization", token);
        }
        metadata.insert("dbname", self.database.clone());
        Ok(request)
    }
}

/// A client whose channel connects on first use (and again after Milvus comes back).
pub fn connect(
    settings: &MilvusSettings,
    ca: Option<Vec<u8>>,
) -> Result<(Client, Credentials), String> {
    let mut endpoint = Endpoint::from_shared(settings.url.clone())
        .map_err(|e| format!("index.milvus.url {:?}: {e}", settings.url))?
        .connect_timeout(settings.connect_timeout())
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if settings.url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS to Milvus: {e}"))?;
    }
    let credentials = Credentials {
        token: Arc::new(RwLock::new(None)),
        database: settings
            .database
            .parse()
            .map_err(|_| format!("index.milvus.database {:?} is not ASCII", settings.database))?,
    };
    let channel = endpoint.connect_lazy();
    let client = MilvusServiceClient::with_interceptor(channel, credentials.clone())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((client, credentials))
}

/// Milvus' status of an answer: codes from both generations of its error scheme (2.3 sets
/// `code` beside the legacy `error_code`, which the protos mark deprecated but older servers
/// still fill alone).
#[allow(deprecated)]
pub fn check(status: Option<common::Status>) -> Result<(), Failure> {
    let Some(status) = status else {
        return Ok(());
    };
    if status.error_code == common::ErrorCode::Success as i32 && status.code == 0 {
        return Ok(());
    }
    let legacy = common::ErrorCode::try_from(status.error_code).ok();
    // Milvus 2.3's codes: 1 and 2 service not ready or unavailable (while it starts or
    // recovers, as `retriable` says too), 100 collection not found, 101 collection not loaded;
    // 1100-1199 invalid parameters; 1800-1899 authentication and access.
    if status.retriable || matches!(status.code, 1 | 2) {
        return Err(Failure::Unavailable(status.reason));
    }
    Err(match (legacy, status.code) {
        (Some(common::ErrorCode::CollectionNotExists), _) | (_, 100) => Failure::NoCollection,
        (_, 101) => Failure::NotLoaded,
        (_, 1100..=1199) => Failure::Refused(status.reason),
        (Some(common::ErrorCode::PermissionDenied), _) | (_, 1800..=1899) => {
            Failure::Unauthorized(status.reason)
        }
        _ => Failure::Failed(status.reason),
    })
}

/// A call that failed in transport: Milvus away or slow is UNAVAILABLE, a refused token is
/// unauthorised, anything else is Milvus failing.
pub fn transport(status: tonic::Status) -> Failure {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            Failure::Unauthorized(status.message().to_owned())
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            Failure::Unavailable(status.message().to_owned())
        }
        // Made here from a broken connection (tonic keeps the I/O or HTTP/2 error as the
        // source), not sent by Milvus: a Milvus killed mid-call resets the stream, which tonic
        // reports as INTERNAL or UNKNOWN.
        _ if std::error::Error::source(&status).is_some() => {
            Failure::Unavailable(status.message().to_owned())
        }
        _ => Failure::Failed(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_unavailable_and_milvus_own_errors_are_not() {
        let reset = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let broken = tonic::Status::from_error(Box::new(reset));
        assert!(matches!(transport(broken), Failure::Unavailable(_)));
        let sent = tonic::Status::internal("Milvus says no");
        assert!(matches!(transport(sent), Failure::Failed(_)));
        let refused = tonic::Status::unauthenticated("bad token");
        assert!(matches!(transport(refused), Failure::Unauthorized(_)));
    }
}
