//! The server, where everything is put together from the settings: binds first and answers
//! health checks (NOT_SERVING) while the model loads, then serves `clipd.v1.Clip`,
//! `clipd.v1.Collections`, `grpc.health.v1.Health` and reflection (v1 and v1alpha), and metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use tonic::service::interceptor::InterceptedService;

use crate::classify::Classify;
use crate::config::Settings;
use crate::engine::{Engine, EngineError, EngineSettings, Health, StartError};
use crate::grpc::{
    pb, stamp_deadline, Access, Advertised, ApiKeys, ClipService, CollectionsService, KeyFileError,
    Loaded, ObserveLayer, State, Tls, TlsError,
};
use crate::index::{
    Backend, CollectionStore, EmbeddedStore, IndexSettings, MilvusStore, ModelIdentity, Registry,
};
use crate::model::{Locations, ModelSpec};
use crate::reload::{self, Reread};
use crate::secret::{read_secrets, Secret};
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    Settings(#[from] crate::config::ConfigError),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    NotLoaded(String),
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the gRPC server task panicked")]
    Panicked,
}

/// Starting the model, the classifiers or the collections failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Engine(#[from] StartError),
    #[error("cannot embed the configured classifiers' labels: {0}")]
    Classifiers(EngineError),
    #[error("cannot open the collections' data directory {dir}: {source}")]
    Collections {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("opening the collections failed: {0}")]
    Thread(String),
    #[error("cannot use Milvus for collections: {0}")]
    Milvus(String),
}

/// The health-checked service names; "" is the server as a whole.
const SERVICES: [&str; 3] = ["", "clipd.v1.Clip", "clipd.v1.Collections"];

/// A server accepting connections. `shutdown` stops it and waits; dropping it starts the same
/// graceful stop without waiting.
pub struct RunningServer {
    addr: SocketAddr,
    loaded: Arc<OnceLock<Loaded>>,
    loading: Option<JoinHandle<Result<(), LoadError>>>,
    /// Why loading failed, once `ready` has seen it.
    load_failure: Option<String>,
    /// Set at shutdown: health NOT_SERVING, new requests UNAVAILABLE.
    stopping: watch::Sender<bool>,
    reporter: HealthReporter,
    grace: Duration,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics: Option<(SocketAddr, oneshot::Sender<()>)>,
}

/// What /readyz and /metrics read.
struct ServerProbe {
    loaded: Arc<OnceLock<Loaded>>,
    stopping: watch::Receiver<bool>,
}

impl telemetry::http::Probe for ServerProbe {
    fn ready(&self) -> bool {
        !*self.stopping.borrow()
            && self
                .loaded
                .get()
                .is_some_and(|l| *l.engine.health().borrow() == Health::Serving)
    }

    fn levels(&self) -> telemetry::Levels {
        let Some(loaded) = self.loaded.get() else {
            return telemetry::Levels {
                queue_depth: 0,
                collections: 0,
                items: 0,
                tombstones: 0,
            };
        };
        let totals = loaded.collections.totals();
        telemetry::Levels {
            queue_depth: loaded.engine.queued_inputs(),
            collections: totals.collections,
            items: totals.items,
            tombstones: totals.tombstones,
        }
    }
}

