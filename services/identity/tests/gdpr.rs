//! The GDPR flows across the broker: identity and the real catalog (the participant) in one
//! fresh Pulsar namespace, each with its own database. Export (Art. 15/20), erasure (Art.
//! 17), a participant down when asked, replays, and hostile input.

mod support;

use std::time::{Duration, Instant};

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::gdpr::{ERASURE_CONFIRMATIONS_TOPIC, ErasureConfirmed};
use comptoir_events::contracts::identity::CUSTOMER_ERASED_TOPIC;
use comptoir_identity::domain::Email;
use comptoir_privacy::BlindIndexKey;
use comptoir_testkit::{pulsar_url, wait_for};
use futures::TryStreamExt as _;
use pulsar::{Pulsar, TokioExecutor};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    NOTIFICATIONS_TOKEN, PASSWORD, TestApp, assert_nowhere_in, assert_problem, drained,
    registration, spawn_app, spawn_app_with, spawn_catalog,
};
use uuid::Uuid;

async fn set_consent(app: &TestApp, access: &str, purpose: &str, granted: bool) {
    let response = app
        .authed(Method::PUT, &format!("/v1/me/consents/{purpose}"), access)
        .json(&json!({ "granted": granted }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn resolve_pii(app: &TestApp, customer: &str) {
    let response = app
        .internal_pii(
            NOTIFICATIONS_TOKEN,
            customer,
            &json!({"purpose": "order-confirmation", "fields": ["email", "name"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_every_services_slice_for_its_subject_only_then_expires() {
    // A short expiry, to see the archive go; the sweep runs every 200 ms in tests.
    let app = spawn_app_with(|s| s.gdpr.export_ttl_secs = 3).await;
    let _catalog = spawn_catalog(&app.namespace).await;
    let ada = app.customer("ada@example.com", "Ada Lovelace").await;
    let ada_id = app.id(&ada.access).await;
    set_consent(&app, &ada.access, "marketing", true).await;
    set_consent(&app, &ada.access, "analytics", true).await;
    set_consent(&app, &ada.access, "marketing", false).await;
    resolve_pii(&app, &ada_id).await;

    let id = app.request_export(&ada.access).await;
    let status = app.wait_export_ready(&ada.access, &id).await;
    assert_eq!(status["services"][0]["service"], "catalog");
    assert!(status["services"][0]["answered_at"].is_string(), "{status}");
    assert!(status["expires_at"].is_string());
    let download = status["download"].as_str().expect("download");
    assert_eq!(download, format!("/v1/me/exports/{id}/archive"));

    let response = app.get_authed(download, &ada.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    assert!(header("content-disposition").starts_with("attachment"));
    assert_eq!(header("cache-control"), "no-store");
    let archive: Value = response.json().await.expect("archive json");
    assert_eq!(archive["format"], "comptoir.gdpr.export.v1");
    assert_eq!(archive["request_id"], id.as_str());
    assert_eq!(archive["customer_id"], ada_id.as_str());
    assert_eq!(archive["services"], json!(["identity", "catalog"]));
    assert!(archive["generated_at"].is_string());

    let mine = &archive["slices"]["identity"]["data"];
    let profile = &mine["profile"];
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["name"], "Ada Lovelace");
    assert_eq!(profile["phone"], "+33698765432");
    assert_eq!(
        profile["addresses"][0]["line1"],
        "17 rue des Zéphyrs Improbables"
    );
    assert_eq!(profile["addresses"][0]["city"], "Paris");
    let consents: Vec<(String, bool)> = mine["consents"]
        .as_array()
        .expect("consents")
        .iter()
        .map(|c| {
            (
                c["purpose"].as_str().expect("purpose").to_owned(),
                c["granted"].as_bool().expect("granted"),
            )
        })
        .collect();
    assert_eq!(
        consents,
        [
            ("analytics".to_owned(), true),
            ("marketing".to_owned(), false)
        ]
    );
    assert_eq!(mine["consent_history"].as_array().map(Vec::len), Some(3));
    let sessions = mine["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0]["created_at"].is_string());
    let access_log = mine["pii_access_log"].as_array().expect("access log");
    assert_eq!(access_log.len(), 1);
    assert_eq!(access_log[0]["client"], "notifications");
    assert_eq!(access_log[0]["purpose"], "order-confirmation");
    assert_eq!(access_log[0]["outcome"], "granted");
    // No credential travels in an export.
    let text = archive.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains(&ada.refresh) && !text.contains("$argon2id$")
    );

    let catalog = &archive["slices"]["catalog"];
    assert!(catalog["answered_at"].is_string());
    assert_eq!(catalog["data"]["records"], json!([]));
    assert!(
        catalog["data"]["statement"]
            .as_str()
            .is_some_and(|s| s.contains("holds no personal data")),
        "{catalog}"
    );

    // Another customer sees neither the export nor its archive, not even that it exists.
    let bob = app.customer("bob@example.com", "Bob Martin").await;
    for path in [format!("/v1/me/exports/{id}"), download.to_owned()] {
        let body = assert_problem(
            app.get_authed(&path, &bob.access).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert!(!body.to_string().contains("Lovelace"));
    }

    // Stored sealed under Ada's data key: no plaintext in any column or in a dump.
    assert_nowhere_in(
        &app.db,
        &[
            "ada@example.com",
            "Lovelace",
            "Zéphyrs Improbables",
            "98765432",
        ],
    )
    .await;

    // After the expiry: 410 for the status and the archive; the sweep deletes the archive.
    wait_for("the export to expire", Duration::from_secs(30), || async {
        let response = app
            .get_authed(&format!("/v1/me/exports/{id}"), &ada.access)
            .await;
        (response.status() == StatusCode::GONE).then_some(())
    })
    .await
    .expect("gone");
    let body = assert_problem(
        app.get_authed(download, &ada.access).await,
        StatusCode::GONE,
    )
    .await;
    assert_eq!(body["type"], "https://comptoir.dev/problems/export-expired");
    let admin = app.db.admin().await.expect("admin");
    let export: Uuid = id.parse().expect("uuid");
    wait_for(
        "the sweep to delete the archive",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                let row = admin
                    .query_one(
                        "SELECT status, archive IS NULL FROM export_jobs WHERE id = $1",
                        &[&export],
                    )
                    .await
                    .ok()?;
                (row.get::<_, String>(0) == "expired" && row.get::<_, bool>(1)).then_some(())
            }
        },
    )
    .await
    .expect("archive deleted");

    // The sweep counts the archives it deleted just after its UPDATE commits, so the counter
    // can trail the row the test saw by a moment: wait for it rather than read once.
    let needles = [
        "identity_gdpr_requests_total{kind=\"export\"}",
        "identity_gdpr_completed_total{kind=\"export\"}",
        "identity_gdpr_request_lag_seconds_bucket{kind=\"export\"",
        "identity_gdpr_pending{kind=\"export\"}",
        "identity_exports_expired_total",
    ];
    let found = wait_for("the GDPR metrics", Duration::from_secs(10), || async {
        let metrics = app.metrics().await;
        needles.iter().all(|n| metrics.contains(n)).then_some(())
    })
    .await;
    if let Err(timeout) = found {
        let metrics = app.metrics().await;
        let missing: Vec<_> = needles.iter().filter(|n| !metrics.contains(**n)).collect();
        panic!("{timeout}: {missing:?} not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_while_the_catalog_is_down_complete_once_it_starts() {
    // Identity alone: the catalog has never run in this namespace.
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com", "Ada Lovelace").await;
    let bob = app.customer("bob@example.com", "Bob Martin").await;
    let export = app.request_export(&ada.access).await;
    let erasure = app.erase(&bob.access).await;

    // Both requests have left identity (its outbox is empty), and nobody has answered.
    let admin = app.db.admin().await.expect("admin");
    wait_for(
        "identity's outbox to be published",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                let rows: i64 = admin
                    .query_one("SELECT count(*) FROM outbox", &[])
                    .await
                    .ok()?
                    .get(0);
                (rows == 0).then_some(())
            }
        },
    )
    .await
    .expect("published");
    let status = app.export_status(&ada.access, &export).await;
    assert_eq!(status["status"], "pending");
    assert_eq!(
        status["services"],
        json!([{"service": "catalog", "answered_at": null}])
    );
    assert!(status.get("download").is_none());
    let body = assert_problem(
        app.get_authed(&format!("/v1/me/exports/{export}/archive"), &ada.access)
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/export-not-ready"
    );
    let pending = app.erasure_status(&erasure).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["services"],
        json!([{"service": "catalog", "confirmed_at": null}])
    );
    // Asking again while pending returns the same export.
    assert_eq!(app.request_export(&ada.access).await, export);

    // The catalog starts: its durable subscriptions get both requests.
    let started = Instant::now();
    let _catalog = spawn_catalog(&app.namespace).await;
    let status = app.wait_export_ready(&ada.access, &export).await;
    assert!(status["services"][0]["answered_at"].is_string());
    let complete = app.wait_erasure_complete(&erasure).await;
    assert!(complete["services"][0]["confirmed_at"].is_string());
    eprintln!(
        "Both requests completed {:?} after the catalog was started",
        started.elapsed()
    );
    let archive: Value = app
        .get_authed(&format!("/v1/me/exports/{export}/archive"), &ada.access)
        .await
        .json()
        .await
        .expect("archive");
    assert_eq!(
        archive["slices"]["identity"]["data"]["profile"]["email"],
        "ada@example.com"
    );
    assert_eq!(archive["slices"]["catalog"]["data"]["records"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_shreds_the_subject_here_is_confirmed_by_the_catalog_and_replays_change_nothing() {
    let app = spawn_app().await;
    let catalog = spawn_catalog(&app.namespace).await;
    let email = "quintessa.marlowe@example.org";
    let name = "Quintessa Marlowe";
    let mut body = registration(email, name);
    body["phone"] = "+44 20 7946 0321".into();
    body["addresses"] = json!([{
        "line1": "9 Périwinkle Crescent",
        "line2": "Flat Zanzibar",
        "postal_code": "EC1V 9QQ",
        "city": "Londinium",
        "country": "GB"
    }]);
    assert_eq!(
        app.post_json("/v1/customers", &body).await.status(),
        StatusCode::ACCEPTED
    );
    let q = app.login(email, PASSWORD).await;
    let q_id = app.id(&q.access).await;
    let customer: Uuid = q_id.parse().expect("uuid");
    set_consent(&app, &q.access, "marketing", true).await;
    resolve_pii(&app, &q_id).await;
    let export = app.request_export(&q.access).await;
    app.wait_export_ready(&q.access, &export).await;
    // Someone else, who must be untouched.
    let bob = app.customer("bob@example.com", "Bob Martin").await;

    // Wrong password: the ordinary 401, nothing erased.
    let body = assert_problem(
        app.erase_response(&q.access, &json!({"password": "not my password at all"}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/invalid-credentials"
    );
    assert_eq!(app.me(&q.access).await["name"], name);

    let started = Instant::now();
    let status_path = app.erase(&q.access).await;
    let accepted_after = started.elapsed();
    let complete = app.wait_erasure_complete(&status_path).await;
    let confirmed_after = started.elapsed();
    eprintln!(
        "Erasure: 202 after {accepted_after:?}, confirmed by every service after {confirmed_after:?}"
    );
    assert_eq!(complete["services"][0]["service"], "catalog");
    assert!(complete["services"][0]["confirmed_at"].is_string());
    assert!(complete["completed_at"].is_string());
    let shown = complete.to_string();
    assert!(
        !shown.contains(&q_id) && !shown.to_lowercase().contains("quintessa"),
        "the status holds no personal data: {shown}"
    );

    // The blind index no longer finds the email (nor a lockout counter keyed by it).
    let admin = app.db.admin().await.expect("admin");
    let key = BlindIndexKey::from_file(&app.keys.blind_index).expect("blind index key");
    let index = comptoir_identity::vault::email_index(&key, &Email::parse(email).expect("email"));
    for table in ["customers", "login_failures"] {
        let found: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE email_index = $1"),
                &[&index.as_slice()],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(found, 0, "{table}");
    }
    // Identity no longer knows them: sign-in fails as for any unknown email, the token's
    // subject is gone, the export with it.
    let body = assert_problem(
        app.login_response(email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/invalid-credentials"
    );
    assert_problem(
        app.get_authed("/v1/me", &q.access).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for path in [
        format!("/v1/me/exports/{export}"),
        format!("/v1/me/exports/{export}/archive"),
    ] {
        assert_problem(
            app.get_authed(&path, &q.access).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert_problem(
        app.refresh_response(&q.refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let count = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(sql, &[&customer])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM subject_keys WHERE customer_id = $1").await,
        0,
        "the data key is gone"
    );
    for sql in [
        "SELECT count(*) FROM customers WHERE id = $1",
        "SELECT count(*) FROM sessions WHERE customer_id = $1",
        "SELECT count(*) FROM consents WHERE customer_id = $1",
        "SELECT count(*) FROM consent_history WHERE customer_id = $1",
        "SELECT count(*) FROM export_jobs WHERE customer_id = $1",
    ] {
        assert_eq!(count(sql).await, 0, "{sql}");
    }
    // What remains: the access log keeps the opaque id (no value of the subject), and the
    // pseudonymous erasure record says what was removed here.
    assert_eq!(
        count("SELECT count(*) FROM pii_access_log WHERE subject = $1").await,
        1
    );
    let record = admin
        .query_one(
            "SELECT erased, services FROM erasure_requests WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .expect("erasure record");
    let erased: Value = record.get(0);
    assert_eq!(erased["subject_keys"], 1);
    assert_eq!(erased["customers"], 1);
    assert_eq!(erased["export_jobs"], 1);
    assert_eq!(erased["consent_history"], 1);
    assert_eq!(record.get::<_, Vec<String>>(1), ["catalog"]);
    assert_nowhere_in(
        &app.db,
        &[
            email,
            "quintessa",
            "Marlowe",
            "79460321",
            "7946 0321",
            "Périwinkle",
            "Zanzibar",
            "EC1V 9QQ",
            "Londinium",
        ],
    )
    .await;
    assert_eq!(app.me(&bob.access).await["name"], "Bob Martin");

    // The same CustomerErased again (a redelivery, a republished outbox row): the catalog's
    // inbox recognises it, so no second confirmation is sent, and nothing changes here.
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let erased_topic = app.namespace.topic(CUSTOMER_ERASED_TOPIC);
    let confirmations_topic = app.namespace.topic(ERASURE_CONFIRMATIONS_TOPIC);
    let mut reader = comptoir_testkit::subscribe(&pulsar, &erased_topic, "test-replay").await;
    let original = tokio::time::timeout(Duration::from_secs(30), reader.try_next())
        .await
        .expect("the event within 30 s")
        .expect("stream ok")
        .expect("stream open");
    let key = original.metadata().partition_key.clone();
    let payload = original.payload.data.clone();
    let event: Value = serde_json::from_slice(&payload).expect("event json");
    assert_eq!(event["data"]["customer_id"], q_id.as_str());
    let mut producer = pulsar
        .producer()
        .with_topic(&erased_topic)
        .build()
        .await
        .expect("producer");
    producer
        .send_non_blocking(pulsar::producer::Message {
            payload,
            partition_key: key,
            ..Default::default()
        })
        .await
        .expect("send")
        .await
        .expect("ack");
    drained(&erased_topic, "catalog-gdpr-erasure").await;
    wait_for(
        "the catalog's outbox to empty",
        Duration::from_secs(30),
        || async { (catalog.outbox_rows().await == 0).then_some(()) },
    )
    .await
    .expect("catalog outbox empty");

    // And a confirmation sent twice (a new event for the same request): recorded once.
    let confirmation: CloudEvent<ErasureConfirmed> = CloudEvent::new(
        "/comptoir/catalog",
        q_id.clone(),
        ErasureConfirmed {
            request_id: complete["request_id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
            customer_id: customer,
            service: "catalog".to_owned(),
            summary: json!({"removed": 0}),
        },
    );
    let mut producer = pulsar
        .producer()
        .with_topic(&confirmations_topic)
        .build()
        .await
        .expect("producer");
    producer
        .send_non_blocking(serde_json::to_vec(&confirmation).expect("json"))
        .await
        .expect("send")
        .await
        .expect("ack");
    drained(&confirmations_topic, "identity-gdpr-erasure-catalog").await;
    let stats = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None)
        .topic_stats(&confirmations_topic)
        .await
        .expect("stats");
    assert_eq!(
        stats["msgInCounter"], 2,
        "one confirmation from the catalog, one sent by this test: {stats}"
    );
    assert_eq!(app.erasure_status(&status_path).await, complete);
    assert_eq!(
        count(
            "SELECT count(*) FROM erasure_confirmations c JOIN erasure_requests r
             ON r.id = c.request_id WHERE r.customer_id = $1"
        )
        .await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM erasure_requests WHERE customer_id = $1").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_to_the_gdpr_routes_gets_problems_never_server_errors() {
    let app = spawn_app_with(|s| {
        s.login.lockout_threshold = 3;
        s.login.per_email_per_minute = 100;
    })
    .await;
    let ada = app.customer("ada@example.com", "Ada Lovelace").await;
    let bob = app.customer("bob@example.com", "Bob Martin").await;

    // Erasure bodies: malformed, missing or mistyped password, unknown fields, no JSON.
    let response = app
        .authed(Method::DELETE, "/v1/me", &ada.access)
        .header("content-type", "application/json")
        .body("{\"password\": ")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    for body in [
        json!({}),
        json!({"password": 12}),
        json!({"password": PASSWORD, "force": true}),
    ] {
        assert_problem(
            app.erase_response(&ada.access, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let response = app
        .authed(Method::DELETE, "/v1/me", &ada.access)
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = app
        .http
        .delete(app.url("/v1/me"))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .post(app.url("/v1/me/exports"))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // Export ids: malformed, unknown, another customer's.
    let export = app.request_export(&ada.access).await;
    for path in [
        "/v1/me/exports/not-a-uuid".to_owned(),
        "/v1/me/exports/not-a-uuid/archive".to_owned(),
        format!("/v1/me/exports/{}", Uuid::new_v4()),
        format!("/v1/me/exports/{}/archive", Uuid::new_v4()),
        format!("/v1/me/exports/{export}"),
        format!("/v1/me/exports/{export}/archive"),
    ] {
        assert_problem(
            app.get_authed(&path, &bob.access).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    // Erasure request ids: malformed or unknown.
    for path in [
        "/v1/erasures/not-a-uuid".to_owned(),
        format!("/v1/erasures/{}", Uuid::new_v4()),
        format!("/v1/erasures/{export}"),
    ] {
        let response = app.http.get(app.url(&path)).send().await.expect("request");
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }

    // Wrong passwords count like failed sign-ins: after 3, the account is locked for both.
    for _ in 0..3 {
        assert_problem(
            app.erase_response(&ada.access, &json!({"password": "a wrong password here"}))
                .await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let locked = assert_problem(
        app.erase_response(&ada.access, &json!({"password": PASSWORD}))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(locked["type"], "https://comptoir.dev/problems/login-locked");
    assert_problem(
        app.login_response("ada@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    // Still there, still hers.
    assert_eq!(app.me(&ada.access).await["name"], "Ada Lovelace");
    assert_eq!(
        app.export_status(&ada.access, &export).await["status"],
        "pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_enforces_retention_on_what_identity_keeps() {
    let app = spawn_app().await;
    let admin = app.db.admin().await.expect("admin");
    let (old, recent) = (Uuid::new_v4(), Uuid::new_v4());
    for (subject, age) in [(old, "400 days"), (recent, "1 day")] {
        admin
            .execute(
                &format!(
                    "INSERT INTO pii_access_log (client, subject, purpose, fields, outcome, accessed_at)
                     VALUES ('notifications', $1, 'order-confirmation', '{{email}}', 'granted',
                             now() - interval '{age}')"
                ),
                &[&subject],
            )
            .await
            .expect("access log line");
        admin
            .execute(
                &format!(
                    "INSERT INTO erasure_requests (id, customer_id, services, erased, requested_at, completed_at)
                     VALUES ($1, $1, '{{catalog}}', '{{}}', now() - interval '{age}', now() - interval '{age}')"
                ),
                &[&subject],
            )
            .await
            .expect("erasure record");
    }
    admin
        .execute(
            "UPDATE erasure_requests SET requested_at = now() - interval '6 years',
                 completed_at = now() - interval '6 years' WHERE id = $1",
            &[&old],
        )
        .await
        .expect("age the record");
    // A failed-sign-in counter that no longer counts, and one that does.
    for (index, age) in [([1u8; 32], "2 hours"), ([2u8; 32], "1 minute")] {
        admin
            .execute(
                &format!(
                    "INSERT INTO login_failures (email_index, client_index, failures, last_failure_at)
                     VALUES ($1, $1, 2, now() - interval '{age}')"
                ),
                &[&index.as_slice()],
            )
            .await
            .expect("login failure");
    }
    let left = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(sql, &[])
                .await
                .ok()
                .map(|r| r.get::<_, i64>(0))
        }
    };
    wait_for(
        "the sweep to apply retention",
        Duration::from_secs(30),
        || async {
            let lines = left("SELECT count(*) FROM pii_access_log").await?;
            let records = left("SELECT count(*) FROM erasure_requests").await?;
            let failures = left("SELECT count(*) FROM login_failures").await?;
            (lines == 1 && records == 1 && failures == 1).then_some(())
        },
    )
    .await
    .expect("retention applied");
    let kept: Uuid = admin
        .query_one("SELECT subject FROM pii_access_log", &[])
        .await
        .expect("line")
        .get(0);
    assert_eq!(kept, recent);
    let kept: Uuid = admin
        .query_one("SELECT id FROM erasure_requests", &[])
        .await
        .expect("record")
        .get(0);
    assert_eq!(kept, recent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_lost_by_the_broker_is_published_again_until_confirmed() {
    let app = spawn_app_with(|s| {
        s.gdpr.resend_after_secs = 1;
        s.gdpr.sweep_interval_ms = 200;
    })
    .await;
    let bob = app.customer("bob@example.com", "Bob Martin").await;
    // The catalog has subscribed once, then is down.
    let catalog = spawn_catalog(&app.namespace).await;
    let erasures = app.namespace.topic(CUSTOMER_ERASED_TOPIC);
    drained(&erasures, "catalog-gdpr-erasure").await;
    catalog.stop().await;

    let erasure = app.erase(&bob.access).await;
    // The request reaches the catalog's subscription, and is lost there as a message past its
    // TTL would be: the backlog is skipped.
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    wait_for(
        "the request to be published",
        Duration::from_secs(30),
        || async {
            let stats = admin.topic_stats(&erasures).await.ok()?;
            (stats["subscriptions"]["catalog-gdpr-erasure"]["msgBacklog"].as_u64()? >= 1)
                .then_some(())
        },
    )
    .await
    .expect("published");
    let skip = format!(
        "{}admin/v2/{}/subscription/catalog-gdpr-erasure/skip_all",
        comptoir_testkit::pulsar_admin_url(),
        erasures.replace("persistent://", "persistent/")
    );
    let response = reqwest::Client::new()
        .post(&skip)
        .send()
        .await
        .expect("skip");
    assert!(
        response.status().is_success(),
        "skip_all: {}",
        response.status()
    );

    // The catalog comes back with nothing to read; identity publishes the request again.
    let _catalog = spawn_catalog(&app.namespace).await;
    let complete = app.wait_erasure_complete(&erasure).await;
    assert!(complete["services"][0]["confirmed_at"].is_string());
    let metrics = app.metrics().await;
    // The counter exists from the first sweep on; what matters is that it counted.
    let resent: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("identity_erasures_resent_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(resent >= 1.0, "the resend is counted: {resent}");
}
