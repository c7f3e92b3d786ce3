//! `--model org/name`: a checkpoint from the Hugging Face hub (or a mirror), downloaded on first use
//! into the same cache layout `huggingface_hub` uses, so that Python tools and clipd share it:
//! `models--org--name/{refs/REVISION, blobs/ETAG, snapshots/COMMIT/FILE -> ../../blobs/ETAG}`.
//! Honours `HF_ENDPOINT`, `HF_HOME` / `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and `HF_TOKEN`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{id}: not in the cache at {cache} and HF_HUB_OFFLINE is set")]
    NotCached { id: String, cache: PathBuf },
    #[error("{url}: {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where and how to reach the hub.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub endpoint: String,
    pub cache: PathBuf,
    pub offline: bool,
    pub token: Option<String>,
}

impl HubSettings {
    /// The settings `huggingface_hub` reads from its environment variables (`var` looks one up),
    /// with its defaults.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("huggingface")
        });
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_owned(),
            cache: var("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("hub")),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
            }),
            token: var("HF_TOKEN"),
        }
    }
}

/// `org/name` or `org/name@revision`, the shape of a hub model id (checked only when no such
/// directory exists).
pub fn parse_id(text: &str) -> Option<(&str, &str)> {
    let (id, revision) = text.split_once('@').unwrap_or((text, "main"));
    let (org, name) = id.split_once('/')?;
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '-'])
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (valid(org) && valid(name) && !revision.is_empty()).then_some((id, revision))
}

struct Repo<'a> {
    id: &'a str,
    revision: &'a str,
    dir: PathBuf,
}

impl Repo<'_> {
    fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// The snapshot the cache holds for the revision, if it has every file.
    fn cached(&self, files: &[&str]) -> Option<PathBuf> {
        let commit = std::fs::read_to_string(self.dir.join("refs").join(self.revision)).ok()?;
        let snapshot = self.snapshot(commit.trim());
        files
            .iter()
            .all(|f| snapshot.join(f).is_file())
            .then_some(snapshot)
    }
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Write {
        path: path.to_owned(),
        source,
    }
}

/// The checkpoint directory of `id` (`org/name[@revision]`) with `files` (the model family's),
/// downloading what the cache lacks.
pub fn fetch(
    id_and_revision: &str,
    settings: &HubSettings,
    files: &[&str],
) -> Result<PathBuf, HubError> {
    let (id, revision) = parse_id(id_and_revision).unwrap_or((id_and_revision, "main"));
    let repo = Repo {
        id,
        revision,
        dir: settings
            .cache
            .join(format!("models--{}", id.replace('/', "--"))),
    };
    if settings.offline {
        return repo.cached(files).ok_or_else(|| HubError::NotCached {
            id: id.to_owned(),
            cache: settings.cache.clone(),
        });
    }
    match download(&repo, settings, files) {
        Ok(dir) => Ok(dir),
        // Like huggingface_hub: a network failure falls back to what is cached.
        Err(HubError::Network { url, reason }) => {
            repo.cached(files).ok_or(HubError::Network { url, reason })
        }
        Err(other) => Err(other),
    }
}

/// What the hub says about a file before its bytes: the commit it resolved the revision to and
/// the file's content hash (for files in LFS, `X-Linked-Etag`; a redirect to the storage host
/// carries neither, so this is asked without following redirects).
struct FileInfo {
    commit: Option<String>,
    etag: Option<String>,
}

fn download(repo: &Repo, settings: &HubSettings, files: &[&str]) -> Result<PathBuf, HubError> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build();
    let token = settings.token.as_deref();
    let mut snapshot = None;
    for &file in files {
        let url = format!(
            "{}/{}/resolve/{}/{file}",
            settings.endpoint, repo.id, repo.revision
        );
        let info = file_info(&agent, &url, token)?;
        let commit = info.commit.unwrap_or_else(|| repo.revision.to_owned());
        let etag = info.etag.unwrap_or_else(|| format!("{commit}-{file}"));
        let blob = repo.dir.join("blobs").join(&etag);
        if !blob.is_file() {
            tracing::info!(model = repo.id, file, "downloading");
            save(get(&agent, &url, token)?, &blob, &url)?;
        }
        let dir = repo.snapshot(&commit);
        std::fs::create_dir_all(&dir).map_err(write_error(&dir))?;
        link(&blob, &dir.join(file), &etag)?;
        snapshot.get_or_insert((commit, dir));
    }
    let (commit, dir) = snapshot.expect("a family has files");
    let refs = repo.dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(write_error(&refs))?;
    let reference = refs.join(repo.revision);
    std::fs::write(&reference, &commit).map_err(write_error(&reference))?;
    Ok(dir)
}