impl RunningServer {
    /// Binds `settings.server.grpc_addr` (port 0: any free port) and starts loading the model in
    /// the background; `ready` waits for it.
    pub async fn start(settings: Settings, locations: Locations) -> Result<Self, ServeError> {
        settings.validate()?;
        let addr = settings.server.grpc_addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;

        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_all(&reporter, ServingStatus::NotServing).await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let loaded = Arc::new(OnceLock::new());
        let (stopping, stopping_rx) = watch::channel(false);
        let max_message_bytes = settings.server.max_message_bytes;
        let state = State {
            loaded: loaded.clone(),
            stopping: stopping_rx.clone(),
            advertised: Arc::new(Advertised {
                limits: settings.limits.clone(),
                batching: settings.batching.clone(),
                max_message_bytes,
                stream_max_in_flight: settings.server.stream_max_in_flight,
                classifiers: settings.classifiers.keys().cloned().collect(),
                max_top_k: settings.index.max_top_k,
                max_items_per_request: settings.index.max_items_per_request,
            }),
        };
        let clip = pb::clip_server::ClipServer::new(ClipService {
            state: state.clone(),
        })
        .max_decoding_message_size(max_message_bytes);
        let keys = Arc::new(ApiKeys::load(&settings.auth)?);
        Arc::clone(&keys).keep_reloading(stopping_rx.clone());
        let clip = InterceptedService::new(clip, admit(keys.clone(), Access::Read));
        let collections =
            pb::collections_server::CollectionsServer::new(CollectionsService { state })
                .max_decoding_message_size(max_message_bytes);
        let collections = InterceptedService::new(collections, admit(keys, Access::Write));

        // Small responses must not wait for delayed ACKs (Nagle's algorithm adds ~40 ms).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .layer(ObserveLayer)
            .layer(tower::util::MapResponseLayer::new(
                crate::grpc::rewrite_too_large::<tonic::body::Body>,
            ))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(clip)
            .add_service(collections);
        let stopped = async {
            let _ = stopped.await;
        };
        let tls = Tls::load(&settings.tls)?;
        let serving = match tls {
            None => tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
            Some(tls) => {
                let tls = Arc::new(tls);
                Arc::clone(&tls).keep_reloading(stopping_rx.clone());
                tokio::spawn(router.serve_with_incoming_shutdown(tls.accept(incoming), stopped))
            }
        };
        tracing::info!(%addr, "listening for gRPC");
        let metrics = match settings.metrics.enabled {
            false => None,
            true => {
                let wanted = settings.metrics.addr;
                let listener = tokio::net::TcpListener::bind(wanted)
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: wanted,
                        source,
                    })?;
                let metrics_addr = listener.local_addr().map_err(|source| ServeError::Bind {
                    addr: wanted,
                    source,
                })?;
                let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
                let probe = Arc::new(ServerProbe {
                    loaded: loaded.clone(),
                    stopping: stopping_rx.clone(),
                });
                telemetry::http::serve(listener, probe, async {
                    let _ = metrics_stopped.await;
                });
                tracing::info!(addr = %metrics_addr, "serving metrics and probes over HTTP");
                Some((metrics_addr, stop_metrics))
            }
        };
        let grace = settings.server.shutdown_grace();
        let loading = tokio::spawn(load(
            settings,
            locations,
            loaded.clone(),
            reporter.clone(),
            stopping_rx,
        ));
        Ok(Self {
            addr,
            loaded,
            loading: Some(loading),
            load_failure: None,
            stopping,
            reporter,
            grace,
            stop,
            serving,
            metrics,
        })
    }

    /// Where /metrics, /livez and /readyz are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine, once the model has loaded.
    pub fn engine(&self) -> Option<&Engine> {
        self.loaded.get().map(|l| &l.engine)
    }

    /// The collections, once the model has loaded.
    pub fn collections(&self) -> Option<&Arc<dyn CollectionStore>> {
        self.loaded.get().map(|l| &l.collections)
    }

    /// The classifiers, once the model has loaded.
    pub fn classify(&self) -> Option<&Classify> {
        self.loaded.get().map(|l| &l.classify)
    }

    /// Waits until the model has loaded and the server reports SERVING. Safe to cancel and to call
    /// again.
    pub async fn ready(&mut self) -> Result<&Engine, ServeError> {
        if let Some(loading) = &mut self.loading {
            let result = loading.await;
            self.loading = None;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.load_failure = Some(e.to_string()),
                Err(_) => self.load_failure = Some("the loading task panicked".into()),
            }
        }
        match (self.engine(), &self.load_failure) {
            (Some(engine), _) => Ok(engine),
            (None, failure) => Err(ServeError::NotLoaded(
                failure.clone().unwrap_or_else(|| "unknown failure".into()),
            )),
        }
    }

    /// Health turns NOT_SERVING and new requests get UNAVAILABLE; the requests in flight (queued
    /// work included) get `server.shutdown_grace_ms` to finish, then the server stops.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.stopping.send_replace(true);
        set_all(&self.reporter, ServingStatus::NotServing).await;
        let _ = self.stop.send(());
        if let Some(loading) = self.loading {
            loading.abort();
        }
        let mut serving = self.serving;
        match tokio::time::timeout(self.grace, &mut serving).await {
            Ok(result) => result.map_err(|_| ServeError::Panicked)??,
            Err(_) => {
                tracing::warn!(
                    "requests still running after the {:?} grace period are dropped",
                    self.grace
                );
                serving.abort();
            }
        }
        if let Some(loaded) = self.loaded.get() {
            let written = loaded.collections.persist().await;
            tracing::info!(snapshots = written, "collections saved");
        }
        if let Some((_, stop)) = self.metrics {
            let _ = stop.send(());
        }
        Ok(())
    }
}

