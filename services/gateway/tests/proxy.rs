//! The gateway as a client sees it, in front of the real catalog and an identity stand-in:
//! routing, token checks at the edge, header hygiene, request ids, rate limits, body limits,
//! CORS and the merged OpenAPI document.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comptoir_auth::Signer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Catalog, Stub, assert_problem, claims, dead_url, sample, settings, spawn_gateway};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_reach_the_right_upstream_and_internal_routes_never_do() {
    let catalog = Catalog::spawn().await;
    let identity = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&identity, &catalog.base)).await;

    // Catalog: an empty catalogue, read through the gateway, then written as an operator
    // (its own bearer token, which the gateway does not take for an access token).
    let page: Value = gateway
        .get("/v1/products?limit=5")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"], json!([]), "{page}");
    let created = gateway
        .request(Method::POST, "/v1/admin/categories")
        .bearer_auth(&catalog.admin_token)
        .json(&json!({"slug": "tea", "name": "Tea"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), StatusCode::CREATED);
    let categories: Value = gateway
        .get("/v1/categories")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(categories[0]["slug"], "tea", "{categories}");

    // Identity: the stand-in echoes what it received.
    let me: Value = gateway.get("/v1/me").await.json().await.expect("json");
    assert_eq!(me["path"], "/v1/me");
    assert_eq!(identity.hits("/v1/me"), 1);
    let jwks: Value = gateway
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"][0]["kid"], "stub-key");

    // Never routed, whatever the upstream serves, however the path is spelled. (reqwest
    // resolves plain and %2e dot segments before sending; an encoded slash reaches the
    // gateway as is and is refused.)
    for (path, status) in [
        ("/internal/v1/customers/42/pii", StatusCode::NOT_FOUND),
        (
            "/v1/me/../../internal/v1/customers/42/pii",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/me/..%2F..%2Finternal/v1/customers/42/pii",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/nothing-here", StatusCode::NOT_FOUND),
        ("/v1/mex", StatusCode::NOT_FOUND),
    ] {
        let response = gateway
            .request(Method::POST, path)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "{path}");
        assert_problem(response, status).await;
    }
    assert_eq!(identity.hits("/internal/v1/customers/42/pii"), 0);

    // An upstream 4xx problem comes back unchanged: the same body as the catalog's own.
    let path = format!("/v1/products/{}", Uuid::new_v4());
    let through = assert_problem(gateway.get(&path).await, StatusCode::NOT_FOUND).await;
    let direct: Value = reqwest::get(format!("{}{path}", catalog.base))
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(through, direct);
}

