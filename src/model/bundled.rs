//! The demo model compiled into the binary, so that `clipd` works with no model configured, from
//! any directory and in any container image. It is unpacked once into a cache folder (named by
//! the content's hash, so a rebuilt binary with another model never reads a stale copy) and then
//! loaded like any checkpoint directory.

use std::path::{Path, PathBuf};

use crate::files::FileError;

const FILES: [(&str, &[u8]); 4] = [
    (
        "config.json",
        include_bytes!("../../models/demo/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../models/demo/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../models/demo/tokenizer.json"),
    ),
    (
        "preprocessor_config.json",
        include_bytes!("../../models/demo/preprocessor_config.json"),
    ),
];

/// The name the demo model reports.
pub const NAME: &str = "clipd-demo";

/// FNV-1a over every file: a stable content hash without another dependency.
fn content_hash() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for (name, bytes) in FILES {
        for &b in name.as_bytes().iter().chain(bytes) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// `$XDG_CACHE_HOME/clipd`, else `$HOME/.cache/clipd`, else the system's temporary folder (`var`
/// looks an environment variable up).
pub fn cache_dir(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("clipd")
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    })
}

/// Unpacks the demo model under `cache` (if not there already) and returns its directory.
pub fn unpack(cache: &Path) -> Result<PathBuf, FileError> {
    let dir = cache.join(format!("demo-{:016x}", content_hash()));
    if is_complete(&dir) {
        return Ok(dir);
    }
    // Written beside and renamed into place, so that concurrent starts never see half a model.
    let staging = cache.join(format!(
        "demo-{:016x}.{}.tmp",
        content_hash(),
        std::process::id()
    ));
    std::fs::create_dir_all(&staging).map_err(FileError::writing(&staging))?;
    for (name, bytes) in FILES {
        let path = staging.join(name);
        std::fs::write(&path, bytes).map_err(FileError::writing(&path))?;
    }
    if std::fs::rename(&staging, &dir).is_ok() {
        return Ok(dir);
    }
    // Another process unpacked it meanwhile (its copy is as good), or an incomplete copy from a
    // crash is in the way (replace it).
    if is_complete(&dir) {
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(FileError::writing(&dir))?;
    }
    Ok(dir)
}
