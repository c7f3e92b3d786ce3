//! Secrets (API keys) in a type that never prints: `Debug` and `Serialize` show a placeholder,
//! so a secret cannot reach a log line or `clipd config` by accident; `expose` is the one way
//! to read it.

use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// The secrets in a file (a mounted Kubernetes Secret, say): one per line, trimmed, blank lines
/// and lines starting with # skipped.
pub fn read_secrets(path: &std::path::Path) -> std::io::Result<Vec<Secret>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect())
}

/// What a secret shows instead of itself.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        REDACTED.serialize(serializer)
    }
}

/// In constant time, so that comparing secrets does not tell how much of one matched.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_itself() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(secret, Secret::new("s3cret"));
        assert_ne!(secret, Secret::new("s3creT"));
    }
}