fn forge(header: &Value, claims_json: &Value, signature: &str) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    format!("{}.{}.{signature}", b64(header), b64(claims_json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_at_the_edge_and_good_ones_pass_unchanged() {
    let identity = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&identity, &dead_url())).await;
    let subject = Uuid::new_v4();

    let good = identity.token(subject);
    let echoed: Value = gateway
        .request(Method::GET, "/v1/me")
        .bearer_auth(&good)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        echoed["headers"]["authorization"],
        json!([format!("Bearer {good}")]),
        "the token is forwarded as it came"
    );

    let impostor = Signer::generate("stub-key").expect("key");
    let forged = impostor.issue(&claims(subject)).expect("sign");
    let mut stale = claims(subject);
    stale.iat -= 3_600;
    stale.exp = stale.iat + 60;
    let expired = identity.signer.issue(&stale).expect("sign");
    let claims_json = serde_json::to_value(claims(subject)).expect("json");
    let alg_none = forge(&json!({"alg": "none", "kid": "stub-key"}), &claims_json, "");
    let hs256 = forge(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "stub-key"}),
        &claims_json,
        "c2lnbmF0dXJl",
    );
    for (what, token) in [
        ("forged", forged.as_str()),
        ("expired", expired.as_str()),
        ("alg none", alg_none.as_str()),
        ("hs256", hs256.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        let response = gateway
            .request(Method::GET, "/v1/me")
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}: {response:?}"
        );
        let body = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            body["type"], "https://comptoir.dev/problems/invalid-token",
            "{what}"
        );
    }
    assert_eq!(
        identity.hits("/v1/me"),
        1,
        "refused requests never reach identity"
    );
    let metrics = gateway.metrics().await;
    assert!(
        sample(
            &metrics,
            "gateway_token_rejections_total",
            &["reason=\"expired\""]
        ) == Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_are_cleaned_and_the_request_id_travels_both_ways() {
    let identity = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&identity, &dead_url())).await;

    let response = gateway
        .request(Method::POST, "/v1/echo/a?b=c")
        .header("x-request-id", "client-id-42")
        .header("x-comptoir-subject", Uuid::new_v4().to_string())
        .header("forwarded", "for=203.0.113.9")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-private")
        .header("x-private", "1")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "client-id-42");
    let echoed: Value = response.json().await.expect("json");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/v1/echo/a");
    assert_eq!(echoed["query"], "b=c");
    assert_eq!(echoed["body_len"], 5);
    let headers = &echoed["headers"];
    assert_eq!(headers["x-request-id"], json!(["client-id-42"]));
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    for dropped in ["x-comptoir-subject", "forwarded", "x-private", "connection"] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} leaked: {headers}"
        );
    }

    // No id, or one not worth keeping: the gateway makes one, the same both ways.
    for inbound in [None, Some("has spaces and \"quotes\"")] {
        let mut request = gateway.request(Method::GET, "/v1/echo");
        if let Some(id) = inbound {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.expect("request");
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(Uuid::parse_str(&id).is_ok(), "{id}");
        let echoed: Value = response.json().await.expect("json");
        assert_eq!(echoed["headers"]["x-request-id"], json!([id]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_their_rate_get_429_with_retry_after() {
    let identity = Stub::spawn().await;
    let mut config = settings(&identity, &dead_url());
    config.rate_limit.per_ip_per_second = 1;
    config.rate_limit.per_ip_burst = 3;
    let gateway = spawn_gateway(config).await;
    let mut refused = None;
    for _ in 0..20 {
        let response = gateway.get("/v1/echo").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a 429 within 20 requests");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "https://comptoir.dev/problems/rate-limited");

    // Per subject: one customer's burst does not spend another's.
    let mut config = settings(&identity, &dead_url());
    config.rate_limit.per_subject_per_second = 1;
    config.rate_limit.per_subject_burst = 2;
    let gateway = spawn_gateway(config).await;
    let (greedy, other) = (
        identity.token(Uuid::new_v4()),
        identity.token(Uuid::new_v4()),
    );
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = gateway
            .request(Method::GET, "/v1/me")
            .bearer_auth(&greedy)
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let response = gateway
        .request(Method::GET, "/v1/me")
        .bearer_auth(&other)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = gateway.metrics().await;
    assert!(sample(&metrics, "gateway_rate_limited_total", &["by=\"subject\""]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_are_413_before_reaching_the_upstream() {
    let identity = Stub::spawn().await;
    let mut config = settings(&identity, &dead_url());
    config.http.body_limit_bytes = 2048;
    let gateway = spawn_gateway(config).await;

    let ok = gateway
        .request(Method::POST, "/v1/echo")
        .body(vec![b'x'; 2000])
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), StatusCode::OK);

    let response = gateway
        .request(Method::POST, "/v1/echo")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked, so no Content-Length announces it: refused while reading.
    let chunks: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = (0..8)
        .map(|_| {
            Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
                b'y';
                1024
            ])))
        })
        .collect();
    let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let request = http::Request::post(gateway.url("/v1/echo"))
        .body(body)
        .expect("request");
    let response = client.request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], support::PROBLEM_JSON);
    assert_eq!(
        identity.hits("/v1/echo"),
        1,
        "only the small body got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let identity = Stub::spawn().await;
    let mut config = settings(&identity, &dead_url());
    config.cors.allowed_origins = vec!["https://shop.example".to_owned()];
    let gateway = spawn_gateway(config).await;

    let preflight = |origin: &'static str| {
        gateway
            .request(Method::OPTIONS, "/v1/echo")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.expect("request");
    assert!(allowed.status().is_success(), "{allowed:?}");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    // A storefront's waiting read of its order (orders' `Prefer: wait`).
    assert!(headers.contains("prefer"), "{headers}");
    assert_eq!(
        identity.hits("/v1/echo"),
        0,
        "preflights stay at the gateway"
    );

    let refused = preflight("https://evil.example").await.expect("request");
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin"),
        "{refused:?}"
    );

    // Simple requests and error answers carry the header too, so a browser can read them.
    for path in ["/v1/echo", "/v1/nothing-here"] {
        let response = gateway
            .request(Method::GET, path)
            .header("origin", "https://shop.example")
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://shop.example",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_openapi_holds_every_routed_path_and_survives_an_upstream_outage() {
    let catalog = Catalog::spawn().await;
    let identity = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&identity, &catalog.base)).await;

    let response = gateway.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    // `down` never answered: its part is missing, and the answer says so.
    assert_eq!(response.headers()["x-comptoir-openapi-degraded"], "down");
    let document: Value = response.json().await.expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/v1/products",
        "/v1/products/{id}",
        "/v1/categories",
        "/v1/me",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing: {:?}",
            paths.keys()
        );
    }
    assert!(
        paths
            .keys()
            .all(|p| !p.starts_with("/internal") && p != "/openapi.json"),
        "{:?}",
        paths.keys()
    );
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    assert!(
        schemas.contains_key("catalog.Product"),
        "{:?}",
        schemas.keys()
    );
    assert!(
        schemas.contains_key("identity.Product"),
        "{:?}",
        schemas.keys()
    );
    assert!(!schemas.contains_key("Product"));
    assert_eq!(
        paths["/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/identity.Product"
    );
    assert_eq!(document["x-comptoir-sources"]["catalog"]["status"], "live");

    // Identity goes away: its part is served from the cache, and the answer says so.
    identity.stop().await;
    let response = gateway.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-comptoir-openapi-degraded"],
        "down, identity, test"
    );
    let document: Value = response.json().await.expect("json");
    assert!(
        document["paths"].get("/v1/me").is_some(),
        "cached paths kept"
    );
    assert_eq!(
        document["x-comptoir-sources"]["identity"]["status"],
        "stale"
    );
    assert_eq!(document["x-comptoir-sources"]["down"]["status"], "missing");
    assert_eq!(document["x-comptoir-sources"]["catalog"]["status"], "live");
}

