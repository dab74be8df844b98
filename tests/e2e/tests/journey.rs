//! A customer's whole life through the gateway, on the real services, PostgreSQL and Pulsar:
//! register → sign in → refresh → consent → export (every service's slice) → erase → signed
//! out for good, with the customer's personal data searched for in every service database
//! (`pg_dump`), every message the broker retained and every log line: nothing outside
//! identity's encrypted columns before the erasure, nothing anywhere after it.

use std::time::Duration;

use comptoir_e2e::Platform;
use comptoir_testkit::{assert_problem, wait_for};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

struct Customer {
    email: String,
    name: &'static str,
    phone: &'static str,
    street: &'static str,
    city: &'static str,
}

impl Customer {
    fn new(
        name: &'static str,
        phone: &'static str,
        street: &'static str,
        city: &'static str,
    ) -> Self {
        Self {
            email: format!(
                "{}.{}@example.org",
                name.split(' ').next().unwrap_or("x").to_lowercase(),
                uuid::Uuid::new_v4().simple()
            ),
            name,
            phone,
            street,
            city,
        }
    }

    fn registration(&self) -> Value {
        json!({
            "email": self.email,
            "password": PASSWORD,
            "name": self.name,
            "phone": self.phone,
            "addresses": [{ "line1": self.street, "postal_code": "69001", "city": self.city, "country": "FR" }]
        })
    }

    /// The strings that identify this customer; the phone as it was typed and as stored.
    fn pii(&self) -> Vec<String> {
        let digits: String = self.phone.chars().filter(|c| c.is_ascii_digit()).collect();
        vec![
            self.email.clone(),
            self.name.to_owned(),
            digits,
            self.street.to_owned(),
            self.city.to_owned(),
        ]
    }
}

struct Gateway {
    http: Client,
    platform_url: String,
}

