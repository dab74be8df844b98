//! A whole purchase through the gateway, on every real service, PostgreSQL, Pulsar and a real
//! SMTP server (Mailpit): sign in → cart → checkout → confirmed → the mail in the mailbox; a
//! declined card gives the stock back; a duplicate checkout is one order and one charge; bad
//! input is problem+json. The customer's personal data is then searched for in every service
//! database, every retained message and every log line, after the purchase and after an
//! erasure.

use std::time::Duration;

use comptoir_e2e::{DEMO_STOCK, Platform};
use comptoir_testkit::{assert_problem, wait_for};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

struct Shop {
    http: Client,
    base: String,
}

impl Shop {
    fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn json(&self, path: &str, token: Option<&str>) -> Value {
        self.send(Method::GET, path, token, None)
            .await
            .json()
            .await
            .expect("json")
    }

    async fn checkout(&self, token: &str, key: &str, card: &str) -> Response {
        self.request(Method::POST, "/v1/orders", Some(token))
            .header("idempotency-key", key)
            .json(&json!({ "payment_token": card }))
            .send()
            .await
            .expect("checkout")
    }

    /// Registers and signs in a customer; returns the access token and the customer id.
    async fn customer(&self, email: &str, name: &str, street: &str) -> (String, String) {
        let response = self
            .send(
                Method::POST,
                "/v1/customers",
                None,
                Some(json!({
                    "email": email, "password": PASSWORD, "name": name,
                    "phone": "+33 6 98 76 54 32",
                    "addresses": [{ "line1": street, "postal_code": "13001", "city": "Marseille", "country": "FR" }]
                })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let session: Value = self
            .send(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({ "email": email, "password": PASSWORD })),
            )
            .await
            .json()
            .await
            .expect("session");
        let token = session["access_token"].as_str().expect("token").to_owned();
        let me = self.json("/v1/me", Some(&token)).await;
        (token, me["id"].as_str().expect("id").to_owned())
    }

    async fn wait_order(&self, token: &str, id: &str, wanted: &str) -> Value {
        let path = format!("/v1/orders/{id}");
        wait_for(
            &format!("order {id} to be {wanted}"),
            Duration::from_secs(60),
            || {
                let request = self.request(Method::GET, &path, Some(token));
                async move {
                    let order: Value = request.send().await.ok()?.json().await.ok()?;
                    (order["status"] == wanted).then_some(order)
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    async fn wait_available(&self, product: &str, wanted: i64) {
        let path = format!("/v1/stock/{product}");
        wait_for(
            &format!("{wanted} units available"),
            Duration::from_secs(60),
            || {
                let request = self.request(Method::GET, &path, None);
                async move {
                    let stock: Value = request.send().await.ok()?.json().await.ok()?;
                    (stock["available"] == wanted).then_some(())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_gets_the_mail_and_leaves_no_personal_data_behind() {
    let platform = Platform::start().await.expect("platform");
    let shop = Shop {
        http: Client::new(),
        base: platform.gateway.clone(),
    };

    // A product, created by the merchandiser: orders prices it, inventory stocks it.
    let created: Value = shop
        .request(
            Method::POST,
            "/v1/admin/products",
            Some(&platform.catalog_admin_token().expect("token")),
        )
        .json(&json!({
            "sku": format!("E2E-{}", Uuid::new_v4().simple().to_string()[..10].to_uppercase()), "name": "Colombia Huila, 1 kg",
            "description": "Whole beans", "price_cents": 3450, "currency": "EUR", "active": true
        }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let product = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    shop.wait_available(&product, DEMO_STOCK).await;

    let email = format!("noemie.{}@example.org", Uuid::new_v4().simple());
    let name = "Noémie Castellane-Oberkampf";
    let street = "17 traverse du Pharo";
    let (token, customer_id) = shop.customer(&email, name, street).await;

    // The cart: the product shows up once orders has the catalog's event.
    let line = format!("/v1/cart/lines/{product}");
    wait_for(
        "orders to know the product",
        Duration::from_secs(60),
        || {
            let request = shop
                .request(Method::PUT, &line, Some(&token))
                .json(&json!({ "quantity": 2 }));
            async move { (request.send().await.ok()?.status() == StatusCode::OK).then_some(()) }
        },
    )
    .await
    .expect("in the cart");
    let cart = shop.json("/v1/cart", Some(&token)).await;
    assert_eq!(cart["total_minor"], 6900);

    // Bad input everywhere is problem+json, never a 5xx.
    let response = shop
        .send(
            Method::PUT,
            &line,
            Some(&token),
            Some(json!({ "quantity": 0 })),
        )
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = shop
        .send(
            Method::PUT,
            &line,
            Some(&token),
            Some(json!({ "quantity": 100_000_000_000_i64 })),
        )
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = shop
        .send(
            Method::PUT,
            &format!("/v1/cart/lines/{}", Uuid::new_v4()),
            Some(&token),
            Some(json!({ "quantity": 1 })),
        )
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = shop
        .request(Method::PUT, &line, Some(&token))
        .header("content-type", "application/json")
        .body("{\"quantity\":")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let response = shop
        .send(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({ "payment_token": "tok_success" })),
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let response = shop.send(Method::GET, "/v1/cart", None, None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // Checkout: 202 at once, then confirmed; the same key again is the same order.
    let key = Uuid::new_v4().to_string();
    let response = shop.checkout(&token, &key, "tok_success").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Value = response.json().await.expect("json");
    let order_id = order["id"].as_str().expect("id").to_owned();
    let confirmed = shop.wait_order(&token, &order_id, "confirmed").await;
    assert_eq!(confirmed["total_minor"], 6900);
    let again: Value = shop
        .checkout(&token, &key, "tok_success")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["id"], order_id.as_str());
    let response = shop.checkout(&token, &key, "tok_decline").await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    shop.wait_available(&product, DEMO_STOCK - 2).await;
    // One payment, captured once (payments' operator view, through the gateway).
    let payment = shop
        .json(
            &format!("/v1/admin/payments/{order_id}"),
            Some(&platform.operator_token().expect("token")),
        )
        .await;
    assert_eq!(payment["status"], "captured", "{payment}");

    // Another shopper sees none of it.
    let (other, _) = shop
        .customer(
            &format!("x.{}@example.org", Uuid::new_v4().simple()),
            "Yves Autre",
            "1 rue Autre",
        )
        .await;
    let response = shop
        .send(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            Some(&other),
            None,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = shop
        .send(
            Method::POST,
            &format!("/v1/orders/{order_id}/refund"),
            Some(&other),
            None,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    // The confirmation mail is in the customer's mailbox.
    let mails = platform.mailpit.wait_for_messages(1).await;
    let mail = mails
        .iter()
        .find(|m| m.to.iter().any(|to| to == &email))
        .expect("a mail to the customer");
    assert!(mail.subject.contains("confirmed"), "{}", mail.subject);
    let full = platform.mailpit.message(&mail.id).await;
    assert!(
        full["Text"].as_str().expect("text").contains("69.00 EUR"),
        "{full}"
    );

    // A declined card: cancelled, the stock comes back, the customer is told.
    shop.send(
        Method::PUT,
        &line,
        Some(&token),
        Some(json!({ "quantity": 3 })),
    )
    .await;
    let declined: Value = shop
        .checkout(&token, &Uuid::new_v4().to_string(), "tok_decline")
        .await
        .json()
        .await
        .expect("json");
    let declined_id = declined["id"].as_str().expect("id").to_owned();
    let cancelled = shop.wait_order(&token, &declined_id, "cancelled").await;
    assert_eq!(cancelled["reason"], "card-declined");
    shop.wait_available(&product, DEMO_STOCK - 2).await;
    let mails = platform.mailpit.wait_for_messages(2).await;
    assert!(
        mails.iter().any(|m| m.subject.contains("cancelled")),
        "{mails:?}"
    );
    let history = shop.json("/v1/orders", Some(&token)).await;
    assert_eq!(history["total"], 2);

    // After a purchase: personal data is nowhere outside identity (encrypted there). The scan
    // reaches every new database: the customer id (not personal data by itself) is found.
    let pii = vec![
        email.clone(),
        name.to_owned(),
        street.to_owned(),
        "98765432".to_owned(),
    ];
    let found = platform.leaks(&pii).await.expect("scan");
    assert!(found.is_empty(), "plaintext personal data found: {found:?}");
    let found = platform
        .leaks(std::slice::from_ref(&customer_id))
        .await
        .expect("scan");
    for place in ["orders database", "notifications database", "a message on"] {
        assert!(
            found.iter().any(|f| f.contains(place)),
            "the scan reaches the {place}: {found:?}"
        );
    }

    // Erasure: every service answers; orders keeps the invoices, detached from the customer.
    let response = shop
        .send(
            Method::DELETE,
            "/v1/me",
            Some(&token),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let status_path = accepted["status_url"]
        .as_str()
        .expect("status url")
        .to_owned();
    wait_for("the erasure to complete", Duration::from_secs(90), || {
        let request = shop.request(Method::GET, &status_path, None);
        async move {
            let status: Value = request.send().await.ok()?.json().await.ok()?;
            (status["status"] == "complete").then_some(())
        }
    })
    .await
    .expect("erased");
    let found = platform.leaks(&pii).await.expect("scan");
    assert!(
        found.is_empty(),
        "personal data left after erasure: {found:?}"
    );
    let found = platform
        .leaks(std::slice::from_ref(&customer_id))
        .await
        .expect("scan");
    for place in ["orders database", "notifications database"] {
        assert!(
            !found.iter().any(|f| f.contains(place)),
            "the customer id is still in the {place}: {found:?}"
        );
    }
    let kept: i64 = platform
        .orders_db
        .admin()
        .await
        .expect("admin")
        .query_one(
            "SELECT count(*) FROM orders WHERE status = 'confirmed'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 1, "the invoiced order is kept, detached");
}
