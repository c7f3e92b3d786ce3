//! API keys: `authorization: Bearer KEY` on every call to clipd.v1.Clip (read) and
//! clipd.v1.Collections (write). Keys are kept as SHA-256 digests and compared in constant time,
//! every configured key each time, so neither timing nor length says how close a guess was.
//! Key files are read again every `auth.reload_interval_ms`: a rotated Kubernetes Secret takes
//! effect without a restart.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::settings::AuthSettings;
use crate::reload::{self, Reread};
use crate::secret::{read_secrets, Secret};

/// What a service needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The keys in force. With none at all, every client is let in.
pub struct ApiKeys {
    settings: AuthSettings,
    digests: RwLock<Option<Digests>>,
}

#[derive(PartialEq, Eq)]
struct Digests {
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
    #[error(
        "the API key files now hold no key at all, which would let every client in: the keys \
         in force stay (restart without keys to turn authentication off)"
    )]
    WouldOpen,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    Changed { read_keys: usize, write_keys: usize },
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn keys_in(path: &Path) -> Result<Vec<Secret>, KeyFileError> {
    read_secrets(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The configured keys and those in the files now; None when there are none.
fn read_digests(settings: &AuthSettings) -> Result<Option<Digests>, KeyFileError> {
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
    // Compared as the server compares what clients send: trimmed.
    Ok(Some(Digests {
        read: read.iter().map(|k| digest(k.expose().trim())).collect(),
        write: write.iter().map(|k| digest(k.expose().trim())).collect(),
    }))
}

impl ApiKeys {
    pub fn load(settings: &AuthSettings) -> Result<Self, KeyFileError> {
        let digests = read_digests(settings)?;
        match &digests {
            Some(d) => tracing::info!(
                read_keys = d.read.len(),
                write_keys = d.write.len(),
                "API keys required"
            ),
            None if settings.read_keys_file.is_some() || settings.write_keys_file.is_some() => {
                match settings.reload_interval() {
                    Some(_) => tracing::warn!(
                        "the API key files hold no key: every client is let in until they do"
                    ),
                    None => tracing::warn!(
                        "the API key files hold no key: every client is let in (they are not \
                         read again: auth.reload_interval_ms is 0)"
                    ),
                }
            }
            None => {}
        }
        Ok(Self {
            settings: settings.clone(),
            digests: RwLock::new(digests),
        })
    }

    /// Reads the key files again and puts what they hold in force. When a file cannot be read,
    /// or no key would be left, the keys in force stay.
    pub fn reload(&self) -> Result<Reloaded, KeyFileError> {
        let fresh = read_digests(&self.settings)?;
        let mut digests = self.digests.write();
        match (&*digests, fresh) {
            (Some(_), None) => Err(KeyFileError::WouldOpen),
            (current, fresh) if *current == fresh => Ok(Reloaded::Unchanged),
            (_, fresh) => {
                let counts = fresh
                    .as_ref()
                    .map_or((0, 0), |d| (d.read.len(), d.write.len()));
                *digests = fresh;
                Ok(Reloaded::Changed {
                    read_keys: counts.0,
                    write_keys: counts.1,
                })
            }
        }
    }

    /// Reloads every `auth.reload_interval_ms` until `stopping` turns true; nothing when the
    /// keys are not read from files.
    pub fn keep_reloading(self: Arc<Self>, stopping: watch::Receiver<bool>) {
        let Some(interval) = self.settings.reload_interval() else {
            return;
        };
        reload::every("api_keys", interval, stopping, move || {
            self.reload().map(|reloaded| match reloaded {
                Reloaded::Unchanged => Reread::Unchanged,
                Reloaded::Changed {
                    read_keys,
                    write_keys,
                } => Reread::Changed(format!("{read_keys} read keys, {write_keys} write keys")),
            })
        });
    }

    /// Lets the call through, or says why not.
    pub fn check(&self, metadata: &MetadataMap, access: Access) -> Result<(), Status> {
        let digests = self.digests.read();
        let Some(digests) = &*digests else {
            return Ok(());
        };
        // The scheme's name is case-insensitive (RFC 7235).
        let Some(given) = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .and_then(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer").then_some(key))
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
        let (read, write) = (
            bool::from(any(&digests.read)),
            bool::from(any(&digests.write)),
        );
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
    use std::path::PathBuf;

    use super::*;

    fn keys() -> ApiKeys {
        let settings = AuthSettings {
            read_keys: vec![Secret::new(" reader ")],
            write_keys: vec![Secret::new("writer")],
            ..AuthSettings::default()
        };
        ApiKeys::load(&settings).unwrap()
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
        assert_eq!(code(Some("bearer reader"), Access::Read), Ok(()));
        assert_eq!(
            code(Some("Basic reader"), Access::Read),
            Err(Unauthenticated)
        );
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
        let open = ApiKeys::load(&AuthSettings::default()).unwrap();
        assert!(open.check(&with(None), Access::Write).is_ok());
        let path = std::env::temp_dir().join(format!("clipd-keys-{}", std::process::id()));
        std::fs::write(&path, "# readers\n\n  from-file  \n").unwrap();
        let settings = AuthSettings {
            read_keys_file: Some(path.clone()),
            ..AuthSettings::default()
        };
        let k = ApiKeys::load(&settings).unwrap();
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

    /// Keys from a file of `access` keys holding `contents`, and the file.
    fn keys_from_file(tag: &str, contents: &str, access: Access) -> (ApiKeys, PathBuf) {
        let path = std::env::temp_dir().join(format!("clipd-{tag}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        let file = Some(path.clone());
        let settings = match access {
            Access::Read => AuthSettings {
                read_keys_file: file,
                ..AuthSettings::default()
            },
            Access::Write => AuthSettings {
                write_keys_file: file,
                ..AuthSettings::default()
            },
        };
        (ApiKeys::load(&settings).unwrap(), path)
    }

    #[test]
    fn a_reload_rotates_the_keys_and_never_opens_the_door() {
        let (k, path) = keys_from_file("rotated", "old\n", Access::Write);
        let admits = |key: &str| {
            k.check(&with(Some(&format!("Bearer {key}"))), Access::Write)
                .is_ok()
        };
        assert_eq!(k.reload().unwrap(), Reloaded::Unchanged);

        std::fs::write(&path, "new\nnewer\n").unwrap();
        assert_eq!(
            k.reload().unwrap(),
            Reloaded::Changed {
                read_keys: 0,
                write_keys: 2
            }
        );
        assert!(admits("new") && admits("newer") && !admits("old"));

        std::fs::write(&path, "# nothing left\n").unwrap();
        assert!(matches!(k.reload(), Err(KeyFileError::WouldOpen)));
        assert!(admits("new") && !admits("anything"));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(k.reload(), Err(KeyFileError::Read { .. })));
        assert!(admits("new") && !admits("anything"));
    }

    #[test]
    fn key_files_that_start_empty_can_turn_keys_on() {
        let (k, path) = keys_from_file("late", "", Access::Read);
        assert!(k.check(&with(None), Access::Read).is_ok());
        std::fs::write(&path, "late\n").unwrap();
        assert!(matches!(k.reload(), Ok(Reloaded::Changed { .. })));
        assert!(k.check(&with(None), Access::Read).is_err());
        assert!(k.check(&with(Some("Bearer late")), Access::Read).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
