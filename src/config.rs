//! The settings tree and its layers, lowest first: built-in defaults, the `--config` file (TOML or
//! YAML), `CLIPD__SECTION__KEY` environment variables, command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ann::HnswSettings;
use crate::classify::{label_set_problem, TemplateSet};
use crate::clip::InputLimits;
use crate::hub::HubSettings;
use crate::model::{DeviceSpec, Dtype, ModelOptions};
use crate::model_source::{Locations, ModelSource};
use crate::preprocess::ImageLimits;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub model: ModelSettings,
    pub batching: BatchingSettings,
    pub limits: LimitSettings,
    pub classify: ClassifySettings,
    /// Named classifiers, embedded at start-up (`Classify` with `classifier: NAME`).
    pub classifiers: BTreeMap<String, ClassifierSettings>,
    pub index: IndexSettings,
    pub metrics: MetricsSettings,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
}

/// API keys, sent by clients as `authorization: Bearer KEY`. With none configured, every client
/// is let in. Health and reflection are always open (probes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys for clipd.v1.Clip (Embed, Classify, Search, ...). Environment:
    /// CLIPD__AUTH__READ_KEYS=key1,key2.
    #[serde(deserialize_with = "one_or_more_keys")]
    pub read_keys: Vec<String>,
    /// Keys for clipd.v1.Collections (writes); they are good for Clip too.
    #[serde(deserialize_with = "one_or_more_keys")]
    pub write_keys: Vec<String>,
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
fn one_or_more_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        One(String),
        More(Vec<String>),
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

/// The keys that hold secrets, and what `clipd config` prints instead.
const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve GET /metrics, /livez and /readyz.
    pub enabled: bool,
    /// Where (port 0: any free port).
    pub addr: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: ([0, 0, 0, 0], 9090).into(),
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// A checkpoint directory or a hub id; none: the bundled demo model.
    pub source: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    pub device: String,
    /// f32, f16 or bf16.
    pub dtype: String,
    /// libtorch's CPU threads (0: one per core).
    pub threads: usize,
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            source: None,
            device: "auto".into(),
            dtype: "f32".into(),
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingSettings {
    /// Inputs per forward pass at most.
    pub max_batch_size: usize,
    /// How long the oldest queued input waits for others to join its batch.
    pub max_delay_ms: u64,
    /// Inputs admitted and not yet answered, over all requests; past it, RESOURCE_EXHAUSTED.
    pub max_queued_inputs: usize,
    /// A forward pass running longer than this marks the server NOT_SERVING until it ends.
    pub stall_timeout_ms: u64,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_delay_ms: 5,
            max_queued_inputs: 1024,
            stall_timeout_ms: 60_000,
        }
    }
}

impl BatchingSettings {
    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_inputs_per_request: usize,
    pub max_image_bytes: usize,
    /// Decoded width x height.
    pub max_image_pixels: u64,
    pub max_text_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let inputs = InputLimits::default();
        Self {
            max_inputs_per_request: 256,
            max_image_bytes: inputs.image.max_bytes,
            max_image_pixels: inputs.image.max_pixels,
            max_text_bytes: inputs.max_text_bytes,
        }
    }
}