/// One request; the token goes to the hub's own host only, never to a storage host a redirect
/// names.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    hub_url: &str,
    token: Option<&str>,
) -> Result<ureq::Response, HubError> {
    let mut request = agent.request(method, url);
    if let (Some(token), true) = (token, same_origin(url, hub_url)) {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, _)) => Err(HubError::Status {
            url: url.to_owned(),
            status,
            hint: match status {
                401 | 403 => ": the repository is private or gated; set HF_TOKEN",
                404 => {
                    ": no such repository, revision or file (clipd needs model.safetensors; \
                     pytorch_model.bin is not read)"
                }
                _ => "",
            },
        }),
        Err(other) => Err(HubError::Network {
            url: url.to_owned(),
            reason: other.to_string(),
        }),
    }
}

fn file_info(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<FileInfo, HubError> {
    let response = call(agent, "HEAD", url, url, token)?;
    let etag = response
        .header("x-linked-etag")
        .or_else(|| response.header("etag"))
        .map(|e| e.trim_start_matches("W/").trim_matches('"').to_owned());
    Ok(FileInfo {
        commit: response.header("x-repo-commit").map(str::to_owned),
        etag,
    })
}

/// GETs the file, following redirects (to the storage host, for files in LFS).
fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<ureq::Response, HubError> {
    let mut current = url.to_owned();
    for _ in 0..5 {
        let response = call(agent, "GET", &current, url, token)?;
        if !(300..400).contains(&response.status()) {
            return Ok(response);
        }
        let location = response.header("location").unwrap_or_default();
        current = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", url_origin(&current))
        };
    }
    Err(HubError::Network {
        url: url.to_owned(),
        reason: "too many redirects".into(),
    })
}

/// Whether two URLs have the same scheme, host and port: a prefix test would let
/// `https://huggingface.co.example.net` pass for `https://huggingface.co`.
fn same_origin(a: &str, b: &str) -> bool {
    url_origin(a) == url_origin(b)
}

/// `scheme://host[:port]` of a URL.
fn url_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find('/')
        .map_or(url, |i| &url[..after_scheme + i])
}

/// Streams the body into `blob`, through a temporary file renamed into place.
fn save(response: ureq::Response, blob: &Path, url: &str) -> Result<(), HubError> {
    let dir = blob.parent().expect("blobs live in a folder");
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let partial = blob.with_extension(format!("{}.incomplete", std::process::id()));
    let mut file = std::fs::File::create(&partial).map_err(write_error(&partial))?;
    let copied = std::io::copy(&mut response.into_reader().take(u64::MAX), &mut file);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(HubError::Network {
            url: url.to_owned(),
            reason: format!("download broke off: {e}"),
        });
    }
    std::fs::rename(&partial, blob).map_err(write_error(blob))
}

/// `snapshots/COMMIT/FILE -> ../../blobs/ETAG`, as huggingface_hub lays it out.
fn link(blob: &Path, file: &Path, etag: &str) -> Result<(), HubError> {
    if file.is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_file(file);
    let target = Path::new("../../blobs").join(etag);
    std::os::unix::fs::symlink(&target, file)
        .or_else(|_| std::fs::copy(blob, file).map(drop))
        .map_err(write_error(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_the_hubs_own_origin() {
        let hub = "https://huggingface.co/org/name/resolve/main/model.safetensors";
        assert!(same_origin("https://huggingface.co/api/x", hub));
        for other in [
            "https://huggingface.co.example.net/blob",
            "https://huggingface.com/blob",
            "http://huggingface.co/blob",
            "https://huggingface.co:8443/blob",
            "https://cdn-lfs.huggingface.co/blob",
        ] {
            assert!(!same_origin(other, hub), "{other}");
        }
    }
}
