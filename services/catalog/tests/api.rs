//! Catalog API tests: a client's view of the service, on a real PostgreSQL and Pulsar.

mod support;

use comptoir_catalog::domain::Product;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{assert_problem, product_body, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_and_metrics_count_requests_per_route() {
    let app = spawn_app().await;
    assert_eq!(app.get("/livez").await.status(), StatusCode::OK);
    let ready: Value = app.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/v1/products/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );

    let metrics = app.get("/metrics").await.text().await.expect("text");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total")
                && l.contains("route=\"/v1/products/{id}\"")
                && l.contains("status=\"404\"")
        })
        .unwrap_or_else(|| panic!("no RED counter for the product route in:\n{metrics}"));
    assert!(
        !line.contains(&id.to_string()),
        "raw path leaked into labels: {line}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_product_can_be_read_back_with_its_etag() {
    let app = spawn_app().await;
    let category = app.create_category("coffee").await;
    let mut body = product_body("COF-001", "Ethiopia Yirgacheffe, 250 g");
    body["category_id"] = category["id"].clone();

    let response = app.post_product(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let created: Product = response.json().await.expect("json");
    assert_eq!(location, format!("/v1/products/{}", created.id));
    assert_eq!(created.version, 1);
    assert_eq!(created.price_cents, 1290);

    let response = app.get(&location).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let read: Product = response.json().await.expect("json");
    assert_eq!(read, created);

    let categories: Vec<Value> = app.get_json("/v1/categories").await;
    assert_eq!(categories.len(), 1);
    assert_eq!(categories[0]["slug"], "coffee");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_still_holding_products_is_not_deleted() {
    let app = spawn_app().await;
    let category = app.create_category("coffee").await;
    let mut body = product_body("COF-002", "Kenya Nyeri, 250 g");
    body["category_id"] = category["id"].clone();
    let product = app.create_product(&body).await;
    let path = format!(
        "/v1/admin/categories/{}",
        category["id"].as_str().expect("id")
    );

    let in_use = app
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("request");
    let problem = assert_problem(in_use, StatusCode::CONFLICT).await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/category-in-use"
    );

    let delete = app
        .change_product(
            Method::DELETE,
            &format!("/v1/admin/products/{}", product.id),
            Some("*"),
            None,
        )
        .await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let deleted = app
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("request");
    assert_problem(again, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_need_the_current_version() {
    let app = spawn_app().await;
    let product = app.create_product(&product_body("TEA-001", "Sencha")).await;
    let path = format!("/v1/admin/products/{}", product.id);
    let mut change = product_body("TEA-001", "Sencha, first harvest");
    change["price_cents"] = json!(1590);

    let missing = app
        .change_product(Method::PUT, &path, None, Some(&change))
        .await;
    assert_problem(missing, StatusCode::PRECONDITION_REQUIRED).await;

    let garbage = app
        .change_product(Method::PUT, &path, Some("not-an-etag"), Some(&change))
        .await;
    assert_problem(garbage, StatusCode::BAD_REQUEST).await;

    let ok = app
        .change_product(Method::PUT, &path, Some("\"1\""), Some(&change))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["etag"], "\"2\"");
    let updated: Product = ok.json().await.expect("json");
    assert_eq!((updated.version, updated.price_cents), (2, 1590));

    // A second writer still holding version 1 loses, and is told the current version.
    let stale = app
        .admin(Method::PUT, &path)
        .header("if-match", "\"1\"")
        .json(&product_body("TEA-001", "Overwritten"))
        .send()
        .await
        .expect("request");
    let problem = assert_problem(stale, StatusCode::CONFLICT).await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/version-conflict"
    );
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("\"2\"")
    );

    // A well-formed entity tag that is none of ours can never match.
    let foreign = app
        .change_product(Method::PUT, &path, Some("W/\"abc\""), Some(&change))
        .await;
    assert_problem(foreign, StatusCode::CONFLICT).await;

    let stale_delete = app
        .change_product(Method::DELETE, &path, Some("\"1\""), None)
        .await;
    assert_problem(stale_delete, StatusCode::CONFLICT).await;

    // `*` means whatever the current version is (RFC 9110 §13.1.1).
    let any = app
        .change_product(Method::PUT, &path, Some("*"), Some(&change))
        .await;
    assert_eq!(any.status(), StatusCode::OK);
    assert_eq!(any.headers()["etag"], "\"3\"");

    let delete = app
        .change_product(Method::DELETE, &path, Some("\"3\""), None)
        .await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&format!("/v1/products/{}", product.id)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let gone = app
        .change_product(Method::PUT, &path, Some("\"3\""), Some(&change))
        .await;
    assert_problem(gone, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_products_get_422_with_every_field_error() {
    let app = spawn_app().await;
    let body = json!({
        "sku": "x",
        "name": "",
        "price_cents": -5,
        "currency": "euro",
        "category_id": uuid::Uuid::new_v4()
    });
    let problem = assert_problem(
        app.post_product(&body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["sku", "name", "price_cents", "currency"]);

    // A well-formed product in a category that does not exist.
    let mut body = product_body("COF-404", "Orphan");
    body["category_id"] = json!(uuid::Uuid::new_v4());
    let problem = assert_problem(
        app.post_product(&body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "category_id");
    assert_eq!(
        app.outbox_rows().await,
        0,
        "a rejected change must not emit an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_yields_a_server_error() {
    let app = spawn_app().await;
    let url = app.url("/v1/admin/products");
    let send = |body: Vec<u8>, content_type: &'static str| {
        app.http
            .post(&url)
            .bearer_auth(&app.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let malformed = send(b"{\"sku\": ".to_vec(), "application/json")
        .await
        .expect("request");
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;

    let wrong_type = serde_json::to_vec(&json!({
        "sku": "COF-1", "name": "x", "price_cents": "twelve", "currency": "EUR"
    }))
    .expect("json");
    let problem = assert_problem(
        send(wrong_type, "application/json").await.expect("request"),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "price_cents");

    let mut unknown = product_body("COF-2", "x");
    unknown["colour"] = json!("red");
    let problem = assert_problem(
        app.post_product(&unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("colour")
    );

    let not_json = send(b"sku=COF-3".to_vec(), "application/x-www-form-urlencoded")
        .await
        .expect("request");
    assert_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let huge = vec![b' '; 2 * 1024 * 1024];
    let huge = send(huge, "application/json").await.expect("request");
    assert_problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;

    let array = send(b"[1,2,3]".to_vec(), "application/json")
        .await
        .expect("request");
    assert_problem(array, StatusCode::UNPROCESSABLE_ENTITY).await;

    let bad_id = app.get("/v1/products/not-a-uuid").await;
    assert_problem(bad_id, StatusCode::BAD_REQUEST).await;

    let bad_limit = app.get("/v1/products?limit=1000").await;
    let problem = assert_problem(bad_limit, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "limit");

    let bad_query = app.get("/v1/products?limit=abc").await;
    assert_problem(bad_query, StatusCode::BAD_REQUEST).await;

    let nowhere = app.get("/v1/nowhere").await;
    assert_problem(nowhere, StatusCode::NOT_FOUND).await;

    let wrong_method = app
        .http
        .patch(app.url("/v1/products"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        wrong_method
            .headers()
            .get("allow")
            .map(|v| v.to_str().expect("ascii")),
        Some("GET,HEAD")
    );
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;

    // Search text that would be SQL or tsquery syntax is just text.
    for q in ["'; DROP TABLE products; --", "a & | ! (", "%_\\", "\u{0}"] {
        let response = app
            .http
            .get(app.url("/v1/products"))
            .query(&[("q", q)])
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success() || response.status().is_client_error(),
            "{q:?} gave {}",
            response.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token() {
    let app = spawn_app().await;
    let anonymous = app
        .http
        .post(app.url("/v1/admin/products"))
        .json(&product_body("COF-9", "x"))
        .send()
        .await
        .expect("request");
    let response = anonymous;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let wrong = app
        .http
        .get(app.url("/v1/admin/products"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("request");
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.outbox_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_skus_conflict() {
    let app = spawn_app().await;
    app.create_product(&product_body("CHO-001", "Dark 70%"))
        .await;
    let problem = assert_problem(
        app.post_product(&product_body("CHO-001", "Again")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/duplicate-sku"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_search_by_text_and_category_and_page_through_results() {
    let app = spawn_app().await;
    let tea = app.create_category("tea").await;
    let coffee = app.create_category("coffee").await;
    for i in 0..25 {
        let mut body = product_body(&format!("TEA-{i:03}"), &format!("Green tea number {i:02}"));
        body["category_id"] = tea["id"].clone();
        app.create_product(&body).await;
    }
    for (i, name) in ["Kenya Nyeri beans", "Colombia Huila beans"]
        .iter()
        .enumerate()
    {
        let mut body = product_body(&format!("COF-{i:03}"), name);
        body["category_id"] = coffee["id"].clone();
        app.create_product(&body).await;
    }
    let mut hidden = product_body("COF-999", "Kenya withdrawn beans");
    hidden["active"] = json!(false);
    let hidden = app.create_product(&hidden).await;

    // Pages of 10 over the 25 teas, in name order, without overlap.
    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let page: Value = app
            .get_json(&format!("/v1/products?category=tea&limit=10&offset={o}"))
            .await;
        assert_eq!(page["total"], 25);
        for item in page["items"].as_array().expect("items") {
            seen.push(item["name"].as_str().expect("name").to_owned());
        }
        offset = page["next_offset"].as_i64();
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen.len(), 25);
    assert_eq!(seen, sorted);

    // Full-text and partial-word search; inactive products stay hidden from shoppers.
    let kenya: Value = app.get_json("/v1/products?q=kenya").await;
    assert_eq!(kenya["total"], 1);
    assert_eq!(kenya["items"][0]["name"], "Kenya Nyeri beans");
    let partial: Value = app.get_json("/v1/products?q=colomb").await;
    assert_eq!(partial["items"][0]["sku"], "COF-001");
    let beans_in_tea: Value = app.get_json("/v1/products?q=beans&category=tea").await;
    assert_eq!(beans_in_tea["total"], 0);
    assert_problem(
        app.get(&format!("/v1/products/{}", hidden.id)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let admin: Value = app.admin_json("/v1/admin/products?q=kenya").await;
    assert_eq!(admin["total"], 2);

    let past_end: Value = app.get_json("/v1/products?category=tea&offset=500").await;
    assert_eq!(past_end["total"], 25);
    assert!(past_end["next_offset"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_3_1_and_covers_the_routes() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    for path in [
        "/v1/products",
        "/v1/products/{id}",
        "/v1/admin/products/{id}",
        "/v1/categories",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_loads_a_few_hundred_products_once() {
    let app = spawn_app_with(|s| s.demo_data = true).await;
    let expected = comptoir_catalog::demo::product_count() as i64;
    let all: Value = app.admin_json("/v1/admin/products?limit=1").await;
    assert_eq!(all["total"], expected);
    let shop: Value = app.get_json("/v1/products?limit=1").await;
    let visible = shop["total"].as_i64().expect("total");
    assert!(
        visible < expected && visible > expected * 9 / 10,
        "{visible} of {expected}"
    );
    let categories: Vec<Value> = app.get_json("/v1/categories").await;
    assert!(categories.len() >= 10);

    // A restart with demo data still on finds the catalogue and adds nothing.
    let app = app.restart_with(|s| s.demo_data = true).await;
    let again: Value = app.admin_json("/v1/admin/products?limit=1").await;
    assert_eq!(again["total"], expected);
    let categories_again: Vec<Value> = app.get_json("/v1/categories").await;
    assert_eq!(categories_again.len(), categories.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_and_returns() {
    let app = spawn_app().await;
    app.create_product(&product_body("GFT-001", "Gift box"))
        .await;
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_refused_not_a_server_error() {
    let app = spawn_app().await;
    let mut body = product_body("COF-777", "Nul");
    body["description"] = json!("before\u{0}after");
    let problem = assert_problem(
        app.post_product(&body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "description");
    let response = app
        .admin(Method::POST, "/v1/admin/categories")
        .json(&json!({ "slug": "nul", "name": "a\u{0}b" }))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = app
        .http
        .get(app.url("/v1/products"))
        .query(&[("category", "\u{0}")])
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

/// The price of `sku` in the first page of active products, as shoppers see it.
async fn listed_price(app: &support::TestApp, sku: &str) -> Option<i64> {
    let page: Value = app.get_json("/v1/products?limit=100").await;
    page["items"]
        .as_array()?
        .iter()
        .find(|item| item["sku"] == sku)?["price_cents"]
        .as_i64()
}

/// The catalog's counter of pages served from memory.
async fn pages_from_memory(app: &support::TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"catalog_pages_total{result="memory"} "#))
        .map_or(0.0, |v| v.trim().parse().expect("number"))
}

/// Reads the listing until one answer comes from memory (a notification still in flight may
/// drop the first page kept), and returns the memory counter then.
async fn served_from_memory(app: &support::TestApp, sku: &str, price: i64) -> f64 {
    comptoir_testkit::wait_for(
        "a page served from memory",
        std::time::Duration::from_secs(5),
        || async {
            let hits = pages_from_memory(app).await;
            (listed_price(app, sku).await == Some(price) && pages_from_memory(app).await > hits)
                .then_some(())
        },
    )
    .await
    .expect("a page from memory");
    pages_from_memory(app).await
}

/// Waits until the read path's listener is connected (pages are kept from then on).
async fn pages_live(app: &support::TestApp) {
    comptoir_testkit::wait_for(
        "the pages listener",
        std::time::Duration::from_secs(15),
        || async {
            let metrics = app.get("/metrics").await.text().await.ok()?;
            metrics
                .lines()
                .any(|l| l == "catalog_pages_live 1")
                .then_some(())
        },
    )
    .await
    .expect("listener connected");
}

/// Waits up to the read path's documented bound (one second; `src/pages.rs`) for `sku` to be
/// listed at `price`.
async fn listed_within_the_bound(app: &support::TestApp, sku: &str, price: i64) {
    let seen = comptoir_testkit::wait_for(
        &format!("{sku} listed at {price}"),
        std::time::Duration::from_secs(1),
        || async { (listed_price(app, sku).await == Some(price)).then_some(()) },
    )
    .await;
    if let Err(error) = seen {
        panic!("{error}; listed at {:?}", listed_price(app, sku).await);
    }
}

/// The first page of active products, asked with `If-None-Match: tag`.
async fn listing_if_none_match(
    app: &support::TestApp,
    tag: &reqwest::header::HeaderValue,
) -> reqwest::Response {
    app.http
        .get(app.url("/v1/products?limit=100"))
        .header("if-none-match", tag.clone())
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_carry_an_etag_and_answer_304_while_the_catalogue_is_unchanged() {
    let app = spawn_app().await;
    let product = app.create_product(&product_body("TEA-001", "Sencha")).await;
    let first = app.get("/v1/products?limit=100").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        first.headers()["cache-control"],
        comptoir_catalog::pages::CACHE_CONTROL
    );
    assert_eq!(first.headers()["content-type"], "application/json");
    let tag = first.headers()["etag"].clone();
    let body: Value = first.json().await.expect("json");
    assert_eq!(body["items"][0]["sku"], "TEA-001");

    let unchanged = listing_if_none_match(&app, &tag).await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()["etag"], tag);
    assert!(unchanged.bytes().await.expect("body").is_empty());
    // Another page has its own tag; the category list has one too.
    let other = app.get("/v1/products?limit=5").await;
    assert_ne!(other.headers()["etag"], tag);
    assert!(
        app.get("/v1/categories")
            .await
            .headers()
            .contains_key("etag")
    );

    let mut change = product_body("TEA-001", "Sencha");
    change["price_cents"] = json!(1590);
    let path = format!("/v1/admin/products/{}", product.id);
    let ok = app
        .change_product(Method::PUT, &path, Some("\"1\""), Some(&change))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    listed_within_the_bound(&app, "TEA-001", 1590).await;
    let changed = listing_if_none_match(&app, &tag).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"], tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_is_served_within_the_bound() {
    let app = spawn_app().await;
    let product = app.create_product(&product_body("TEA-001", "Sencha")).await;
    pages_live(&app).await;
    // Read again and again: answers come from memory.
    served_from_memory(&app, "TEA-001", 1290).await;

    // Each committed change is listed within the bound, several in a row.
    for (version, price) in [(1, 1590), (2, 990), (3, 2490)] {
        let mut change = product_body("TEA-001", "Sencha");
        change["price_cents"] = json!(price);
        let path = format!("/v1/admin/products/{}", product.id);
        let ok = app
            .change_product(
                Method::PUT,
                &path,
                Some(&format!("\"{version}\"")),
                Some(&change),
            )
            .await;
        assert_eq!(ok.status(), StatusCode::OK);
        listed_within_the_bound(&app, "TEA-001", price).await;
    }

    // A change made behind the service's back (SQL, a migration, another replica) is
    // notified by the database itself.
    let admin = app.db.admin().await.expect("admin");
    admin
        .execute("UPDATE products SET price_cents = 777", &[])
        .await
        .expect("update");
    listed_within_the_bound(&app, "TEA-001", 777).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_change_notifications_never_serves_a_stale_page() {
    let app = spawn_app().await;
    app.create_product(&product_body("TEA-001", "Sencha")).await;
    pages_live(&app).await;
    let before = served_from_memory(&app, "TEA-001", 1290).await;

    // The listening connection dies, and the price changes before it is back: pages read
    // before must not be served after.
    let admin = app.db.admin().await.expect("admin");
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE '% listen catalog_changed'",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "one listening connection");
    admin
        .execute("UPDATE products SET price_cents = 555", &[])
        .await
        .expect("update");
    listed_within_the_bound(&app, "TEA-001", 555).await;

    // And once it is back, pages are kept again and still follow changes.
    comptoir_testkit::wait_for("the listener back", std::time::Duration::from_secs(15), || async {
        let rows = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE '% listen catalog_changed'",
                &[],
            )
            .await
            .ok()?;
        (rows.get::<_, i64>(0) == 1).then_some(())
    })
    .await
    .expect("listener");
    pages_live(&app).await;
    admin
        .execute("UPDATE products SET price_cents = 444", &[])
        .await
        .expect("update");
    listed_within_the_bound(&app, "TEA-001", 444).await;
    // Pages are kept again.
    assert!(served_from_memory(&app, "TEA-001", 444).await > before);
}