impl LimitSettings {
    pub fn inputs(&self) -> InputLimits {
        InputLimits {
            image: ImageLimits {
                max_bytes: self.max_image_bytes,
                max_pixels: self.max_image_pixels,
            },
            max_text_bytes: self.max_text_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifySettings {
    /// Memory for label vectors of request label sets (named classifiers keep their own).
    pub cache_bytes: usize,
    /// Labels in one request's label set.
    pub max_labels: usize,
    /// Templates in one request's label set.
    pub max_templates: usize,
    /// Scores returned per input; `top_k` 0 asks for every label up to this.
    pub max_top_k: usize,
    /// Classifiers with at least this many labels answer from an HNSW index of their label
    /// vectors (candidates re-scored exactly) instead of scoring every label.
    pub hnsw_min_labels: usize,
    pub hnsw: HnswSettings,
}

impl Default for ClassifySettings {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            max_labels: 1000,
            max_templates: 100,
            max_top_k: 1000,
            hnsw_min_labels: 2000,
            hnsw: HnswSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSettings {
    /// Where collections are kept (`<data_dir>/collections/<name>`).
    pub data_dir: PathBuf,
    /// How often collections written to are snapshotted (and their logs emptied); 0: only at
    /// shutdown.
    pub snapshot_interval_s: u64,
    /// Searches whose filter matches at most this many items, and searches of collections this
    /// small, scan those items exactly instead of walking the graph.
    pub exact_scan_max_items: usize,
    /// A collection's graph is rebuilt without its tombstones (replaced and deleted items) once
    /// they are at least this share of it...
    pub rebuild_tombstone_ratio: f64,
    /// ...and at least this many.
    pub rebuild_min_tombstones: usize,
    /// Hits one search may ask for.
    pub max_top_k: usize,
    pub max_collections: usize,
    /// Defaults for new collections (CreateCollection can set each).
    pub hnsw: HnswSettings,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            data_dir: "clipd-data".into(),
            snapshot_interval_s: 300,
            exact_scan_max_items: 2000,
            rebuild_tombstone_ratio: 0.2,
            rebuild_min_tombstones: 1000,
            max_top_k: 1000,
            max_collections: 1000,
            hnsw: HnswSettings::default(),
        }
    }
}

impl IndexSettings {
    pub fn snapshot_interval(&self) -> Option<Duration> {
        (self.snapshot_interval_s > 0).then(|| Duration::from_secs(self.snapshot_interval_s))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierSettings {
    pub labels: Vec<String>,
    /// Prompt templates, each with `{}` for the label; none: `template_set`'s.
    pub templates: Vec<String>,
    /// A built-in template set: "default" (one prompt) or "imagenet" (CLIP's 80).
    pub template_set: Option<String>,
    /// Per label: the probability at which the label is flagged.
    pub thresholds: BTreeMap<String, f32>,
}

impl ClassifierSettings {
    /// The templates its labels are embedded with (validated at start-up).
    pub fn templates(&self) -> Vec<String> {
        match (&self.template_set, self.templates.is_empty()) {
            (Some(set), true) => set
                .parse::<TemplateSet>()
                .expect("validated at start-up")
                .templates(),
            (None, true) => TemplateSet::Default.templates(),
            (_, false) => self.templates.clone(),
        }
    }

    fn problem(&self) -> Option<String> {
        if let Some(problem) = label_set_problem(&self.labels, &self.templates) {
            return Some(problem);
        }
        if let Some(set) = &self.template_set {
            if !self.templates.is_empty() {
                return Some("set templates or template_set, not both".into());
            }
            if let Err(e) = set.parse::<TemplateSet>() {
                return Some(e);
            }
        }
        self.thresholds.iter().find_map(|(label, t)| {
            if !self.labels.contains(label) {
                Some(format!(
                    "threshold for {label:?}, which is not one of the labels"
                ))
            } else if !(0.0..=1.0).contains(t) {
                Some(format!(
                    "threshold for {label:?} is {t}; probabilities are 0 to 1"
                ))
            } else {
                None
            }
        })
    }
}

/// Where models come from, as the environment says: Hugging Face's variables (HF_ENDPOINT, HF_HOME,
/// HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN) and XDG_CACHE_HOME / HOME for the demo model.
pub fn locations_from_env() -> Locations {
    let var = |name: &str| std::env::var(name).ok();
    Locations {
        hub: HubSettings::from_vars(var),
        demo_cache: crate::demo::bundled::cache_dir(var),
    }
}

/// A setting that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Layers(#[from] config::ConfigError),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub model: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub device: Option<DeviceSpec>,
    pub dtype: Option<Dtype>,
}

impl Settings {
    /// Reads the layers, the process environment among them, and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars().collect(), overrides)
    }

    /// As `load`, with the environment given.
    pub fn load_with_env(
        file: Option<&Path>,
        env: std::collections::HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut env = env;
        // Lists of keys come comma-separated; the config crate parses lists only when it also
        // turns every numeric-looking string into a number (model.source "007").
        let mut key_lists = Vec::new();
        for (var, key) in [
            ("CLIPD__AUTH__READ_KEYS", "auth.read_keys"),
            ("CLIPD__AUTH__WRITE_KEYS", "auth.write_keys"),
        ] {
            if let Some(value) = env.remove(var).filter(|v| !v.is_empty()) {
                let keys: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect();
                key_lists.push((key, keys));
            }
        }
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CLIPD")
                .source(Some(env))
                .prefix_separator("__")
                .separator("__")
                .ignore_empty(true),
        );
        for (key, keys) in key_lists {
            builder = builder.set_override(key, keys)?;
        }
        if let Some(model) = &overrides.model {
            builder = builder.set_override("model.source", model.to_string_lossy().as_ref())?;
        }
        if let Some(addr) = overrides.grpc_addr {
            builder = builder.set_override("server.grpc_addr", addr.to_string())?;
        }
        if let Some(addr) = overrides.metrics_addr {
            builder = builder.set_override("metrics.addr", addr.to_string())?;
        }
        if let Some(device) = overrides.device {
            builder = builder.set_override("model.device", device.to_string())?;
        }
        if let Some(dtype) = overrides.dtype {
            builder = builder.set_override("model.dtype", dtype.to_string())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        self.model_options()?;
        let (b, l, s) = (&self.batching, &self.limits, &self.server);
        let (c, i) = (&self.classify, &self.index);
        // Each of these at 0 would refuse every request of its kind.
        let counts = [
            ("batching.max_batch_size", b.max_batch_size as u64),
            ("batching.stall_timeout_ms", b.stall_timeout_ms),
            (
                "limits.max_inputs_per_request",
                l.max_inputs_per_request as u64,
            ),
            ("limits.max_image_bytes", l.max_image_bytes as u64),
            ("limits.max_image_pixels", l.max_image_pixels),
            ("limits.max_text_bytes", l.max_text_bytes as u64),
            ("server.stream_max_in_flight", s.stream_max_in_flight as u64),
            ("classify.max_labels", c.max_labels as u64),
            ("classify.max_templates", c.max_templates as u64),
            ("classify.max_top_k", c.max_top_k as u64),
            ("index.max_top_k", i.max_top_k as u64),
            ("index.max_collections", i.max_collections as u64),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, count)| *count == 0) {
            return invalid(key, "must be at least 1");
        }
        if self.metrics.enabled
            && self.metrics.addr.port() != 0
            && self.metrics.addr.port() == s.grpc_addr.port()
        {
            return invalid(
                "metrics.addr",
                "must use another port than server.grpc_addr",
            );
        }
        if b.max_queued_inputs < l.max_inputs_per_request {
            return invalid(
                "batching.max_queued_inputs",
                "must be at least limits.max_inputs_per_request, or a full request could never \
                 be admitted",
            );
        }
        if let Some(problem) = self.classify.hnsw.problem() {
            return invalid("classify.hnsw", &problem);
        }
        if let Some(problem) = i.hnsw.problem() {
            return invalid("index.hnsw", &problem);
        }
        if !(i.rebuild_tombstone_ratio > 0.0 && i.rebuild_tombstone_ratio <= 1.0) {
            return invalid(
                "index.rebuild_tombstone_ratio",
                "must be over 0 and at most 1",
            );
        }
        if i.data_dir.as_os_str().is_empty() {
            return invalid("index.data_dir", "must name a directory");
        }
        for (name, classifier) in &self.classifiers {
            if let Some(problem) = classifier.problem() {
                return invalid(&format!("classifiers.{name}"), &problem);
            }
        }
        let t = &self.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            return invalid("tls", "set both cert_file and key_file, or neither");
        }
        if t.client_ca_file.is_some() && t.cert_file.is_none() {
            return invalid(
                "tls.client_ca_file",
                "mutual TLS needs the server's own cert_file and key_file",
            );
        }
        if let Some(i) = self
            .auth
            .read_keys
            .iter()
            .chain(&self.auth.write_keys)
            .position(|k| k.trim().is_empty())
        {
            return invalid("auth", &format!("key {i} is empty"));
        }
        if s.max_message_bytes < l.max_image_bytes {
            return invalid(
                "server.max_message_bytes",
                "must be at least limits.max_image_bytes, or the largest image allowed could \
                 never be sent",
            );
        }
        Ok(())
    }

