//! The HTTPS listener (`http.tls`) over real sockets: certificates from a fresh CA per test,
//! clients that trust it or not, and a certificate rotated under a running listener.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use comptoir_platform::config::{HttpSettings, Validate};
use comptoir_platform::http::{app, serve};
use comptoir_platform::tls::TlsListenerSettings;
use comptoir_testkit::tls::{IssuedFiles, TestCa};
use comptoir_testkit::{free_port, wait_for};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Running {
    plain: String,
    https: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn tls_settings(files: &IssuedFiles) -> TlsListenerSettings {
    TlsListenerSettings {
        listen: ([127, 0, 0, 1], free_port()).into(),
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
        reload_interval_ms: 50,
    }
}

async fn start(tls: TlsListenerSettings) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain = format!("http://{}", listener.local_addr().expect("addr"));
    let https = format!("https://localhost:{}", tls.listen.port());
    let settings = HttpSettings {
        tls: Some(tls),
        ..HttpSettings::default()
    };
    assert_eq!(settings.validate(), Vec::<String>::new());
    let api = Router::new().route("/hello", get(|| async { "hello" }));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        app("platform-tls-test", api, &settings, Vec::new()),
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    let running = Running {
        plain,
        https,
        shutdown,
        server,
    };
    let port = settings.tls.as_ref().map(|t| t.listen.port()).unwrap_or(0);
    wait_for(
        "the HTTPS listener",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        },
    )
    .await
    .expect("HTTPS listener up");
    running
}

/// A client trusting only `ca_pem` (no system roots), resolving `localhost` to loopback.
fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client")
}

async fn hello(client: &reqwest::Client, base: &str) -> Result<String, reqwest::Error> {
    client
        .get(format!("{base}/hello"))
        .send()
        .await?
        .text()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_routes_are_served_over_tls_to_clients_trusting_the_ca_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let files = ca.write(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let running = start(tls_settings(&files)).await;

    // The platform's CA: served, and the plain listener still serves the same routes.
    assert_eq!(
        hello(&client(ca.pem()), &running.https)
            .await
            .expect("https"),
        "hello"
    );
    assert_eq!(
        hello(&reqwest::Client::new(), &running.plain)
            .await
            .expect("http"),
        "hello"
    );

    // Another CA: the handshake fails, nothing is served.
    let stranger = TestCa::new();
    let refused = hello(&client(stranger.pem()), &running.https).await;
    assert!(
        refused.is_err(),
        "a certificate of another CA was believed: {refused:?}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let port = running.https.rsplit(':').next().expect("port");
    let plain_to_tls = hello(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
    assert!(
        plain_to_tls.is_err(),
        "plain HTTP answered on the TLS port: {plain_to_tls:?}"
    );

    running.shutdown.cancel();
    running.server.await.expect("join").expect("clean stop");
}

/// Waits until the files' modification time differs from the one loaded (some filesystems
/// keep whole seconds), then writes a certificate of `ca` for `localhost` over them.
async fn rotate(ca: &TestCa, files: &IssuedFiles) {
    let before = std::fs::metadata(&files.cert_file)
        .and_then(|m| m.modified())
        .expect("mtime");
    wait_for(
        "a new modification time",
        Duration::from_secs(5),
        || async {
            let probe = files.cert_file.with_extension("probe");
            std::fs::write(&probe, b"").expect("probe");
            let now = std::fs::metadata(&probe)
                .and_then(|m| m.modified())
                .expect("mtime");
            (now > before).then_some(())
        },
    )
    .await
    .expect("clock moved");
    let issued = ca.issue(&["localhost"]);
    write_atomically(&files.key_file, &issued.key_pem);
    write_atomically(&files.cert_file, &issued.cert_pem);
}

fn write_atomically(path: &Path, content: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, content).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_ca, new_ca) = (TestCa::new(), TestCa::new());
    let files = old_ca.write(dir.path(), "server", &["localhost"]);
    let running = start(tls_settings(&files)).await;
    assert!(hello(&client(old_ca.pem()), &running.https).await.is_ok());

    // The Secret is replaced with a certificate of the new CA: picked up within a few
    // reload intervals, and the old one is no longer served.
    rotate(&new_ca, &files).await;
    let (https, trusting_new) = (running.https.clone(), client(new_ca.pem()));
    wait_for("the new certificate", Duration::from_secs(10), || {
        let (https, client) = (https.clone(), trusting_new.clone());
        async move { hello(&client, &https).await.ok() }
    })
    .await
    .expect("rotated certificate served");
    assert!(hello(&client(old_ca.pem()), &running.https).await.is_err());

    // A broken rotation (a key that is not PEM): the listener keeps serving the last good
    // certificate.
    std::fs::write(&files.key_file, "not a key").expect("break the key");
    wait_for(
        "the broken pair to be tried",
        Duration::from_secs(10),
        || async {
            comptoir_platform::metrics::handle()
                .render()
                .contains(r#"tls_certificate_reloads_total{outcome="failed"}"#)
                .then_some(())
        },
    )
    .await
    .expect("a failed reload counted");
    assert_eq!(
        hello(&trusting_new, &running.https)
            .await
            .expect("still served"),
        "hello"
    );

    running.shutdown.cancel();
    running.server.await.expect("join").expect("clean stop");
}

#[test]
fn settings_name_the_file_at_fault_before_anything_is_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let files = ca.write(dir.path(), "server", &["localhost"]);
    let other = ca.write(dir.path(), "other", &["localhost"]);
    let with = |tls: TlsListenerSettings| {
        HttpSettings {
            tls: Some(tls),
            ..HttpSettings::default()
        }
        .validate()
    };

    assert_eq!(with(tls_settings(&files)), Vec::<String>::new());

    let mismatched = TlsListenerSettings {
        key_file: other.key_file.clone(),
        ..tls_settings(&files)
    };
    let problems = with(mismatched);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("http.tls: key_file"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("does not go with cert_file"),
        "{problems:?}"
    );

    let missing = TlsListenerSettings {
        cert_file: dir.path().join("absent.crt"),
        reload_interval_ms: 0,
        ..tls_settings(&files)
    };
    let problems = with(missing);
    assert!(
        problems[0].starts_with("http.tls: cannot read cert_file"),
        "{problems:?}"
    );
    assert!(problems[1].contains("reload_interval_ms"), "{problems:?}");

    // A key file's content never appears in a message.
    std::fs::write(&files.key_file, "-----BEGIN SECRET----- hunter2").expect("write");
    let problems = with(tls_settings(&files));
    assert!(
        problems[0].contains("holds no PEM private key"),
        "{problems:?}"
    );
    assert!(!problems.concat().contains("hunter2"));

    let clash = HttpSettings {
        listen: ([127, 0, 0, 1], 8443).into(),
        tls: Some(TlsListenerSettings {
            listen: ([127, 0, 0, 1], 8443).into(),
            ..tls_settings(&other)
        }),
        ..HttpSettings::default()
    };
    assert_eq!(
        clash.validate(),
        ["http.tls.listen must differ from http.listen and http.ops_listen"]
    );
}
