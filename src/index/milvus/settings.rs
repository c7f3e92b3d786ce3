//! The `index.milvus` settings section: where the Milvus store is and how clipd talks to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which acknowledged writes a search or a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Every write this replica acknowledged (Milvus' Session level, with this replica's last
    /// write timestamp): a client that stays on one replica reads its writes, at no cost.
    #[default]
    Session,
    /// Every write any replica acknowledged (Milvus' Strong level): a client can write through
    /// one replica and read through another, for about 200 ms more per search.
    Strong,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilvusSettings {
    /// Milvus' gRPC endpoint (its proxy): `http://host:19530`, or `https://` for TLS.
    pub url: String,
    /// A file holding the token Milvus is called with (`user:password`, or an API key), read
    /// again every `reload_interval_ms`; none: Milvus without authorization.
    pub token_file: Option<PathBuf>,
    /// The Milvus database the collections live in.
    pub database: String,
    /// Prepended to each collection's name in Milvus, so that clipd's collections are told from
    /// others in the same database.
    pub collection_prefix: String,
    /// The CA that signed Milvus' certificate (PEM), for `https://`; none: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long connecting may take before requests answer UNAVAILABLE.
    pub connect_timeout_ms: u64,
    /// How long one call to Milvus may take.
    pub request_timeout_ms: u64,
    /// How often `token_file` is read again (0: only at start-up).
    pub reload_interval_ms: u64,
    /// How often clipd asks whether Milvus answers, for the health of `clipd.v1.Collections`
    /// (a failed call marks Milvus away at once; this notices it back, and away while idle).
    pub health_interval_ms: u64,
    /// "session" (this replica's writes) or "strong" (every replica's).
    pub consistency: Consistency,
}

impl Default for MilvusSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:19530".into(),
            token_file: None,
            database: "default".into(),
            collection_prefix: "clipd_".into(),
            ca_file: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            reload_interval_ms: 30_000,
            health_interval_ms: 2_000,
            consistency: Consistency::Session,
        }
    }
}

impl MilvusSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms)
    }

    /// What cannot work, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Some(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Some("ca_file needs an https:// url".into());
        }
        let prefix_ok = self
            .collection_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && self
                .collection_prefix
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !prefix_ok {
            return Some(
                "collection_prefix must start with a letter or '_' and hold only letters, \
                 digits and '_' (Milvus' rule for names)"
                    .into(),
            );
        }
        if self.database.is_empty() {
            return Some("database must be named".into());
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return Some("timeouts must be at least 1 ms".into());
        }
        if self.health_interval_ms < 100 {
            return Some("health_interval_ms must be at least 100".into());
        }
        None
    }
}