/// How many times the catalog itself answered `GET route` (its RED counter; the gateway runs in
/// this process too and counts into the same registry, so the service label tells them apart).
async fn catalog_served(catalog: &Catalog, route: &str) -> f64 {
    let metrics = reqwest::get(format!("{}/metrics", catalog.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    sample(
        &metrics,
        "http_requests_total",
        &[
            "service=\"catalog\"",
            "method=\"GET\"",
            &format!("route=\"{route}\""),
            "status=\"200\"",
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_are_answered_from_the_shared_cache_for_their_s_maxage_only() {
    let catalog = Catalog::spawn().await;
    let identity = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&identity, &catalog.base)).await;

    // Anonymous reads of the category list: the catalog answers the first, the gateway the
    // next ones (the catalog allows a shared cache one second: s-maxage=1), saying how old.
    let first = gateway.get("/v1/categories").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(
        first.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("s-maxage=1")
    );
    let tag = first.headers()["etag"].clone();
    for _ in 0..5 {
        let again = gateway.get("/v1/categories").await;
        assert_eq!(again.status(), StatusCode::OK);
        assert!(again.headers().contains_key("age"));
    }
    assert_eq!(catalog_served(&catalog, "/v1/categories").await, 1.0);
    // A client holding the answer gets 304 from the gateway itself.
    let held = gateway
        .request(Method::GET, "/v1/categories")
        .header("if-none-match", tag)
        .send()
        .await
        .expect("request");
    assert_eq!(held.status(), StatusCode::NOT_MODIFIED);
    // A signed-in client's read is never shared: it reaches the catalog.
    let signed_in = gateway
        .request(Method::GET, "/v1/categories")
        .bearer_auth(identity.token(Uuid::new_v4()))
        .send()
        .await
        .expect("request");
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert!(!signed_in.headers().contains_key("age"));
    assert_eq!(catalog_served(&catalog, "/v1/categories").await, 2.0);
    let metrics = gateway.metrics().await;
    assert!(sample(&metrics, "gateway_cache_total", &["result=\"hit\""]).unwrap_or(0.0) >= 6.0);

    // A change is seen through the gateway within its bound: the catalog's second plus the
    // shared cache's second.
    let created = gateway
        .request(Method::POST, "/v1/admin/categories")
        .bearer_auth(&catalog.admin_token)
        .json(&json!({"slug": "tea", "name": "Tea"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), StatusCode::CREATED);
    comptoir_testkit::wait_for(
        "the new category through the gateway",
        std::time::Duration::from_secs(2),
        || async {
            let list: Value = gateway.get("/v1/categories").await.json().await.ok()?;
            (list.as_array()?.len() == 1).then_some(())
        },
    )
    .await
    .expect("within two seconds");
    gateway.stop().await;
}
