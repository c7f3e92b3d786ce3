//! API keys (read and write), TLS and mutual TLS, with certificates made for the test.

use clipd::grpc::pb;
use clipd::grpc::pb::clip_client::ClipClient;
use clipd::grpc::pb::collections_client::CollectionsClient;
use clipd::secret::Secret;
use clipd::server::RunningServer;
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::*;

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_reads_and_writes_but_not_probes() {
    let mut s = settings("tiny-a");
    s.auth.read_keys = vec![Secret::new("read-key")];
    let keys_dir = scratch_dir("keys");
    let keys_file = keys_dir.path().join("write.keys");
    std::fs::write(&keys_file, "# writers\nwrite-key\n").unwrap();
    s.auth.write_keys_file = Some(keys_file.clone());
    s.auth.reload_interval_ms = 50;
    let server = TestServer::start(s).await;
    let channel = channel(&server.server).await;
    let mut clip = ClipClient::new(channel.clone());
    let mut collections = CollectionsClient::new(channel.clone());

    let reader = clip.clone();
    let embed_with = |key: Option<&'static str>| {
        let mut clip = reader.clone();
        async move {
            clip.embed(with_key(request(vec![text("hello")]), key))
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    };
    assert_eq!(embed_with(None).await, Err(Code::Unauthenticated));
    assert_eq!(embed_with(Some("guess")).await, Err(Code::Unauthenticated));
    assert_eq!(embed_with(Some("read-key")).await, Ok(()));
    assert_eq!(embed_with(Some("write-key")).await, Ok(()));
    let missing = clip
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap_err();
    assert!(
        missing.message().contains("authorization: Bearer"),
        "{missing:?}"
    );

    let create = |name: &str| pb::CreateCollectionRequest {
        name: name.into(),
        ..Default::default()
    };
    let refused = collections
        .create_collection(with_key(create("c"), Some("read-key")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = collections
        .create_collection(create("c"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    collections
        .create_collection(with_key(create("c"), Some("write-key")))
        .await
        .unwrap();

    // A rotated key file takes effect without a restart.
    std::fs::write(&keys_file, "rotated-key\n").unwrap();
    eventually("the rotated key is accepted", || async {
        embed_with(Some("rotated-key")).await.is_ok()
    })
    .await;
    assert_eq!(
        embed_with(Some("write-key")).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(embed_with(Some("read-key")).await, Ok(()));
    // Emptying the file revokes its keys; the inline read key still guards the door.
    std::fs::write(&keys_file, "").unwrap();
    eventually("the revoked key is refused", || async {
        embed_with(Some("rotated-key")).await.is_err()
    })
    .await;
    assert_eq!(embed_with(None).await, Err(Code::Unauthenticated));
    assert_eq!(embed_with(Some("read-key")).await, Ok(()));

    // Probes need no key.
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "clipd.v1.Clip".into(),
        })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);
}

/// Waits (30 s at most) until `done` says so.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, done: impl Fn() -> F) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A CA, a server certificate for localhost and 127.0.0.1, and a client certificate, as PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf(vec!["a client".into()]),
    }
}

/// A server on TLS with `pki`'s server certificate (and its CA for clients, if `mutual`), the
/// settings it was started with, and the folder of its certificate files: keep all three.
async fn tls_server(pki: &Pki, mutual: bool) -> (RunningServer, TestSettings, TempDir) {
    let dir = scratch_dir("tls");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        Some(path)
    };
    let mut s = settings("tiny-a");
    s.tls.cert_file = write("server.crt", &pki.server.0);
    s.tls.key_file = write("server.key", &pki.server.1);
    if mutual {
        s.tls.client_ca_file = write("ca.crt", &pki.ca);
    }
    let mut server = RunningServer::start(s.settings(), clipd::config::locations_from_env())
        .await
        .unwrap();
    server.ready().await.unwrap();
    (server, s, dir)
}

/// Embeds "hi" over TLS trusting the test CA, with the client certificate if given.
async fn embed_over_tls(
    server: &RunningServer,
    pki: &Pki,
    identity: Option<&(String, String)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let url = format!("https://localhost:{}", server.addr().port());
    let channel = Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    ClipClient::new(channel)
        .embed(request(vec![text("hi")]))
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let pki = pki();
    let (server, _settings, _files) = tls_server(&pki, false).await;
    embed_over_tls(&server, &pki, None).await.unwrap();
    // A plain-text client gets no answer from a TLS server.
    let plain = Channel::from_shared(format!("http://{}", server.addr())).unwrap();
    let answered = match plain.connect().await {
        Ok(channel) => ClipClient::new(channel)
            .embed(request(vec![text("hi")]))
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!answered, "plain text must not be served");
    server.shutdown().await.unwrap();

    let (server, _settings, _files) = tls_server(&pki, true).await;
    let refused = embed_over_tls(&server, &pki, None).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );
    embed_over_tls(&server, &pki, Some(&pki.client))
        .await
        .unwrap();
    let stranger = {
        let other = self::pki();
        embed_over_tls(&server, &pki, Some(&other.client)).await
    };
    assert!(
        stranger.is_err(),
        "a certificate from another CA is refused"
    );

    // The command line reaches it with the CA and a client certificate: the answer is the
    // server's (no such collection), not a failed handshake.
    let files = scratch_dir("cli-tls");
    let write = |name: &str, pem: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ca = write("ca.crt", &pki.ca);
    let (cert, key) = (write("c.crt", &pki.client.0), write("c.key", &pki.client.1));
    let url = format!("https://localhost:{}", server.addr().port());
    let cli_search = |tls: Vec<String>| {
        let mut args = vec![
            "search",
            "--server",
            &url,
            "--collection",
            "nope",
            "--text",
            "x",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend(tls);
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_clipd"))
                .args(args)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let flags = |names: &[(&str, &String)]| -> Vec<String> {
        names
            .iter()
            .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
            .collect()
    };
    let all = flags(&[
        ("--ca-cert", &ca),
        ("--client-cert", &cert),
        ("--client-key", &key),
    ]);
    let (ok, stderr) = cli_search(all).await.unwrap();
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    let (ok, stderr) = cli_search(flags(&[("--ca-cert", &ca)])).await.unwrap();
    assert!(
        !ok && !stderr.contains("NotFound"),
        "no client certificate: {stderr}"
    );
    server.shutdown().await.unwrap();
}

/// cert-manager renews a certificate in place: new connections get the new one without a
/// restart, and a file that does not parse leaves the one in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let (old, new) = (pki(), pki());
    let dir = scratch_dir("renewed");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &old.server.0).unwrap();
    std::fs::write(&key, &old.server.1).unwrap();
    let mut s = settings("tiny-a");
    s.tls.cert_file = Some(cert.clone());
    s.tls.key_file = Some(key.clone());
    s.tls.reload_interval_ms = 50;
    let mut server = RunningServer::start(s.settings(), clipd::config::locations_from_env())
        .await
        .unwrap();
    server.ready().await.unwrap();
    embed_over_tls(&server, &old, None).await.unwrap();

    std::fs::write(&key, &new.server.1).unwrap();
    std::fs::write(&cert, &new.server.0).unwrap();
    eventually("the renewed certificate is served", || async {
        embed_over_tls(&server, &new, None).await.is_ok()
    })
    .await;
    assert!(embed_over_tls(&server, &old, None).await.is_err());

    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    embed_over_tls(&server, &new, None).await.unwrap();
    server.shutdown().await.unwrap();
}
