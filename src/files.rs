//! A checkpoint's files, read and written with errors that name the file at fault. Shared by the
//! model families and the input pipelines, which both read their own files of a checkpoint.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read, but what it says cannot be used.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl FileError {
    /// For `map_err` on a write to `path`.
    pub fn writing(path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Write { path, source }
    }

    /// For `map_err` on what `path` says.
    pub fn invalid(path: &Path) -> impl FnOnce(String) -> Self {
        let path = path.to_owned();
        move |reason| Self::Invalid { path, reason }
    }
}

/// Reads a JSON file of a checkpoint with `parse`; errors name the file.
pub fn read_json<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(FileError::invalid(path))
}