    pub fn model_options(&self) -> Result<ModelOptions, ConfigError> {
        Ok(ModelOptions {
            device: parse("model.device", &self.model.device)?,
            dtype: parse("model.dtype", &self.model.dtype)?,
        })
    }

    pub fn model_source(&self) -> ModelSource {
        ModelSource::parse(self.model.source.as_deref())
    }

    /// The settings as TOML, with the API keys replaced by a placeholder.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for keys in [&mut shown.auth.read_keys, &mut shown.auth.write_keys] {
            keys.iter_mut().for_each(|k| *k = REDACTED.to_owned());
        }
        toml::to_string(&shown).expect("settings serialise")
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Invalid {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("clipd-config-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_example_file_holds_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clipd.example.toml");
        let loaded = Settings::load_with_env(Some(&example), env(&[]), &Overrides::default());
        assert_eq!(loaded.unwrap(), Settings::default());
    }

    #[test]
    fn layers_override_in_order() {
        let file = write(
            "layers.yaml",
            "batching:\n  max_delay_ms: 7\n  max_batch_size: 9\nmodel:\n  dtype: bf16\n",
        );
        let vars = env(&[
            ("CLIPD__BATCHING__MAX_BATCH_SIZE", "12"),
            ("CLIPD__MODEL__DTYPE", "f16"),
            ("CLIPD__SERVER__GRPC_ADDR", "127.0.0.1:7000"),
            ("UNRELATED", "1"),
        ]);
        let overrides = Overrides {
            grpc_addr: Some(([127, 0, 0, 1], 8000).into()),
            model: Some("some/model".into()),
            ..Overrides::default()
        };
        let s = Settings::load_with_env(Some(&file), vars, &overrides).unwrap();
        assert_eq!(s.batching.max_delay_ms, 7, "file over default");
        assert_eq!(s.batching.max_batch_size, 12, "environment over file");
        assert_eq!(s.model.dtype, "f16");
        assert_eq!(
            s.server.grpc_addr,
            ([127, 0, 0, 1], 8000).into(),
            "flag over environment"
        );
        assert_eq!(s.model.source, Some(PathBuf::from("some/model")));
        assert_eq!(s.limits, LimitSettings::default());
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let file = write("unknown.toml", "[batching]\nmax_delay = 5\n");
        let e = Settings::load_with_env(Some(&file), env(&[]), &Overrides::default());
        assert!(e.unwrap_err().to_string().contains("max_delay"));
        std::fs::remove_file(file).unwrap();
        let vars = env(&[("CLIPD__LIMITS__MAX_IMAGES", "3")]);
        let e = Settings::load_with_env(None, vars, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("max_images"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            (
                "CLIPD__BATCHING__MAX_BATCH_SIZE",
                "0",
                "batching.max_batch_size",
            ),
            (
                "CLIPD__BATCHING__MAX_QUEUED_INPUTS",
                "10",
                "batching.max_queued_inputs",
            ),
            (
                "CLIPD__BATCHING__STALL_TIMEOUT_MS",
                "0",
                "batching.stall_timeout_ms",
            ),
            (
                "CLIPD__SERVER__STREAM_MAX_IN_FLIGHT",
                "0",
                "server.stream_max_in_flight",
            ),
            (
                "CLIPD__SERVER__MAX_MESSAGE_BYTES",
                "1000",
                "server.max_message_bytes",
            ),
            (
                "CLIPD__LIMITS__MAX_IMAGE_PIXELS",
                "0",
                "limits.max_image_pixels",
            ),
            ("CLIPD__CLASSIFY__MAX_LABELS", "0", "classify.max_labels"),
            (
                "CLIPD__INDEX__MAX_COLLECTIONS",
                "0",
                "index.max_collections",
            ),
            ("CLIPD__METRICS__ADDR", "0.0.0.0:50051", "metrics.addr"),
            ("CLIPD__MODEL__DEVICE", "tpu", "model.device"),
            ("CLIPD__MODEL__DTYPE", "f64", "model.dtype"),
            ("CLIPD__SERVER__GRPC_ADDR", "nowhere", "server.grpc_addr"),
            (
                "CLIPD__BATCHING__MAX_DELAY_MS",
                "soon",
                "batching.max_delay_ms",
            ),
        ];
        for (key, value, named) in cases {
            let e = Settings::load_with_env(None, env(&[(key, value)]), &Overrides::default())
                .unwrap_err();
            assert!(e.to_string().contains(named), "{key}={value}: {e}");
        }
    }

    #[test]
    fn classifiers_are_validated_by_name() {
        let cases = [
            ("labels = []", "classifiers.c: the label set is empty"),
            ("labels = [\"a\", \"a\"]", "appears twice"),
            ("labels = [\"a\"]\ntemplates = [\"a photo\"]", "has no {}"),
            (
                "labels = [\"a\"]\ntemplate_set = \"cifar\"",
                "unknown template set",
            ),
            (
                "labels = [\"a\"]\ntemplates = [\"{}\"]\ntemplate_set = \"imagenet\"",
                "not both",
            ),
            (
                "labels = [\"a\"]\nthresholds = { b = 0.5 }",
                "not one of the labels",
            ),
            ("labels = [\"a\"]\nthresholds = { a = 1.5 }", "0 to 1"),
            ("labels = [\"a\"]\ncolour = 1", "unknown field `colour`"),
        ];
        for (i, (body, message)) in cases.into_iter().enumerate() {
            let file = write(
                &format!("classifier-{i}.toml"),
                &format!("[classifiers.c]\n{body}\n"),
            );
            let e =
                Settings::load_with_env(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(message), "{body}: {e}");
            std::fs::remove_file(file).unwrap();
        }
        let vars = env(&[("CLIPD__CLASSIFY__HNSW__M", "300")]);
        let e = Settings::load_with_env(None, vars, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("classify.hnsw: m is 300"), "{e}");
        let file = write(
            "classifier-ok.toml",
            "[classifiers.c]\nlabels = [\"a\", \"b\"]\ntemplate_set = \"imagenet\"\n",
        );
        let s = Settings::load_with_env(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.classifiers["c"].templates().len(), 80);
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn an_empty_variable_is_unset() {
        let vars = env(&[
            ("CLIPD__MODEL__SOURCE", ""),
            ("CLIPD__MODEL__DTYPE", "bf16"),
        ]);
        let s = Settings::load_with_env(None, vars, &Overrides::default()).unwrap();
        assert_eq!(s.model.source, None);
        assert_eq!(s.model.dtype, "bf16");
        let vars = env(&[("CLIPD__MODEL__SOURCE", "007")]);
        let s = Settings::load_with_env(None, vars, &Overrides::default()).unwrap();
        assert_eq!(s.model.source, Some(PathBuf::from("007")));
    }

    #[test]
    fn keys_come_from_lists_in_the_environment_and_are_redacted() {
        let vars = env(&[
            ("CLIPD__AUTH__READ_KEYS", "r1, r2"),
            ("CLIPD__AUTH__WRITE_KEYS", "w1"),
            ("CLIPD__MODEL__SOURCE", "007"),
        ]);
        let s = Settings::load_with_env(None, vars, &Overrides::default()).unwrap();
        assert_eq!(s.auth.read_keys, ["r1", "r2"]);
        assert_eq!(s.auth.write_keys, ["w1"]);
        let shown = s.redacted_toml();
        for secret in ["r1", "r2", "w1"] {
            assert!(!shown.contains(&format!("\"{secret}\"")), "{shown}");
        }
        assert_eq!(shown.matches(REDACTED).count(), 3, "{shown}");
        let reread: Settings = toml::from_str(&shown).unwrap();
        assert_eq!(reread.model.source, Some(PathBuf::from("007")));
        assert_eq!(reread.batching, s.batching);
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused_without_being_quoted() {
        let file = write("one-key.toml", "[auth]\nread_keys = \"s3cret\"\n");
        let s = Settings::load_with_env(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.auth.read_keys, ["s3cret"]);
        std::fs::remove_file(file).unwrap();
        for value in [
            "{ key = \"s3cret\" }",
            "[\"s3cret\", 9876543210]",
            "9876543210",
        ] {
            let file = write("bad-key.toml", &format!("[auth]\nwrite_keys = {value}\n"));
            let e = Settings::load_with_env(Some(&file), env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("expected a key or a list of keys"), "{e}");
            assert!(!e.contains("s3cret") && !e.contains("9876543210"), "{e}");
            std::fs::remove_file(file).unwrap();
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        for (vars, named) in [
            (vec![("CLIPD__TLS__CERT_FILE", "c.pem")], "tls: set both"),
            (
                vec![("CLIPD__TLS__CLIENT_CA_FILE", "ca.pem")],
                "tls.client_ca_file",
            ),
        ] {
            let e = Settings::load_with_env(None, env(&vars), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(named), "{e}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let e = Settings::load_with_env(
            Some(Path::new("/nonexistent/clipd.toml")),
            env(&[]),
            &Overrides::default(),
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/clipd.toml"));
    }
}
