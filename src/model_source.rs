//! Where the model comes from: the bundled demo model when none is configured, a checkpoint
//! directory, or a Hugging Face hub id (`org/name[@revision]`, when no such directory exists).

use std::path::{Path, PathBuf};

use crate::demo::bundled;
use crate::error::ModelError;
use crate::hub::{self, HubError, HubSettings};

/// Where models are downloaded from and kept.
#[derive(Debug, Clone)]
pub struct Locations {
    pub hub: HubSettings,
    /// Where the bundled demo model is unpacked.
    pub demo_cache: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Bundled,
    Directory(PathBuf),
    Hub(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot get {id} from the hub: {source}")]
    Hub { id: String, source: HubError },
    #[error("cannot unpack the bundled demo model: {0}")]
    Bundled(#[from] ModelError),
}

impl ModelSource {
    pub fn parse(model: Option<&Path>) -> Self {
        match model {
            None => Self::Bundled,
            Some(path) if !path.exists() => match path.to_str() {
                Some(id) if hub::parse_id(id).is_some() => Self::Hub(id.to_owned()),
                _ => Self::Directory(path.to_owned()),
            },
            Some(path) => Self::Directory(path.to_owned()),
        }
    }

    /// The checkpoint directory, downloaded or unpacked first if need be.
    pub fn locate(&self, at: &Locations) -> Result<PathBuf, SourceError> {
        match self {
            Self::Bundled => Ok(bundled::unpack(&at.demo_cache)?),
            Self::Directory(dir) => Ok(dir.clone()),
            Self::Hub(id) => hub::fetch(id, &at.hub).map_err(|source| SourceError::Hub {
                id: id.clone(),
                source,
            }),
        }
    }

    /// The name the model reports: the hub id, "clipd-demo", or the directory's name.
    pub fn name(&self, dir: &Path) -> String {
        match self {
            Self::Bundled => bundled::NAME.to_owned(),
            Self::Hub(id) => id.clone(),
            Self::Directory(_) => directory_name(dir),
        }
    }
}

/// A checkpoint directory's own name (`clip-vit-base-patch32` for `./clip-vit-base-patch32/`).
pub fn directory_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}
