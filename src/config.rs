//! The settings tree and its layers, lowest first: built-in defaults, the `--config` file (TOML or
//! YAML), `CLIPD__SECTION__KEY` environment variables, command-line flags.

//!
//! Each section's type lives with the module it configures; this module assembles them, layers
//! them and checks the rules that span sections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classify::{ClassifierSettings, ClassifySettings};
use crate::engine::{BatchingSettings, LimitSettings};
use crate::grpc::{AuthSettings, ServerSettings, TlsSettings};
use crate::index::IndexSettings;
use crate::model::{DeviceSpec, Dtype, Locations, ModelSettings};
use crate::telemetry::MetricsSettings;

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

/// Where models come from, as the environment says: Hugging Face's variables (HF_ENDPOINT, HF_HOME,
/// HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN) and XDG_CACHE_HOME / HOME for the demo model.
pub fn locations_from_env() -> Locations {
    Locations::from_vars(|name| std::env::var(name).ok())
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

impl Overrides {
    fn apply(&self, settings: &mut Settings) {
        if let Some(model) = &self.model {
            settings.model.source = Some(model.clone());
        }
        if let Some(addr) = self.grpc_addr {
            settings.server.grpc_addr = addr;
        }
        if let Some(addr) = self.metrics_addr {
            settings.metrics.addr = addr;
        }
        if let Some(device) = self.device {
            settings.model.device = device;
        }
        if let Some(dtype) = self.dtype {
            settings.model.dtype = dtype;
        }
    }
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
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        overrides.apply(&mut settings);
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
            (
                "index.max_items_per_request",
                i.max_items_per_request as u64,
            ),
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
        if let Some(problem) = i.milvus.problem() {
            return invalid("index.milvus", &problem);
        }
        if i.backend == crate::index::Backend::Milvus {
            use crate::index::milvus::{MAX_TEXT_BYTES, MAX_WINDOW};
            let over = [
                ("index.max_top_k", i.max_top_k, MAX_WINDOW),
                (
                    "index.max_items_per_request",
                    i.max_items_per_request,
                    MAX_WINDOW,
                ),
                ("limits.max_text_bytes", l.max_text_bytes, MAX_TEXT_BYTES),
            ];
            if let Some((key, _, most)) = over.iter().find(|(_, value, most)| value > most) {
                return invalid(
                    key,
                    &format!("must be at most {most} with Milvus (its limit)"),
                );
            }
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
            .position(|k| k.expose().trim().is_empty())
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

    /// The settings as TOML; secrets show as a placeholder.
    pub fn redacted_toml(&self) -> String {
        toml::to_string(self).expect("settings serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Secret, REDACTED};
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
        assert_eq!(s.model.dtype, Dtype::F16);
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
        assert_eq!(s.model.dtype, Dtype::Bf16);
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
        assert_eq!(s.auth.read_keys, [Secret::new("r1"), Secret::new("r2")]);
        assert_eq!(s.auth.write_keys, [Secret::new("w1")]);
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
        assert_eq!(s.auth.read_keys, [Secret::new("s3cret")]);
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