impl Gateway {
    fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.platform_url));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Response {
        self.request(method, path, token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GET `path` as JSON.
    async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.request(Method::GET, path, token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    async fn register(&self, customer: &Customer) {
        let response = self
            .json(
                Method::POST,
                "/v1/customers",
                None,
                &customer.registration(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "registration");
    }

    /// Erases the signed-in customer (re-authenticating); returns the status path.
    async fn erase(&self, access: &str) -> String {
        let response = self
            .json(
                Method::DELETE,
                "/v1/me",
                Some(access),
                &json!({ "password": PASSWORD }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "erasure");
        let accepted: Value = response.json().await.expect("json");
        accepted["status_url"]
            .as_str()
            .expect("status url")
            .to_owned()
    }

    /// Polls `path` until its `status` is `wanted`; returns the last body.
    async fn wait_status(&self, path: &str, token: Option<&str>, wanted: &str) -> Value {
        wait_for(
            &format!("{path} to be {wanted}"),
            Duration::from_secs(60),
            || {
                let request = self.request(Method::GET, path, token);
                async move {
                    let status: Value = request.send().await.ok()?.json().await.ok()?;
                    (status["status"] == wanted).then_some(status)
                }
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error:#}"))
    }

    async fn sign_in(&self, customer: &Customer) -> (String, String) {
        let response = self
            .json(
                Method::POST,
                "/v1/sessions",
                None,
                &json!({ "email": customer.email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "sign-in");
        let body: Value = response.json().await.expect("json");
        (
            body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        )
    }
}

/// Every place PII must not be: every service database, the broker, the logs.
async fn leaks(platform: &Platform, needles: &[String]) -> Vec<String> {
    platform.leaks(needles).await.expect("scan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_registers_exports_and_is_erased_without_a_trace() {
    let mut platform = Platform::start().await.expect("platform");
    let client = Gateway {
        http: Client::new(),
        platform_url: platform.gateway.clone(),
    };
    let alice = Customer::new(
        "Albertine Quesnel-Varangue",
        "+33 6 12 34 56 78",
        "17 impasse des Tilleuls-Argentés",
        "Villeurbanne-Sud",
    );
    let bob = Customer::new(
        "Bartholomé Ostrowski",
        "+33 6 98 76 54 32",
        "4 allée Pernollet",
        "Caluire-et-Cuire",
    );

    // Register and sign in, through the gateway.
    for customer in [&alice, &bob] {
        client.register(customer).await;
    }
    let (_, refresh) = client.sign_in(&alice).await;
    let (bob_access, _) = client.sign_in(&bob).await;

    // Refresh rotates; the used refresh token replayed is refused (and revokes the session).
    let response = client
        .json(
            Method::POST,
            "/v1/sessions/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.expect("json");
    let access = rotated["access_token"].as_str().expect("access").to_owned();
    let replay = client
        .json(
            Method::POST,
            "/v1/sessions/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_problem(replay, StatusCode::UNAUTHORIZED).await;
    // Reuse revoked the family: sign in again for the rest of the journey.
    let (access, _) = if client
        .request(Method::GET, "/v1/me", Some(&access))
        .send()
        .await
        .expect("me")
        .status()
        == StatusCode::OK
    {
        (access, String::new())
    } else {
        client.sign_in(&alice).await
    };

    // The profile is the customer's own.
    let me = client.get_json("/v1/me", Some(&access)).await;
    assert_eq!(me["email"], alice.email.as_str());
    assert_eq!(me["name"], alice.name);
    let alice_id = me["id"].as_str().expect("customer id").to_owned();

    // Consent change.
    let response = client
        .json(
            Method::PUT,
            "/v1/me/consents/marketing",
            Some(&access),
            &json!({ "granted": true }),
        )
        .await;
    assert!(
        response.status().is_success(),
        "consent: {}",
        response.status()
    );

    // Analytics: once the analytics consent has reached it (identity's consent-changes),
    // alice's clicks are accepted, under a pseudonym (checked by the scan below).
    let response = client
        .json(
            Method::PUT,
            "/v1/me/consents/analytics",
            Some(&access),
            &json!({ "granted": true }),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let clicks = json!({ "events": [{
        "type": "page-view",
        "at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("time"),
        "page": "account",
    }]});
    wait_for(
        "alice's clicks accepted",
        Duration::from_secs(30),
        || async {
            let response = client
                .json(Method::POST, "/v1/events", Some(&access), &clicks)
                .await;
            let body: Value = response.json().await.ok()?;
            (body["accepted"] == 1).then_some(())
        },
    )
    .await
    .expect("clicks accepted with the consent");

    // Export: identity's slice and the catalog's, assembled into one archive.
    let response = client
        .json(Method::POST, "/v1/me/exports", Some(&access), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let status_path = accepted["status_url"]
        .as_str()
        .expect("status url")
        .to_owned();
    let status = client
        .wait_status(&status_path, Some(&access), "ready")
        .await;
    let download = status["download"]
        .as_str()
        .expect("download link")
        .to_owned();
    let archive = client.get_json(&download, Some(&access)).await;
    let text = archive.to_string();
    for needle in [alice.email.as_str(), alice.name, alice.street] {
        assert!(text.contains(needle), "the archive holds {needle:?}");
    }
    assert!(
        text.contains("catalog"),
        "the archive holds the catalog's slice: {text}"
    );
    assert!(
        text.contains("no personal data"),
        "the catalog says it holds nothing personal"
    );
    // Another customer cannot see it.
    let response = client
        .request(Method::GET, &status_path, Some(&bob_access))
        .send()
        .await
        .expect("bob");
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = client
        .request(Method::GET, &download, Some(&bob_access))
        .send()
        .await
        .expect("bob");
    assert_problem(response, StatusCode::NOT_FOUND).await;

    // Before erasure: the personal data is nowhere in plaintext, identity's database included
    // (encrypted there), nor in any event or log line. The scan is not vacuous: the customer
    // id (not personal data by itself) is found in each kind of place.
    let found = leaks(&platform, std::slice::from_ref(&alice_id)).await;
    for place in ["identity database", "service logs", "a message on"] {
        assert!(
            found.iter().any(|f| f.contains(place)),
            "the scan reaches the {place}: {found:?}"
        );
    }
    assert!(
        !found.iter().any(|f| f.contains("clickstream")),
        "the click stream carries a pseudonym, not the customer id: {found:?}"
    );
    assert!(
        platform
            .retained_messages()
            .await
            .expect("messages")
            .iter()
            .any(|(topic, _)| topic.contains("clickstream")),
        "alice's clicks are on the click stream"
    );
    let found = leaks(&platform, &alice.pii()).await;
    assert!(found.is_empty(), "plaintext personal data found: {found:?}");

    // Erasure: re-authentication first.
    let wrong = client
        .json(
            Method::DELETE,
            "/v1/me",
            Some(&access),
            &json!({ "password": "not the password at all" }),
        )
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    let started = std::time::Instant::now();
    let erasure_path = client.erase(&access).await;
    client.wait_status(&erasure_path, None, "complete").await;
    eprintln!(
        "erasure confirmed by every service in {:?}",
        started.elapsed()
    );

    // Signed out for good; the exports are gone.
    let response = client
        .json(
            Method::POST,
            "/v1/sessions",
            None,
            &json!({ "email": alice.email, "password": PASSWORD }),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = client
        .request(Method::GET, &status_path, Some(&access))
        .send()
        .await
        .expect("export after erasure");
    assert!(
        matches!(
            response.status(),
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
        ),
        "the export is gone: {}",
        response.status()
    );

    // The access token has not expired yet, but there is nobody behind it any more.
    for path in ["/v1/me", "/v1/me/consents", "/v1/me/consents/history"] {
        let response = client
            .request(Method::GET, path, Some(&access))
            .send()
            .await
            .expect("read after erasure");
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }

    // After erasure: nothing anywhere; Bob is untouched.
    let found = leaks(&platform, &alice.pii()).await;
    assert!(
        found.is_empty(),
        "personal data left after erasure: {found:?}"
    );
    let me = client.get_json("/v1/me", Some(&bob_access)).await;
    assert_eq!(me["email"], bob.email.as_str());

    platform.stop("gateway").await.expect("gateway stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_completes_when_the_catalog_was_down_at_request_time() {
    let mut platform = Platform::start().await.expect("platform");
    let client = Gateway {
        http: Client::new(),
        platform_url: platform.gateway.clone(),
    };
    let carol = Customer::new(
        "Clothilde Marchetti-Ravel",
        "+33 7 11 22 33 44",
        "2 quai Saint-Vincent",
        "Lyon-Vaise",
    );
    client.register(&carol).await;
    let (access, _) = client.sign_in(&carol).await;

    platform.stop("catalog").await.expect("catalog stops");
    let erasure_path = client.erase(&access).await;
    let pending = client.get_json(&erasure_path, None).await;
    assert_eq!(
        pending["status"], "pending",
        "the catalog has not confirmed: {pending}"
    );

    platform.start_catalog().await.expect("catalog back");
    // The catalog catches up from its durable subscription and confirms.
    client.wait_status(&erasure_path, None, "complete").await;
    let found = leaks(&platform, &carol.pii()).await;
    assert!(
        found.is_empty(),
        "personal data left after erasure: {found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_gateway_gets_problem_json_never_5xx() {
    let platform = Platform::start().await.expect("platform");
    let client = Gateway {
        http: Client::new(),
        platform_url: platform.gateway.clone(),
    };
    let dave = Customer::new(
        "Dorothée Lambert",
        "+33 6 55 44 33 22",
        "9 rue Mercière",
        "Lyon",
    );

    // Malformed JSON, a huge body, an invalid email, a weak password.
    let malformed = client
        .request(Method::POST, "/v1/customers", None)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("malformed");
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;
    let huge = client
        .request(Method::POST, "/v1/customers", None)
        .header("content-type", "application/json")
        // Past the 256 KiB limit, yet small enough to sit in the socket buffers: a body the
        // client is still writing when the 413 arrives ends in a broken pipe on its side.
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .expect("huge");
    assert_problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;
    let mut invalid = dave.registration();
    invalid["email"] = json!("not-an-email");
    let response = client
        .json(Method::POST, "/v1/customers", None, &invalid)
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut weak = dave.registration();
    weak["password"] = json!("password1");
    let response = client
        .json(Method::POST, "/v1/customers", None, &weak)
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Tokens: forged, alg:none, garbage.
    client.register(&dave).await;
    let (access, refresh) = client.sign_in(&dave).await;
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let forged = {
        let mut signature = parts[2].clone().into_bytes();
        signature[5] = if signature[5] == b'A' { b'B' } else { b'A' };
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(signature).expect("ascii")
        )
    };
    use base64::Engine as _;
    let none_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    parts[0] = none_header;
    let alg_none = format!("{}.{}.", parts[0], parts[1]);
    for token in [forged.as_str(), alg_none.as_str(), "garbage"] {
        let response = client
            .request(Method::GET, "/v1/me", Some(token))
            .send()
            .await
            .expect("me");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // A replayed refresh token.
    let first = client
        .json(
            Method::POST,
            "/v1/sessions/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let replay = client
        .json(
            Method::POST,
            "/v1/sessions/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_problem(replay, StatusCode::UNAUTHORIZED).await;
    // Erasure without the password, or with a body that is not JSON.
    let response = client
        .json(Method::DELETE, "/v1/me", Some(&access), &json!({}))
        .await;
    let status = response.status();
    assert!(status.is_client_error(), "missing password: {status}");
    assert_problem(response, status).await;
    // Unknown export and erasure ids.
    for path in [
        format!("/v1/me/exports/{}", uuid::Uuid::new_v4()),
        "/v1/me/exports/not-a-uuid".to_owned(),
        format!("/v1/erasures/{}", uuid::Uuid::new_v4()),
    ] {
        let response = client
            .request(Method::GET, &path, Some(&access))
            .send()
            .await
            .expect("unknown");
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
    let found = leaks(&platform, &dave.pii()).await;
    assert!(found.is_empty(), "plaintext personal data found: {found:?}");
}

/// A client at `address` (any of 127.0.0.0/8 is this machine), talking to the gateway.
fn client_from(address: &str, platform: &Platform) -> Gateway {
    Gateway {
        http: Client::builder()
            .local_address(Some(address.parse().expect("address")))
            .build()
            .expect("client"),
        platform_url: platform.gateway.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_exhausting_identitys_address_limit_leaves_the_others_alone() {
    // Behind the gateway, identity must count each client, not the gateway: with the
    // gateway's address as the key, one client's registrations would 429 everyone.
    let platform = Platform::start_with(|identity| identity.login.per_ip_per_minute = 3)
        .await
        .expect("platform");
    let noisy = client_from("127.0.0.2", &platform);
    let quiet = client_from("127.0.0.3", &platform);
    let customer = || Customer::new("Ana Lima", "+33 6 00 00 00 01", "1 rue A", "Lyon");

    for _ in 0..3 {
        noisy.register(&customer()).await;
    }
    let refused = noisy
        .json(
            Method::POST,
            "/v1/customers",
            None,
            &customer().registration(),
        )
        .await;
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["status"], 429);

    // Another address still gets through.
    quiet.register(&customer()).await;
}
