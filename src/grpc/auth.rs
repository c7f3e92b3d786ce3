//! API keys: `authorization: Bearer KEY` on every call to clipd.v1.Clip (read) and
//! clipd.v1.Collections (write). Keys are kept as SHA-256 digests and compared in constant time,
//! every configured key each time, so neither timing nor length says how close a guess was.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::AuthSettings;

/// What a service needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The configured keys; None from `load` when there are none (every client is let in).
pub struct ApiKeys {
    read: Vec<[u8; 32]>,
    write: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API key file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The keys in a file: one per line, blank lines and lines starting with # skipped.
fn keys_in(path: &Path) -> Result<Vec<String>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

impl ApiKeys {
    pub fn load(settings: &AuthSettings) -> Result<Option<Self>, KeyFileError> {
        let mut read = settings.read_keys.clone();
        let mut write = settings.write_keys.clone();
        if let Some(path) = &settings.read_keys_file {
            read.extend(keys_in(path)?);
        }
        if let Some(path) = &settings.write_keys_file {
            write.extend(keys_in(path)?);
        }
        if read.is_empty() && write.is_empty() {
            return Ok(None);
        }
        tracing::info!(
            read_keys = read.len(),
            write_keys = write.len(),
            "API keys required"
        );
        Ok(Some(Self {
            read: read.iter().map(|k| digest(k)).collect(),
            write: write.iter().map(|k| digest(k)).collect(),
        }))
    }

    /// Lets the call through, or says why not.
    pub fn check(&self, metadata: &MetadataMap, access: Access) -> Result<(), Status> {
        let Some(given) = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(Status::unauthenticated(
                "an API key is required: send the metadata `authorization: Bearer KEY`",
            ));
        };
        let given = digest(given.trim());
        let any = |keys: &[[u8; 32]]| {
            keys.iter()
                .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(&given))
        };
        let (read, write) = (bool::from(any(&self.read)), bool::from(any(&self.write)));
        match (access, read, write) {
            (_, _, true) | (Access::Read, true, _) => Ok(()),
            (Access::Write, true, false) => Err(Status::permission_denied(
                "this API key may read, not write: clipd.v1.Collections needs a write key",
            )),
            (_, false, false) => Err(Status::unauthenticated("the API key is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let settings = AuthSettings {
            read_keys: vec!["reader".into()],
            write_keys: vec!["writer".into()],
            ..AuthSettings::default()
        };
        ApiKeys::load(&settings).unwrap().unwrap()
    }

    fn with(value: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = value {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn keys_open_what_they_should() {
        let k = keys();
        let code = |value, access| k.check(&with(value), access).map_err(|s| s.code());
        use tonic::Code::{PermissionDenied, Unauthenticated};
        assert_eq!(code(Some("Bearer reader"), Access::Read), Ok(()));
        assert_eq!(code(Some("Bearer writer"), Access::Read), Ok(()));
        assert_eq!(code(Some("Bearer writer"), Access::Write), Ok(()));
        assert_eq!(
            code(Some("Bearer reader"), Access::Write),
            Err(PermissionDenied)
        );
        assert_eq!(
            code(Some("Bearer readers"), Access::Read),
            Err(Unauthenticated)
        );
        assert_eq!(code(Some("reader"), Access::Read), Err(Unauthenticated));
        assert_eq!(code(None, Access::Read), Err(Unauthenticated));
    }

    #[test]
    fn no_keys_means_open_and_files_add_keys() {
        assert!(ApiKeys::load(&AuthSettings::default()).unwrap().is_none());
        let path = std::env::temp_dir().join(format!("clipd-keys-{}", std::process::id()));
        std::fs::write(&path, "# readers\n\n  from-file  \n").unwrap();
        let settings = AuthSettings {
            read_keys_file: Some(path.clone()),
            ..AuthSettings::default()
        };
        let k = ApiKeys::load(&settings).unwrap().unwrap();
        assert!(k
            .check(&with(Some("Bearer from-file")), Access::Read)
            .is_ok());
        assert!(k
            .check(&with(Some("Bearer # readers")), Access::Read)
            .is_err());
        std::fs::remove_file(&path).unwrap();
        let e = ApiKeys::load(&settings).err().unwrap();
        assert!(
            e.to_string().contains("cannot read the API key file"),
            "{e}"
        );
    }
}
