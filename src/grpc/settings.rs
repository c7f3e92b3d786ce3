//! The gRPC port's settings sections: `server`, `auth` and `tls`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// The largest request message accepted (gRPC's default of 4 MiB is too small for images).
    pub max_message_bytes: usize,
    /// EmbedStream messages worked on at once per stream; the stream is not read further meanwhile.
    pub stream_max_in_flight: usize,
    /// Threads that decode images and tokenise texts (0: one per core).
    pub preprocess_threads: usize,
    /// At shutdown, how long the requests in flight get to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            max_message_bytes: 64 << 20,
            stream_max_in_flight: 8,
            preprocess_threads: 0,
            shutdown_grace_ms: 30_000,
        }
    }
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// API keys, sent by clients as `authorization: Bearer KEY`. With none configured, every client
/// is let in. Health and reflection are always open (probes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys for clipd.v1.Clip (Embed, Classify, Search, ...). Environment:
    /// CLIPD__AUTH__READ_KEYS=key1,key2.
    #[serde(deserialize_with = "one_or_more_keys")]
    pub read_keys: Vec<Secret>,
    /// Keys for clipd.v1.Collections (writes); they are good for Clip too.
    #[serde(deserialize_with = "one_or_more_keys")]
    pub write_keys: Vec<Secret>,
    /// Files with more keys, one per line (blank lines and lines starting with # skipped): a
    /// mounted Kubernetes Secret.
    pub read_keys_file: Option<PathBuf>,
    pub write_keys_file: Option<PathBuf>,
    /// How often the key files are read again (0: only at start-up), so that a rotated Secret
    /// takes effect without a restart.
    pub reload_interval_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            read_keys: Vec::new(),
            write_keys: Vec::new(),
            read_keys_file: None,
            write_keys_file: None,
            reload_interval_ms: 30_000,
        }
    }
}

/// A list of keys, or one key as a string. Anything else is refused without quoting the value
/// (the config crate's own type errors do, and this one is a secret).
fn one_or_more_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        One(Secret),
        More(Vec<Secret>),
    }
    match Keys::deserialize(d) {
        Ok(Keys::One(key)) => Ok(vec![key]),
        Ok(Keys::More(keys)) => Ok(keys),
        Err(_) => Err(serde::de::Error::custom(
            "expected a key or a list of keys (strings)",
        )),
    }
}

/// How often files are read again: never without files, or with an interval of 0.
fn reload_interval(files: bool, interval_ms: u64) -> Option<Duration> {
    (files && interval_ms > 0).then(|| Duration::from_millis(interval_ms))
}

impl AuthSettings {
    /// None when the key files are not read again.
    pub fn reload_interval(&self) -> Option<Duration> {
        let files = self.read_keys_file.is_some() || self.write_keys_file.is_some();
        reload_interval(files, self.reload_interval_ms)
    }
}

/// TLS for gRPC (rustls); mutual TLS when a client CA is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain and private key, PEM.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (PEM).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are read again (0: only at start-up), so that a renewed certificate
    /// is served to new connections without a restart.
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval_ms: 60_000,
        }
    }
}

impl TlsSettings {
    /// None when the files are not read again.
    pub fn reload_interval(&self) -> Option<Duration> {
        reload_interval(self.cert_file.is_some(), self.reload_interval_ms)
    }
}