async fn load(
    settings: Settings,
    locations: Locations,
    cell: Arc<OnceLock<Loaded>>,
    reporter: HealthReporter,
    stopping: watch::Receiver<bool>,
) -> Result<(), LoadError> {
    let spec = ModelSpec {
        source: settings.model.source(),
        locations,
        options: settings.model.options(),
        limits: settings.limits.inputs(),
        threads: settings.model.threads,
    };
    let engine_settings = EngineSettings {
        batching: settings.batching.clone(),
        max_inputs_per_request: settings.limits.max_inputs_per_request,
        preprocess_threads: settings.server.preprocess_threads,
    };
    let engine = Engine::start(spec, &engine_settings).await?;
    let classify = Classify::start(engine.clone(), &settings.classify, &settings.classifiers)
        .await
        .map_err(LoadError::Classifiers)?;
    let index = settings.index.clone();
    let identity = {
        let d = engine.description();
        ModelIdentity {
            name: d.name.clone(),
            dim: d.dim,
            probe: d.probe.clone(),
        }
    };
    let collections = open_store(index, identity, stopping.clone()).await?;
    if let Some(every) = settings.index.snapshot_interval() {
        tokio::spawn(periodically(
            Arc::downgrade(&collections),
            every,
            stopping.clone(),
            |collections| async move {
                collections.persist().await;
            },
        ));
    }
    let mut health = Reported {
        engine: engine.health(),
        store: collections.reachable(),
    };
    let model = engine.description();
    telemetry::build_info(&model.name, &model.device, &model.dtype);
    // Written before the model counts as loaded, so that `ready` implies the health service
    // already says SERVING (a Watch opened right after it must not see the initial NOT_SERVING).
    health.report(&reporter).await;
    let _ = cell.set(Loaded {
        engine,
        classify,
        collections,
    });
    tokio::spawn(report_health(health, reporter, stopping));
    Ok(())
}

