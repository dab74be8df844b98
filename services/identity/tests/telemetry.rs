//! The real binary through a whole customer journey — register, sign in, read and change the
//! profile, set consents, refresh, have a service resolve PII, export their data, sign out,
//! erase their account — at debug level: no line of its output holds the customer's email,
//! name, phone or address.

mod support;

use std::process::Command;
use std::time::Duration;

use comptoir_testkit::{TestDatabase, wait_for};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_full_journey_hold_no_personal_data() {
    let db = TestDatabase::create("identity_test").await.expect("db");
    let namespace = support::namespace().await;
    let keys = support::KeyFiles::generate(&db.scratch_dir().join("keys"));
    let port = comptoir_testkit::free_port();
    let var = |k: &str, v: String| (format!("COMPTOIR_IDENTITY__{k}"), v);
    let mut child = Command::new(env!("CARGO_BIN_EXE_comptoir-identity"))
        .envs([
            var("HTTP__LISTEN", format!("127.0.0.1:{port}")),
            var("TELEMETRY__LOG_FILTER", "debug".to_owned()),
            var("DATABASE__HOST", db.host.clone()),
            var("DATABASE__PORT", db.port.to_string()),
            var("DATABASE__NAME", db.name.clone()),
            var("DATABASE__USER", db.name.clone()),
            var(
                "DATABASE__PASSWORD_FILE",
                db.password_file().display().to_string(),
            ),
            var("KEYS__ACTIVE_KEK__ID", "kek-a".to_owned()),
            var("KEYS__ACTIVE_KEK__FILE", keys.kek_a.display().to_string()),
            var(
                "KEYS__BLIND_INDEX_KEY_FILE",
                keys.blind_index.display().to_string(),
            ),
            var(
                "TOKENS__SIGNING_KEY_FILE",
                keys.signing.display().to_string(),
            ),
            var("ARGON2__MEMORY_KIB", "1024".to_owned()),
            var("PULSAR__URL", comptoir_testkit::pulsar_url().to_string()),
            var("PULSAR__NAMESPACE", namespace.name.clone()),
            // No participant: the export is identity's slice alone, the erasure complete at
            // once; what is logged on the way is what this test reads.
            var("GDPR__PARTICIPANTS", "[]".to_owned()),
            var("ARGON2__ITERATIONS", "1".to_owned()),
            var(
                "INTERNAL_CLIENTS__NOTIFICATIONS__TOKEN_FILE",
                keys.notifications_token.display().to_string(),
            ),
            var(
                "INTERNAL_CLIENTS__NOTIFICATIONS__PURPOSES",
                "{\"order-confirmation\" = [\"email\", \"name\", \"phone\", \"addresses\"]}"
                    .to_owned(),
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start comptoir-identity");
    // Read both pipes while the binary runs: at debug level (the broker client's lines too)
    // it writes more than a pipe holds, and a full pipe would block its logging.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the binary to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
    })
    .await
    .expect("ready");

    let email = "octavia.wrenfield@example.net";
    let name = "Octavia Wrenfield";
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let mut body = support::registration(email, name);
    body["phone"] = "+44 20 7946 0958".into();
    assert_eq!(
        post("/v1/customers", body.clone())
            .await
            .expect("register")
            .status(),
        202
    );
    assert_eq!(
        post("/v1/customers", body).await.expect("again").status(),
        202
    );
    let failed = post(
        "/v1/sessions",
        json!({"email": email, "password": "not the password"}),
    )
    .await
    .expect("login");
    assert_eq!(failed.status(), 401);
    let tokens = support::tokens(
        post(
            "/v1/sessions",
            json!({"email": email, "password": support::PASSWORD}),
        )
        .await
        .expect("login"),
    )
    .await;
    let me: Value = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], name);
    let id = me["id"].as_str().expect("id").to_owned();
    let patched = http
        .patch(format!("{base}/v1/me"))
        .bearer_auth(&tokens.access)
        .json(&json!({"addresses": [{"line1": "221B Quillon Mews", "postal_code": "NW1 6XE", "city": "Londinium", "country": "GB"}]}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    let consent = http
        .put(format!("{base}/v1/me/consents/marketing"))
        .bearer_auth(&tokens.access)
        .json(&json!({"granted": true}))
        .send()
        .await
        .expect("consent");
    assert_eq!(consent.status(), 200);
    let refreshed = post(
        "/v1/sessions/refresh",
        json!({"refresh_token": tokens.refresh}),
    )
    .await
    .expect("refresh");
    assert_eq!(refreshed.status(), 200);
    let pii = http
        .post(format!("{base}/internal/v1/customers/{id}/pii"))
        .bearer_auth(support::NOTIFICATIONS_TOKEN)
        .json(&json!({"purpose": "order-confirmation", "fields": ["email", "name", "phone", "addresses"]}))
        .send()
        .await
        .expect("pii");
    assert_eq!(pii.status(), 200);
    let export = http
        .post(format!("{base}/v1/me/exports"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), 202);
    let export: Value = export.json().await.expect("json");
    let status: Value = http
        .get(format!(
            "{base}{}",
            export["status_url"].as_str().expect("url")
        ))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["status"], "ready", "{status}");
    let archive: Value = http
        .get(format!(
            "{base}{}",
            status["download"].as_str().expect("download")
        ))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("archive")
        .json()
        .await
        .expect("json");
    assert_eq!(
        archive["slices"]["identity"]["data"]["profile"]["email"],
        email
    );
    let logout = http
        .delete(format!("{base}/v1/sessions/current"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    let erased = http
        .delete(format!("{base}/v1/me"))
        .bearer_auth(&tokens.access)
        .json(&json!({"password": support::PASSWORD}))
        .send()
        .await
        .expect("erase");
    assert_eq!(erased.status(), 202);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("exit status");
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");

    let logs = format!(
        "{}\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(
        logs.contains("Signed in"),
        "the journey was logged:\n{logs}"
    );
    assert!(logs.contains("PII requested"));
    assert!(logs.contains("Export ready"), "the export was logged");
    assert!(logs.contains("Customer erased from identity"));
    let lower = logs.to_lowercase();
    for needle in [
        email,
        "octavia",
        "wrenfield",
        // The phone as typed and as stored; whole numbers only, since a 4-digit fragment
        // turns up by chance in ids and timings (this test failed once on "7946").
        "20 7946 0958",
        "442079460958",
        "zéphyrs",
        "quillon",
        "londinium",
        "nw1 6xe",
        support::PASSWORD,
        support::NOTIFICATIONS_TOKEN,
        &tokens.refresh,
        &tokens.access,
    ] {
        assert!(
            !lower.contains(&needle.to_lowercase()),
            "{needle:?} appears in the logs"
        );
    }
}
