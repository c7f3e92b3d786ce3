//! Where the model comes from: the bundled demo model when none is configured, a checkpoint
//! directory, or a Hugging Face hub id (`org/name[@revision]`, when no such directory exists);
//! and loading it from there.

use std::path::{Path, PathBuf};

use super::bundled;
use super::checkpoint::Checkpoint;
use super::family::Family;
use super::{ModelError, ModelOptions};
use crate::files::FileError;
use crate::hub::{self, HubError, HubSettings};
use crate::preprocess::InputLimits;

/// Where models are downloaded from and kept.
#[derive(Debug, Clone)]
pub struct Locations {
    pub hub: HubSettings,
    /// Where the bundled demo model is unpacked.
    pub demo_cache: PathBuf,
}

impl Locations {
    /// As the environment says: Hugging Face's variables (HF_ENDPOINT, HF_HOME, HF_HUB_CACHE,
    /// HF_HUB_OFFLINE, HF_TOKEN) and XDG_CACHE_HOME / HOME for the demo model (`var` looks one
    /// up).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            hub: HubSettings::from_vars(&var),
            demo_cache: bundled::cache_dir(&var),
        }
    }
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
    Bundled(#[from] FileError),
}

/// Getting or loading the model failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot load the model in {dir}: {source}")]
    Model { dir: PathBuf, source: ModelError },
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
            Self::Hub(id) => {
                hub::fetch(id, &at.hub, Family::hub_files()).map_err(|source| SourceError::Hub {
                    id: id.clone(),
                    source,
                })
            }
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

/// What to load, and how.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: ModelSource,
    pub locations: Locations,
    pub options: ModelOptions,
    pub limits: InputLimits,
    /// libtorch's CPU threads (0: libtorch's default).
    pub threads: usize,
}

impl ModelSpec {
    /// Fetches or unpacks the checkpoint if need be, sets libtorch's threads, and loads it under
    /// the name clients see. `clipd embed` and the engine's model thread both load this way.
    pub fn load(&self) -> Result<Checkpoint, LoadError> {
        if self.source == ModelSource::Bundled {
            tracing::warn!(
                "no model configured: using the bundled demo model, a small CLIP trained on \
                 synthetic coloured shapes (not a real CLIP; set --model or model.source)"
            );
        }
        if self.threads > 0 {
            tch::set_num_threads(self.threads as i32);
        }
        let dir = self.source.locate(&self.locations)?;
        let mut checkpoint =
            Checkpoint::load(&dir, &self.options, &self.limits).map_err(|source| {
                LoadError::Model {
                    dir: dir.clone(),
                    source,
                }
            })?;
        checkpoint.name = self.source.name(&dir);
        Ok(checkpoint)
    }
}