/// The configured collection store, opened for the model the server runs (and for `copy`'s).
pub async fn open_store(
    index: IndexSettings,
    identity: ModelIdentity,
    stopping: watch::Receiver<bool>,
) -> Result<Arc<dyn CollectionStore>, LoadError> {
    match index.backend {
        Backend::Embedded => {
            let dir = index.data_dir.clone();
            let registry = tokio::task::spawn_blocking(move || Registry::open(index, identity))
                .await
                .map_err(|e| LoadError::Thread(e.to_string()))?
                .map_err(|source| LoadError::Collections { dir, source })?;
            Ok(Arc::new(EmbeddedStore::new(registry)))
        }
        Backend::Milvus => {
            let milvus = index.milvus.clone();
            let read = |path: &Path| {
                std::fs::read(path)
                    .map_err(|e| LoadError::Milvus(format!("{}: {e}", path.display())))
            };
            let ca = milvus.ca_file.as_deref().map(read).transpose()?;
            let token = match &milvus.token_file {
                None => None,
                Some(path) => Some(milvus_token(path).map_err(LoadError::Milvus)?),
            };
            // What the reloads compare with: the token connected with, read once.
            let last = Arc::new(parking_lot::Mutex::new(token.clone()));
            let store = MilvusStore::connect(milvus.clone(), index, identity, token, ca)
                .await
                .map_err(LoadError::Milvus)?;
            let store = Arc::new(store);
            tokio::spawn(periodically(
                Arc::downgrade(&store),
                milvus.health_interval(),
                stopping.clone(),
                |store| async move {
                    let _ = store.probe().await;
                },
            ));
            if let (Some(path), true) = (milvus.token_file.clone(), milvus.reload_interval_ms > 0) {
                let interval = Duration::from_millis(milvus.reload_interval_ms);
                let reloading = Arc::clone(&store);
                reload::every(
                    "milvus_token",
                    interval,
                    stopping,
                    move || -> Result<_, String> {
                        let token = milvus_token(&path)?;
                        let mut last = last.lock();
                        if last.as_ref() == Some(&token) {
                            return Ok(Reread::Unchanged);
                        }
                        reloading.set_token(Some(&token))?;
                        *last = Some(token);
                        Ok(Reread::Changed("the Milvus token".into()))
                    },
                );
            }
            Ok(store)
        }
    }
}

/// The first secret in Milvus' token file.
fn milvus_token(path: &Path) -> Result<Secret, String> {
    read_secrets(path)
        .map_err(|e| {
            format!(
                "cannot read index.milvus.token_file {}: {e}",
                path.display()
            )
        })?
        .into_iter()
        .next()
        .ok_or_else(|| format!("index.milvus.token_file {} holds no token", path.display()))
}

/// What the health service reports: the model thread's health for the server and
/// `clipd.v1.Clip`; for `clipd.v1.Collections`, also whether the collection store is reachable
/// (Embed and Classify go on serving while Milvus is away).
struct Reported {
    engine: watch::Receiver<Health>,
    store: watch::Receiver<bool>,
}

impl Reported {
    async fn report(&mut self, reporter: &HealthReporter) {
        let engine = serving_status(*self.engine.borrow_and_update());
        let collections = match *self.store.borrow_and_update() {
            true => engine,
            false => ServingStatus::NotServing,
        };
        for (service, status) in SERVICES.into_iter().zip([engine, engine, collections]) {
            reporter.set_service_status(service, status).await;
        }
    }
}

/// Mirrors the engine's and the store's health into the gRPC health service until shutdown,
/// which then owns it. `load` wrote what `health` held when this starts.
async fn report_health(
    mut health: Reported,
    reporter: HealthReporter,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        // Shutdown sets the flag before writing NOT_SERVING: one of the two writes it last.
        if *stopping.borrow() {
            set_all(&reporter, ServingStatus::NotServing).await;
            return;
        }
        tokio::select! {
            changed = health.engine.changed() => if changed.is_err() { return },
            changed = health.store.changed() => if changed.is_err() { return },
            // The server was dropped without a shutdown: nothing is left to report to.
            changed = stopping.changed() => if changed.is_err() { return } else { continue },
        }
        health.report(&reporter).await;
    }
}

fn serving_status(health: Health) -> ServingStatus {
    match health {
        Health::Serving => ServingStatus::Serving,
        Health::Stalled | Health::Stopped => ServingStatus::NotServing,
    }
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Runs `work` on `target` every `every`, until shutdown or `target` is gone: the Milvus probe,
/// and the snapshots of collections written to (shutdown writes the last ones).
async fn periodically<T: ?Sized, F, Fut>(
    target: std::sync::Weak<T>,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
    work: F,
) where
    F: Fn(Arc<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.changed() => return,
        }
        let Some(target) = target.upgrade() else {
            return;
        };
        work(target).await;
    }
}

/// The interceptor of a service: its API keys (if any are configured), then the deadline stamp.
fn admit(
    keys: Arc<ApiKeys>,
    access: Access,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request| {
        keys.check(request.metadata(), access)?;
        stamp_deadline(request)
    }
}
