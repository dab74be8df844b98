//! Identity's API driven like a client would: registration, sign-in, sessions, profile,
//! consents, internal PII resolution, key rotation, and what hostile input gets.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comptoir_auth::{Claims, Jwks, Verifier};
use comptoir_events::CloudEvent;
use comptoir_events::contracts::identity::{CONSENT_CHANGES_TOPIC, ConsentChanged};
use comptoir_testkit::wait_for;
use futures::TryStreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    NOTIFICATIONS_TOKEN, PASSWORD, assert_problem, registration, spawn_app, spawn_app_with, tokens,
};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_sign_in_profile_refresh_reuse_and_logout() {
    let app = spawn_app().await;
    let response = app.register("Ada@Example.com", "Ada Lovelace").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // The email is normalised: any case signs in.
    let first = app.login("ada@example.COM", PASSWORD).await;
    let me = app.me(&first.access).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["name"], "Ada Lovelace");
    assert_eq!(me["phone"], "+33698765432");
    assert_eq!(me["addresses"][0]["city"], "Paris");
    let id = me["id"].as_str().expect("id").to_owned();

    let patched: Value = app
        .authed(Method::PATCH, "/v1/me", &first.access)
        .json(&json!({"name": "Augusta Ada King", "phone": null}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(patched["name"], "Augusta Ada King");
    assert!(patched["phone"].is_null());
    assert_eq!(app.me(&first.access).await["name"], "Augusta Ada King");

    // Refresh rotates: a new pair, for the same customer.
    let response = app.refresh_response(&first.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = tokens(response).await;
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(app.me(&second.access).await["id"], id.as_str());

    // The first refresh token again: reuse. Refused, and the whole session with it.
    let body = assert_problem(
        app.refresh_response(&first.refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/invalid-refresh-token"
    );
    assert_problem(
        app.refresh_response(&second.refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let admin = app.db.admin().await.expect("admin");
    let reason: Option<String> = admin
        .query_one("SELECT revoked_reason FROM sessions", &[])
        .await
        .expect("session")
        .get(0);
    assert_eq!(reason.as_deref(), Some("reuse-detected"));

    // A new session; logout revokes it, so its refresh token stops working.
    let third = app.login("ada@example.com", PASSWORD).await;
    let response = app
        .authed(Method::DELETE, "/v1/sessions/current", &third.access)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.refresh_response(&third.refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Refresh tokens are stored hashed only.
    let stored: Vec<Vec<u8>> = admin
        .query("SELECT token_hash FROM refresh_tokens", &[])
        .await
        .expect("tokens")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 3);
    for token in [&first.refresh, &second.refresh, &third.refresh] {
        let raw = URL_SAFE_NO_PAD.decode(token).expect("b64");
        assert!(!stored.iter().any(|h| h == &raw || h == token.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_taken_email_answers_exactly_like_a_fresh_one() {
    let app = spawn_app().await;
    let fresh = app.register("grace@example.com", "Grace Hopper").await;
    let (fresh_status, fresh_body) = (fresh.status(), fresh.text().await.expect("body"));
    let mut body = registration("GRACE@example.com", "Mallory");
    body["password"] = "another fine passphrase here".into();
    let taken = app.post_json("/v1/customers", &body).await;
    assert_eq!(taken.status(), fresh_status);
    assert_eq!(taken.text().await.expect("body"), fresh_body);
    // The account is untouched: the first password works, the second does not.
    let tokens = app.login("grace@example.com", PASSWORD).await;
    assert_eq!(app.me(&tokens.access).await["name"], "Grace Hopper");
    assert_problem(
        app.login_response("grace@example.com", "another fine passphrase here")
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_are_per_purpose_with_an_append_only_history() {
    let app = spawn_app().await;
    let t = app.customer("ada@example.com", "Ada").await;
    let consents: Value = app
        .get_authed("/v1/me/consents", &t.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(consents.as_array().map(Vec::len), Some(2));
    assert!(
        consents
            .as_array()
            .expect("array")
            .iter()
            .all(|c| c["granted"] == false)
    );

    for (purpose, granted) in [
        ("marketing", true),
        ("analytics", true),
        ("marketing", false),
        ("marketing", false), // no change: not a new history entry
    ] {
        let response = app
            .authed(
                Method::PUT,
                &format!("/v1/me/consents/{purpose}"),
                &t.access,
            )
            .json(&json!({ "granted": granted }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["granted"], granted);
    }
    let consents: Value = app
        .get_authed("/v1/me/consents", &t.access)
        .await
        .json()
        .await
        .expect("json");
    let granted = |p: &str| {
        consents
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["purpose"] == p)
            .map(|c| c["granted"].clone())
    };
    assert_eq!(granted("marketing"), Some(Value::Bool(false)));
    assert_eq!(granted("analytics"), Some(Value::Bool(true)));

    let history: Vec<Value> = app
        .get_authed("/v1/me/consents/history", &t.access)
        .await
        .json()
        .await
        .expect("json");
    let changes: Vec<(String, bool)> = history
        .iter()
        .map(|h| {
            (
                h["purpose"].as_str().expect("purpose").to_owned(),
                h["granted"].as_bool().expect("granted"),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("marketing".to_owned(), true),
            ("analytics".to_owned(), true),
            ("marketing".to_owned(), false)
        ]
    );
    // Each change, and only a change, went out as a `ConsentChanged` keyed by the customer.
    let pulsar = pulsar::Pulsar::builder(
        comptoir_testkit::pulsar_url().as_str(),
        pulsar::TokioExecutor,
    )
    .build()
    .await
    .expect("connect");
    let topic = app.namespace.topic(CONSENT_CHANGES_TOPIC);
    let customer: Uuid = app.me(&t.access).await["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the customer's id");
    let mut reader = comptoir_testkit::subscribe(&pulsar, &topic, "test-consents").await;
    let mut published = Vec::new();
    while published.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.try_next())
            .await
            .expect("three consent events within 30 s")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(
            message.metadata().partition_key.as_deref(),
            Some(customer.to_string().as_str())
        );
        let event: CloudEvent<ConsentChanged> =
            serde_json::from_slice(&message.payload.data).expect("a ConsentChanged");
        assert_eq!(event.data.customer_id, customer);
        published.push((event.data.purpose, event.data.granted));
    }
    assert_eq!(published, changes);
    // The unchanged consent published nothing: the next event is the next change's.
    let response = app
        .authed(Method::PUT, "/v1/me/consents/analytics", &t.access)
        .json(&json!({ "granted": false }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let message = tokio::time::timeout(Duration::from_secs(30), reader.try_next())
        .await
        .expect("the fourth event within 30 s")
        .expect("stream ok")
        .expect("stream open");
    let event: CloudEvent<ConsentChanged> =
        serde_json::from_slice(&message.payload.data).expect("a ConsentChanged");
    assert_eq!(
        (event.data.purpose.as_str(), event.data.granted),
        ("analytics", false)
    );
    // Append-only in the database too.
    let admin = app.db.admin().await.expect("admin");
    assert!(
        admin
            .execute("UPDATE consent_history SET granted = true", &[])
            .await
            .is_err()
    );

    let response = app
        .authed(Method::PUT, "/v1/me/consents/telepathy", &t.access)
        .json(&json!({ "granted": true }))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reaches_only_their_own_data() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com", "Ada Lovelace").await;
    let bob = app.customer("bob@example.com", "Bob Martin").await;
    let ada_id = app.me(&ada.access).await["id"].clone();
    let bob_me = app.me(&bob.access).await;
    assert_eq!(bob_me["name"], "Bob Martin");
    assert_ne!(bob_me["id"], ada_id);

    // Bob changes "his" data: Ada's is untouched.
    let response = app
        .authed(Method::PATCH, "/v1/me", &bob.access)
        .json(&json!({"name": "Not Ada"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.me(&ada.access).await["name"], "Ada Lovelace");

    // No public route takes a customer id; the internal one wants a service credential.
    let ada_id = ada_id.as_str().expect("id");
    for path in [
        format!("/v1/customers/{ada_id}"),
        format!("/v1/me/{ada_id}"),
    ] {
        let response = app.get_authed(&path, &bob.access).await;
        let status = response.status();
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {status}"
        );
        assert!(!response.text().await.expect("body").contains("Lovelace"));
    }
    let response = app
        .internal_pii(
            &bob.access,
            ada_id,
            &json!({"purpose": "order-confirmation", "fields": ["name"]}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;

    // A token for a subject that does not exist, even with identity's own key: 404.
    let signer = app.keys.signer();
    let ghost = Claims::new(
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
        Uuid::new_v4(),
        "customer",
        Duration::from_secs(60),
        None,
    );
    let response = app
        .get_authed("/v1/me", &signer.issue(&ghost).expect("sign"))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_problems_never_server_errors() {
    let app = spawn_app().await;
    let t = app.customer("ada@example.com", "Ada").await;

    // Bodies.
    let response = app
        .http
        .post(app.url("/v1/customers"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let huge = json!({"email": "x@example.com", "password": "x".repeat(400_000), "name": "x"});
    assert_problem(
        app.post_json("/v1/customers", &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let response = app
        .http
        .post(app.url("/v1/sessions"))
        .body("email=x")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let mut unknown = registration("eve@example.com", "Eve");
    unknown["is_admin"] = true.into();
    assert_problem(
        app.post_json("/v1/customers", &unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut invalid = registration("not-an-email", "Eve");
    invalid["password"] = "password1234".into();
    let body = assert_problem(
        app.post_json("/v1/customers", &invalid).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"password"),
        "{body}"
    );
    assert_problem(
        app.post_json(
            "/v1/sessions/refresh",
            &json!({"refresh_token": "x".repeat(10_000)}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.login_response("not an email", "whatever").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Tokens.
    let signer = app.keys.signer();
    let subject: Uuid = app.me(&t.access).await["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let claims = |ttl: u64| {
        Claims::new(
            comptoir_auth::DEFAULT_ISSUER,
            comptoir_auth::DEFAULT_AUDIENCE,
            subject,
            "customer",
            Duration::from_secs(ttl),
            None,
        )
    };
    let mut expired = claims(60);
    expired.iat -= 7200;
    expired.exp -= 3600;
    let expired = signer.issue(&expired).expect("sign");
    let forged = comptoir_auth::Signer::generate("test-1")
        .expect("key")
        .issue(&claims(60))
        .expect("sign");
    let wrong_kid = comptoir_auth::Signer::generate("test-2")
        .expect("key")
        .issue(&claims(60))
        .expect("sign");
    let real = signer.issue(&claims(60)).expect("sign");
    let payload = real.split('.').nth(1).expect("payload");
    let alg_none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"test-1","typ":"JWT"}"#)
    );
    let mut tampered_claims = claims(60);
    tampered_claims.sub = Uuid::new_v4();
    let tampered = format!(
        "{}.{}.{}",
        real.split('.').next().expect("header"),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).expect("json")),
        real.split('.').nth(2).expect("signature")
    );
    for (what, token) in [
        ("expired", expired.as_str()),
        ("forged", &forged),
        ("wrong kid", &wrong_kid),
        ("alg none", &alg_none),
        ("tampered", &tampered),
        ("garbage", "a.b.c"),
    ] {
        for (method, path) in [
            (Method::GET, "/v1/me"),
            (Method::GET, "/v1/me/consents"),
            (Method::DELETE, "/v1/sessions/current"),
        ] {
            let response = app
                .authed(method, path, token)
                .send()
                .await
                .expect("request");
            let body = assert_problem(response, StatusCode::UNAUTHORIZED).await;
            assert!(!body.to_string().contains("Ada"), "{what}: {body}");
        }
    }
    assert_problem(app.get_authed("/v1/me", "").await, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert!(response.headers().contains_key("www-authenticate"));
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    // The real key still works, after all that.
    assert_eq!(app.me(&real).await["name"], "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_looks_the_same_for_known_and_unknown_emails() {
    let app = spawn_app_with(|s| {
        s.login.lockout_threshold = 3;
        s.login.per_email_per_minute = 100;
    })
    .await;
    assert_eq!(
        app.register("ada@example.com", "Ada").await.status(),
        StatusCode::ACCEPTED
    );
    let mut failures = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let response = app.login_response(email, "wrong password attempt").await;
            failures.push(assert_problem(response, StatusCode::UNAUTHORIZED).await);
        }
    }
    assert!(failures.windows(2).all(|w| w[0] == w[1]), "{failures:?}");
    assert_eq!(
        failures[0]["type"],
        "https://comptoir.dev/problems/invalid-credentials"
    );

    // Locked: even the right password gets the lockout, the same as for nobody@.
    let known = app.login_response("ada@example.com", PASSWORD).await;
    assert!(known.headers().contains_key("retry-after"));
    let known = assert_problem(known, StatusCode::TOO_MANY_REQUESTS).await;
    let unknown = assert_problem(
        app.login_response("nobody@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(known, unknown);
    assert_eq!(known["type"], "https://comptoir.dev/problems/login-locked");

    // The lock is in the database: it outlives the process.
    let app = app.restart_with(|s| s.login.lockout_threshold = 3).await;
    assert_problem(
        app.login_response("ada@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    // Another email is not affected.
    assert_eq!(
        app.login_response("bob@example.com", "wrong password attempt")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A sign-in as the gateway forwards it for the client at `client`.
async fn login_from(
    app: &support::TestApp,
    client: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    app.http
        .post(app.url("/v1/sessions"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_guessing_passwords_locks_itself_out_not_the_owner() {
    // Behind the gateway (loopback is trusted here): an attacker at one address must not be
    // able to lock the owner, at another, out of sign-in or of their erasure (Art. 17).
    let app = spawn_app_with(|s| {
        s.login.lockout_threshold = 3;
        s.login.per_email_per_minute = 100;
        s.login.trusted_proxies =
            comptoir_platform::client::TrustedProxies::parse(&["127.0.0.0/8"]).expect("cidr");
    })
    .await;
    let (attacker, owner) = ("198.51.100.66", "203.0.113.7");
    assert_eq!(
        app.register("ada@example.com", "Ada").await.status(),
        StatusCode::ACCEPTED
    );
    for _ in 0..3 {
        let response =
            login_from(&app, attacker, "ada@example.com", "wrong password attempt").await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // The attacker is locked out of Ada, even with the right password, as for nobody@.
    let locked = assert_problem(
        login_from(&app, attacker, "ada@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(locked["type"], "https://comptoir.dev/problems/login-locked");

    // Ada, from her own address, signs in and can still erase herself.
    let response = login_from(&app, owner, "ada@example.com", PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the owner is not locked out"
    );
    let tokens = support::tokens(response).await;
    // The counters hold no address, only keyed hashes.
    let admin = app.db.admin().await.expect("admin");
    let dump: Vec<String> = admin
        .query(
            "SELECT encode(client_index, 'escape') FROM login_failures",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!dump.is_empty());
    assert!(dump.iter().all(|row| !row.contains(attacker)), "{dump:?}");

    let erasure = app
        .authed(Method::DELETE, "/v1/me", &tokens.access)
        .header("x-forwarded-for", owner)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(erasure.status(), StatusCode::ACCEPTED);
}

/// The one customer's stored password hash (a PHC string: it names its parameters).
async fn stored_hash(app: &support::TestApp) -> String {
    let admin = app.db.admin().await.expect("admin");
    let row = admin
        .query_one("SELECT password_hash FROM customers", &[])
        .await
        .expect("query");
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_rehashes_a_password_stored_with_older_parameters() {
    // After a raise of the argon2 parameters, an old account's hash is replaced at its next
    // sign-in: otherwise its sign-ins would cost less than an unknown email's dummy check
    // (made with the current parameters), and the difference would tell customers apart.
    let app = spawn_app().await;
    app.customer("ada@example.com", "Ada").await;
    assert!(
        stored_hash(&app).await.contains("m=256,t=1,p=1"),
        "{}",
        stored_hash(&app).await
    );
    let app = app
        .restart_with(|s| {
            s.argon2.memory_kib = 512;
            s.argon2.iterations = 2;
        })
        .await;
    app.login("ada@example.com", PASSWORD).await;
    assert!(
        stored_hash(&app).await.contains("m=512,t=2,p=1"),
        "{}",
        stored_hash(&app).await
    );
    // And the new hash still signs in.
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_rate_limited_per_client_address() {
    let app = spawn_app_with(|s| s.login.per_ip_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(
            app.login_response("nobody@example.com", "whatever password")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let response = app
        .login_response("nobody@example.com", "whatever password")
        .await;
    assert!(response.headers().contains_key("retry-after"));
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "https://comptoir.dev/problems/rate-limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_route_resolves_pii_for_declared_purposes_and_audits_every_request() {
    let app = spawn_app().await;
    let t = app.customer("ada@example.com", "Ada Lovelace").await;
    let id = app.me(&t.access).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let response = app
        .internal_pii(
            NOTIFICATIONS_TOKEN,
            &id,
            &json!({"purpose": "order-confirmation", "fields": ["email", "name"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({"email": "ada@example.com", "name": "Ada Lovelace"})
    );

    let undeclared = app
        .internal_pii(
            NOTIFICATIONS_TOKEN,
            &id,
            &json!({"purpose": "marketing-blast", "fields": ["email"]}),
        )
        .await;
    let body = assert_problem(undeclared, StatusCode::FORBIDDEN).await;
    assert!(!body.to_string().contains("ada@"));
    // A declared purpose, but a field it does not allow (data minimisation): the order
    // confirmation needs an email and a name, never the phone.
    let body = assert_problem(
        app.internal_pii(
            NOTIFICATIONS_TOKEN,
            &id,
            &json!({"purpose": "order-confirmation", "fields": ["email", "phone"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(!body.to_string().contains("ada@"), "{body}");
    // An unauthenticated caller, trying to write its own text against Ada.
    assert_problem(
        app.internal_pii(
            "not-a-client-token-at-all",
            &id,
            &json!({"purpose": "<script>alert('pwned')</script>", "fields": ["email"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(
        app.internal_pii(
            NOTIFICATIONS_TOKEN,
            &id,
            &json!({"purpose": "shipping-update", "fields": ["password_hash"]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let ghost = Uuid::new_v4().to_string();
    assert_problem(
        app.internal_pii(
            NOTIFICATIONS_TOKEN,
            &ghost,
            &json!({"purpose": "shipping-update", "fields": ["addresses"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // The subject's record holds the reads, not the refusals: nothing a refused caller wrote.
    let log = app.pii_log().await;
    let expected = [
        (
            "notifications",
            &id,
            "order-confirmation",
            vec!["email", "name"],
            "granted",
        ),
        (
            "notifications",
            &ghost,
            "shipping-update",
            vec!["addresses"],
            "not-found",
        ),
    ];
    assert_eq!(log.len(), expected.len(), "{log:?}");
    for (row, (client, subject, purpose, fields, outcome)) in log.iter().zip(expected) {
        assert_eq!(
            (
                row.0.as_str(),
                &row.1,
                row.2.as_str(),
                row.3.clone(),
                row.4.as_str()
            ),
            (
                client,
                subject,
                purpose,
                fields.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                outcome
            )
        );
    }
    // The refusals are counted instead.
    let metrics = app.metrics().await;
    for reason in ["client", "purpose", "fields", "fields-not-allowed"] {
        let needle = format!("identity_pii_refusals_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&needle), "{needle} not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotation_keeps_customers_readable_and_moves_their_keys() {
    let app = spawn_app().await;
    app.customer("ada@example.com", "Ada Lovelace").await;
    app.customer("bob@example.com", "Bob Martin").await;
    let admin = app.db.admin().await.expect("admin");
    let under = |kek: &'static str| {
        let admin = &admin;
        async move {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM subject_keys WHERE kek_id = $1",
                    &[&kek],
                )
                .await
                .expect("count")
                .get(0);
            n
        }
    };
    assert_eq!(under("kek-a").await, 2);

    // Rotate: B active, A retired. The rewrap job moves every key to B.
    let keys = app.keys.clone();
    let app = app
        .restart_with(|s| {
            s.keys.active_kek = Some(comptoir_identity::KekFile {
                id: "kek-b".to_owned(),
                file: keys.kek_b.clone(),
            });
            s.keys.retired_keks = vec![comptoir_identity::KekFile {
                id: "kek-a".to_owned(),
                file: keys.kek_a.clone(),
            }];
            s.keys.rewrap_batch = 1;
        })
        .await;
    wait_for("every key under KEK B", Duration::from_secs(30), || {
        let under = &under;
        async move { (under("kek-b").await == 2).then_some(()) }
    })
    .await
    .expect("rewrapped");
    let t = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(app.me(&t.access).await["name"], "Ada Lovelace");
    // New customers get B directly.
    app.customer("carol@example.com", "Carol Shaw").await;
    assert_eq!(under("kek-b").await, 3);

    // A can now go: with B alone everyone is still readable.
    let keys = app.keys.clone();
    let app = app
        .restart_with(|s| {
            s.keys.active_kek = Some(comptoir_identity::KekFile {
                id: "kek-b".to_owned(),
                file: keys.kek_b.clone(),
            });
        })
        .await;
    for (email, name) in [
        ("ada@example.com", "Ada Lovelace"),
        ("bob@example.com", "Bob Martin"),
        ("carol@example.com", "Carol Shaw"),
    ] {
        let t = app.login(email, PASSWORD).await;
        assert_eq!(app.me(&t.access).await["name"], name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_plaintext_personal_data() {
    let app = spawn_app().await;
    let email = "zephyrine.quill@example.org";
    let name = "Zéphyrine Quillfeather";
    let t = app.customer(email, name).await;
    app.authed(Method::PUT, "/v1/me/consents/marketing", &t.access)
        .json(&json!({"granted": true}))
        .send()
        .await
        .expect("request");
    let id = app.me(&t.access).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.internal_pii(
        NOTIFICATIONS_TOKEN,
        &id,
        &json!({"purpose": "order-confirmation", "fields": ["email", "name", "phone", "addresses"]}),
    )
    .await;
    let needles = [
        email,
        "zephyrine",
        "Zéphyrine",
        "Quillfeather",
        "quillfeather",
        "33698765432",
        "98 76 54 32",
        "Zéphyrs Improbables",
        "Improbables",
    ];

    // Every text-like and bytea column of every table, and the dump an operator would take.
    support::assert_nowhere_in(&app.db, &needles).await;
}

/// In a cluster identity serves HTTPS too (`http.tls`, ADR 0023): the JWKS reaches a verifier
/// that trusts the platform CA, the same as over plain HTTP, and one trusting another CA gets
/// nothing from the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_served_over_https_to_verifiers_trusting_the_platform_ca_only() {
    let ca = comptoir_testkit::tls::TestCa::new();
    let pki = tempfile::tempdir().expect("tempdir");
    let files = ca.write(pki.path(), "identity", &["localhost"]);
    let port = comptoir_testkit::free_port();
    let app = support::spawn_app_with(|settings| {
        settings.http.tls = Some(comptoir_platform::tls::TlsListenerSettings {
            listen: ([127, 0, 0, 1], port).into(),
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
            reload_interval_ms: 30_000,
        });
    })
    .await;
    let t = app.customer("ada@example.com", "Ada").await;
    let cache = |ca_file| {
        comptoir_auth::JwksCache::new(comptoir_auth::JwksCacheSettings {
            url: format!("https://localhost:{port}/.well-known/jwks.json"),
            ca_file,
            ..comptoir_auth::JwksCacheSettings::default()
        })
        .expect("cache")
    };

    let claims = cache(Some(files.ca_file.clone()))
        .verify(&t.access)
        .await
        .expect("the token verifies against the JWKS fetched over TLS");
    assert_eq!(
        app.me(&t.access).await["id"],
        claims.sub.to_string().as_str()
    );

    let stranger = comptoir_testkit::tls::TestCa::new();
    let stranger_ca = pki.path().join("stranger-ca.pem");
    std::fs::write(&stranger_ca, stranger.pem()).expect("write");
    assert!(
        cache(Some(stranger_ca)).verify(&t.access).await.is_err(),
        "a verifier trusting another CA accepted identity's certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_verifies_issued_tokens() {
    let app = spawn_app().await;
    let t = app.customer("ada@example.com", "Ada").await;
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: Jwks = response.json().await.expect("jwks");
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kid.as_deref(), Some("test-1"));
    let verifier = Verifier::new(
        &jwks,
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
    );
    let claims = verifier.verify(&t.access).expect("verifies");
    assert_eq!(claims.scope, "customer");
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(
        app.me(&t.access).await["id"],
        claims.sub.to_string().as_str()
    );
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/v1/sessions"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_before_a_key_rotation_verify_until_the_old_key_is_withdrawn() {
    let app = spawn_app().await;
    let before = app.customer("grace@example.com", "Grace Hopper").await;
    let old_key = app.keys.signing.clone();
    let new_key = app.keys.dir.join("signing-2.pem");
    support::write_secret(&new_key, comptoir_auth::Signer::generate_pem().as_bytes());

    // Rotate: a new active key, the old one retired but still published, from its public
    // half alone: the old private key is destroyed at rotation.
    let old_public = app.keys.dir.join("signing-1.pub.pem");
    let old_signer = comptoir_auth::Signer::from_pem_file(&old_key, "test-1").expect("old key");
    std::fs::write(&old_public, old_signer.public_key_pem()).expect("write public key");
    std::fs::remove_file(&old_key).expect("destroy the old private key");
    let app = app
        .restart_with({
            let (old_public, new_key) = (old_public.clone(), new_key.clone());
            move |s| {
                s.tokens.signing_key_file = Some(new_key);
                s.tokens.signing_kid = "test-2".to_owned();
                s.tokens.retired_signing_keys = vec![comptoir_identity::RetiredSigningKey {
                    kid: "test-1".to_owned(),
                    public_key_file: old_public,
                }];
            }
        })
        .await;
    let jwks: serde_json::Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        ["test-2", "test-1"],
        "the active key first, then the retired one"
    );
    let response = app
        .authed(reqwest::Method::GET, "/v1/me", &before.access)
        .send()
        .await
        .expect("me");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a token from before the rotation"
    );
    let after = app.login("grace@example.com", PASSWORD).await;
    let header = after.access.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64")).expect("json");
    assert_eq!(header["kid"], "test-2", "new tokens use the new key");

    // The old key withdrawn: its tokens no longer verify.
    let app = app
        .restart_with(move |s| {
            s.tokens.signing_key_file = Some(new_key);
            s.tokens.signing_kid = "test-2".to_owned();
        })
        .await;
    let response = app
        .authed(reqwest::Method::GET, "/v1/me", &before.access)
        .send()
        .await
        .expect("me");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .authed(reqwest::Method::GET, "/v1/me", &after.access)
        .send()
        .await
        .expect("me");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let app = spawn_app_with(|s| s.tokens.session_max_age_secs = 3_600).await;
    let tokens = app.customer("ada@example.com", "Ada").await;
    let admin = app.db.admin().await.expect("admin");
    // A rotation never issues a token that outlives the session's end.
    let rotated = support::tokens(app.refresh_response(&tokens.refresh).await).await;
    let overshoot: bool = admin
        .query_one(
            "SELECT bool_or(t.expires_at > s.created_at + interval '1 hour')
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(!overshoot, "a refresh token outlives its session");
    // Past the absolute lifetime the session is over, even with a fresh refresh token.
    admin
        .execute(
            "UPDATE sessions SET created_at = now() - interval '61 minutes'",
            &[],
        )
        .await
        .expect("age the session");
    admin
        .execute(
            "UPDATE refresh_tokens SET expires_at = now() + interval '29 days' WHERE used_at IS NULL",
            &[],
        )
        .await
        .expect("a refresh token that has not expired by itself");
    assert_problem(
        app.refresh_response(&rotated.refresh).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
