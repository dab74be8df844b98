//! What the simulated shoppers do, through the gateway, as goose scenarios.
//!
//! Three kinds of visitor, each a scenario whose transactions run in order, each as many times
//! as its weight, with a think time between them (the profile's):
//! - **browser** (anonymous): the catalogue's pages, product pages with their stock, searches;
//! - **shopper** (a registered customer, signed in once when it starts): browse the catalogue
//!   10, product page 10, search 4, add to cart 2, view cart 3, check out 1 (then follow the
//!   order until the saga ends), sign in again and set a consent 1 — the weights of the
//!   issue that specified them, and what keeps the 5-minute access token fresh;
//! - **privacy** (rare): registers, signs in, asks for its GDPR export and follows it until the
//!   archive is ready, then erases itself and follows the erasure until every service
//!   confirmed. Each pass is a new customer (the previous one is gone).
//!
//! Browsers and shoppers also send their click stream to analytics (`POST /v1/events`, 5 of
//! their transactions): a batch of 3 to 12 page views, product views, searches and
//! add-to-carts of the last seconds, anonymous under a session id or with the shopper's token.
//!
//! Requests are named by their route template (`GET /v1/products/{id}`), so the reports and
//! the SLO rules (`crate::slo`) group them as the gateway's metrics do.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use goose::goose::GooseResponse;
use goose::prelude::*;
use rand::Rng;
use rand::seq::IndexedRandom;
use reqwest_goose::RequestBuilder;
use serde_json::{Value, json};

/// One kind of request, named by its route template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub name: &'static str,
}

impl Request {
    /// The route template without the query (what an SLO's route is matched against).
    pub fn path(&self) -> &'static str {
        self.name.split('?').next().unwrap_or(self.name)
    }

    fn goose_method(&self) -> GooseMethod {
        match self.method {
            "POST" => GooseMethod::Post,
            "PUT" => GooseMethod::Put,
            "DELETE" => GooseMethod::Delete,
            _ => GooseMethod::Get,
        }
    }
}

const fn request(method: &'static str, name: &'static str) -> Request {
    Request { method, name }
}

pub const PRODUCTS: Request = request("GET", "/v1/products");
pub const SEARCH: Request = request("GET", "/v1/products?q");
pub const PRODUCT: Request = request("GET", "/v1/products/{id}");
pub const CATEGORIES: Request = request("GET", "/v1/categories");
pub const STOCK: Request = request("GET", "/v1/stock/{id}");
pub const CART_LINE: Request = request("PUT", "/v1/cart/lines/{id}");
pub const CART: Request = request("GET", "/v1/cart");
pub const CHECKOUT: Request = request("POST", "/v1/orders");
pub const ORDER: Request = request("GET", "/v1/orders/{id}");
pub const REGISTER: Request = request("POST", "/v1/customers");
pub const SIGN_IN: Request = request("POST", "/v1/sessions");
pub const CONSENT: Request = request("PUT", "/v1/me/consents/{purpose}");
pub const EXPORT: Request = request("POST", "/v1/me/exports");
pub const EXPORT_STATUS: Request = request("GET", "/v1/me/exports/{id}");
pub const ERASE: Request = request("DELETE", "/v1/me");
pub const ERASURE_STATUS: Request = request("GET", "/v1/erasures/{id}");
pub const EVENTS: Request = request("POST", "/v1/events");

/// The gateway's liveness route, for the `trivial` profile only (not a shopper's request).
pub const LIVEZ: Request = request("GET", "/livez");

/// Every request the journeys make.
pub const REQUESTS: &[Request] = &[
    PRODUCTS,
    SEARCH,
    PRODUCT,
    CATEGORIES,
    STOCK,
    CART_LINE,
    CART,
    CHECKOUT,
    ORDER,
    REGISTER,
    SIGN_IN,
    CONSENT,
    EXPORT,
    EXPORT_STATUS,
    ERASE,
    ERASURE_STATUS,
    EVENTS,
];

/// What every visitor may look at: the demo catalogue, read once before the run.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub products: Vec<String>,
    pub categories: Vec<String>,
    /// Words of the products' names, searched for.
    pub terms: Vec<String>,
}

static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();

/// Sets the catalogue the journeys use (once, before the run).
pub fn use_catalogue(catalogue: Catalogue) -> anyhow::Result<()> {
    anyhow::ensure!(
        !catalogue.products.is_empty() && !catalogue.terms.is_empty(),
        "the catalogue is empty: start the platform with dev/up"
    );
    CATALOGUE
        .set(catalogue)
        .map_err(|_| anyhow::anyhow!("the catalogue is already set"))
}

fn catalogue() -> Result<&'static Catalogue, Box<TransactionError>> {
    CATALOGUE
        .get()
        .ok_or_else(|| custom("no catalogue: use_catalogue was not called"))
}

/// The ends of the asynchronous flows the journeys followed, for the run's summary (the
/// request counts are goose's).
#[derive(Debug, Default)]
pub struct Outcomes {
    pub orders_confirmed: AtomicU64,
    pub orders_cancelled: AtomicU64,
    pub exports_ready: AtomicU64,
    pub erasures_complete: AtomicU64,
}

pub static OUTCOMES: Outcomes = Outcomes {
    orders_confirmed: AtomicU64::new(0),
    orders_cancelled: AtomicU64::new(0),
    exports_ready: AtomicU64::new(0),
    erasures_complete: AtomicU64::new(0),
};

/// How long a journey follows an order, an export or an erasure before calling it failed.
const FOLLOW_FOR: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(250);
/// The password of every customer the generator registers (not a secret: test customers).
const PASSWORD: &str = "load test shopper passphrase 2026";

/// A signed-in visitor's session.
#[derive(Debug, Default, Clone)]
struct Session {
    email: String,
    token: String,
    /// Products in the cart (the checkout needs one).
    in_cart: usize,
}

/// The three scenarios, each waiting `think` between two transactions.
pub fn scenarios(think: (Duration, Duration)) -> Result<Vec<Scenario>, GooseError> {
    let (min, max) = think;
    let browser = scenario!("browser")
        .set_weight(4)?
        .set_wait_time(min, max)?
        .register_transaction(transaction!(browse).set_name("browse").set_weight(10)?)
        .register_transaction(
            transaction!(product_page)
                .set_name("product")
                .set_weight(10)?,
        )
        .register_transaction(transaction!(search).set_name("search").set_weight(4)?)
        .register_transaction(transaction!(clicks).set_name("clicks").set_weight(5)?);
    let shopper = scenario!("shopper")
        .set_weight(4)?
        .set_wait_time(min, max)?
        .register_transaction(
            transaction!(register_and_sign_in)
                .set_name("sign up")
                .set_on_start(),
        )
        .register_transaction(
            transaction!(browse)
                .set_name("browse")
                .set_weight(10)?
                .set_sequence(1),
        )
        .register_transaction(
            transaction!(product_page)
                .set_name("product")
                .set_weight(10)?
                .set_sequence(2),
        )
        .register_transaction(
            transaction!(search)
                .set_name("search")
                .set_weight(4)?
                .set_sequence(3),
        )
        .register_transaction(
            transaction!(add_to_cart)
                .set_name("add to cart")
                .set_weight(2)?
                .set_sequence(4),
        )
        .register_transaction(
            transaction!(view_cart)
                .set_name("view cart")
                .set_weight(3)?
                .set_sequence(5),
        )
        .register_transaction(transaction!(checkout).set_name("checkout").set_sequence(6))
        .register_transaction(
            transaction!(sign_in_and_consent)
                .set_name("sign in")
                .set_sequence(7),
        )
        .register_transaction(
            transaction!(clicks)
                .set_name("clicks")
                .set_weight(5)?
                .set_sequence(8),
        );
    // Rare: one visitor in nine, and slow (a long think time between the steps).
    let privacy = scenario!("privacy")
        .set_weight(1)?
        .set_wait_time(max * 4, max * 8)?
        .register_transaction(
            transaction!(register_and_sign_in)
                .set_name("sign up")
                .set_sequence(1),
        )
        .register_transaction(transaction!(export).set_name("export").set_sequence(2))
        .register_transaction(transaction!(erase).set_name("erase").set_sequence(3));
    Ok(vec![browser, shopper, privacy])
}

/// The `trivial` profile's only visitor: the gateway's `/livez`, again and again, no think
/// time (the generator's own ceiling, against wrk on the same route).
pub fn trivial_scenario() -> Result<Scenario, GooseError> {
    Ok(scenario!("trivial").register_transaction(transaction!(livez).set_name("livez")))
}

async fn livez(user: &mut GooseUser) -> TransactionResult {
    send(user, LIVEZ, "/livez", |b| b).await?;
    Ok(())
}

fn custom(message: impl Into<String>) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(message.into()))
}

/// Sends `request` to `path`, built by `build` from goose's builder (headers, body).
async fn send(
    user: &mut GooseUser,
    request: Request,
    path: &str,
    build: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> Result<GooseResponse, Box<TransactionError>> {
    let method = request.goose_method();
    let builder = build(user.get_request_builder(&method, path)?);
    let goose_request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(request.name)
        .set_request_builder(builder)
        .build();
    user.request(goose_request).await
}

/// The JSON body of a successful answer; anything else fails the request (goose already
/// counted a non-2xx status as a failure).
async fn json_of(
    user: &mut GooseUser,
    mut goose: GooseResponse,
) -> Result<Value, Box<TransactionError>> {
    let response = match goose.response {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            let status = response.status();
            return Err(custom(format!("{} answered {status}", goose.request.name)));
        }
        Err(error) => return Err(custom(format!("{}: {error}", goose.request.name))),
    };
    match response.json::<Value>().await {
        Ok(value) => Ok(value),
        Err(error) => {
            user.set_failure(
                &format!("not JSON: {error}"),
                &mut goose.request,
                None,
                None,
            )?;
            Err(custom("not JSON"))
        }
    }
}

/// `answer[key]` as text; its absence fails the journey, naming `what` answered without it.
fn text(answer: &Value, key: &str, what: &str) -> Result<String, Box<TransactionError>> {
    answer[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| custom(format!("the {what} gave no {key}")))
}

fn session(user: &GooseUser) -> Result<&Session, Box<TransactionError>> {
    user.get_session_data::<Session>()
        .ok_or_else(|| custom("not signed in"))
}

fn bearer(user: &GooseUser) -> Result<String, Box<TransactionError>> {
    Ok(format!("Bearer {}", session(user)?.token))
}

async fn browse(user: &mut GooseUser) -> TransactionResult {
    let page = rand::rng().random_range(0..3) * 20;
    let category = {
        let catalogue = catalogue()?;
        (rand::rng().random_bool(0.3))
            .then(|| catalogue.categories.choose(&mut rand::rng()).cloned())
            .flatten()
    };
    let path = match category {
        Some(slug) => format!("/v1/products?category={slug}&limit=20"),
        None => format!("/v1/products?limit=20&offset={page}"),
    };
    send(user, PRODUCTS, &path, |b| b).await?;
    if rand::rng().random_bool(0.2) {
        send(user, CATEGORIES, "/v1/categories", |b| b).await?;
    }
    Ok(())
}

fn any_product() -> Result<String, Box<TransactionError>> {
    catalogue()?
        .products
        .choose(&mut rand::rng())
        .cloned()
        .ok_or_else(|| custom("no products"))
}

/// A batch of the visitor's last clicks, as a storefront sends them every few seconds.
fn click_batch() -> Result<Vec<Value>, Box<TransactionError>> {
    let now = time::OffsetDateTime::now_utc();
    let mut rng = rand::rng();
    (0..rng.random_range(3..=12))
        .map(|i| {
            let at = (now - time::Duration::milliseconds(500 * i))
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| custom(format!("time: {e}")))?;
            Ok(match rng.random_range(0..10) {
                0..=2 => json!({"type": "page-view", "at": at, "page": "category"}),
                3..=7 => json!({"type": "product-view", "at": at, "product_id": any_product()?}),
                8 => json!({"type": "search", "at": at, "results": rng.random_range(0..40)}),
                _ => json!({"type": "add-to-cart", "at": at, "product_id": any_product()?,
                            "quantity": rng.random_range(1..=3)}),
            })
        })
        .collect()
}

/// The click stream: anonymous under a session id for a browser, with the token for a
/// signed-in shopper (whose clicks analytics drops unless they consented).
async fn clicks(user: &mut GooseUser) -> TransactionResult {
    let events = click_batch()?;
    let auth = user
        .get_session_data::<Session>()
        .map(|session| format!("Bearer {}", session.token));
    let body = match &auth {
        Some(_) => json!({ "events": events }),
        None => json!({
            "session": format!("loadtest-session-{:08}", user.weighted_users_index),
            "events": events,
        }),
    };
    send(user, EVENTS, "/v1/events", |b| match auth {
        Some(auth) => b.header("authorization", auth).json(&body),
        None => b.json(&body),
    })
    .await?;
    Ok(())
}

async fn product_page(user: &mut GooseUser) -> TransactionResult {
    let id = any_product()?;
    send(user, PRODUCT, &format!("/v1/products/{id}"), |b| b).await?;
    send(user, STOCK, &format!("/v1/stock/{id}"), |b| b).await?;
    Ok(())
}

async fn search(user: &mut GooseUser) -> TransactionResult {
    let term = catalogue()?
        .terms
        .choose(&mut rand::rng())
        .cloned()
        .ok_or_else(|| custom("no search terms"))?;
    send(
        user,
        SEARCH,
        &format!("/v1/products?q={term}&limit=20"),
        |b| b,
    )
    .await?;
    Ok(())
}

/// Registers a new customer (202 whether or not the email was free) and signs in.
async fn register_and_sign_in(user: &mut GooseUser) -> TransactionResult {
    let email = format!("load-{}@loadtest.example", uuid::Uuid::new_v4().simple());
    let body = json!({ "email": email, "password": PASSWORD, "name": "Load Test Shopper" });
    send(user, REGISTER, "/v1/customers", |b| b.json(&body)).await?;
    user.set_session_data(Session {
        email,
        ..Session::default()
    });
    sign_in(user).await
}

async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let email = session(user)?.email.clone();
    let body = json!({ "email": email, "password": PASSWORD });
    let goose = send(user, SIGN_IN, "/v1/sessions", |b| b.json(&body)).await?;
    let answer = json_of(user, goose).await?;
    let token = text(&answer, "access_token", "sign-in")?;
    if let Some(session) = user.get_session_data_mut::<Session>() {
        session.token = token;
    }
    Ok(())
}

async fn sign_in_and_consent(user: &mut GooseUser) -> TransactionResult {
    sign_in(user).await?;
    let auth = bearer(user)?;
    let granted = rand::rng().random_bool(0.5);
    let purpose = if rand::rng().random_bool(0.5) {
        "analytics"
    } else {
        "marketing"
    };
    let body = json!({ "granted": granted });
    send(user, CONSENT, &format!("/v1/me/consents/{purpose}"), |b| {
        b.header("authorization", auth).json(&body)
    })
    .await?;
    Ok(())
}

async fn add_to_cart(user: &mut GooseUser) -> TransactionResult {
    let id = any_product()?;
    let auth = bearer(user)?;
    let body = json!({ "quantity": rand::rng().random_range(1..=3) });
    let goose = send(user, CART_LINE, &format!("/v1/cart/lines/{id}"), |b| {
        b.header("authorization", auth).json(&body)
    })
    .await?;
    if goose
        .response
        .as_ref()
        .is_ok_and(|r| r.status().is_success())
        && let Some(session) = user.get_session_data_mut::<Session>()
    {
        session.in_cart += 1;
    }
    Ok(())
}

async fn view_cart(user: &mut GooseUser) -> TransactionResult {
    let auth = bearer(user)?;
    send(user, CART, "/v1/cart", |b| b.header("authorization", auth)).await?;
    Ok(())
}

/// Checks out what is in the cart, then follows the order until the saga ends: confirmed,
/// or cancelled (a failure here: the generator pays with a card that works and the stock was
/// topped up, so a cancellation is the platform's).
async fn checkout(user: &mut GooseUser) -> TransactionResult {
    if session(user)?.in_cart == 0 {
        return Ok(());
    }
    let auth = bearer(user)?;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({ "payment_token": "tok_success" });
    let goose = send(user, CHECKOUT, "/v1/orders", |b| {
        b.header("authorization", &auth)
            .header("idempotency-key", key)
            .json(&body)
    })
    .await?;
    let order = json_of(user, goose).await?;
    if let Some(session) = user.get_session_data_mut::<Session>() {
        session.in_cart = 0;
    }
    let id = text(&order, "id", "checkout")?;
    let path = format!("/v1/orders/{id}");
    let ends = ["confirmed", "cancelled"];
    let status = follow(user, ORDER, &path, &auth, &ends, &["cancelled"]).await?;
    if status == "confirmed" {
        OUTCOMES.orders_confirmed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    } else {
        OUTCOMES.orders_cancelled.fetch_add(1, Ordering::Relaxed);
        Err(custom(format!("order {id} was cancelled")))
    }
}

/// Asks for the GDPR export and follows it until the archive is ready.
async fn export(user: &mut GooseUser) -> TransactionResult {
    let auth = bearer(user)?;
    let goose = send(user, EXPORT, "/v1/me/exports", |b| {
        b.header("authorization", &auth)
    })
    .await?;
    let accepted = json_of(user, goose).await?;
    let id = text(&accepted, "id", "export")?;
    let path = format!("/v1/me/exports/{id}");
    let ends = ["ready", "failed"];
    let status = follow(user, EXPORT_STATUS, &path, &auth, &ends, &["failed"]).await?;
    if status != "ready" {
        return Err(custom(format!("export {id} {status}")));
    }
    OUTCOMES.exports_ready.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Erases the customer and follows the erasure until every service confirmed it.
async fn erase(user: &mut GooseUser) -> TransactionResult {
    let auth = bearer(user)?;
    let body = json!({ "password": PASSWORD });
    let goose = send(user, ERASE, "/v1/me", |b| {
        b.header("authorization", &auth).json(&body)
    })
    .await?;
    let accepted = json_of(user, goose).await?;
    let id = text(&accepted, "id", "erasure")?;
    let path = format!("/v1/erasures/{id}");
    follow(user, ERASURE_STATUS, &path, "", &["complete"], &[]).await?;
    OUTCOMES.erasures_complete.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads `path` until its `status` is one of `ends` (returned), for at most `FOLLOW_FOR`. The
/// last read is marked failed when the flow ended in one of `failures` or did not end in time,
/// so the run's error rate counts it (the smoke gate allows none).
async fn follow(
    user: &mut GooseUser,
    request: Request,
    path: &str,
    auth: &str,
    ends: &[&str],
    failures: &[&str],
) -> Result<String, Box<TransactionError>> {
    let started = Instant::now();
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let auth = auth.to_owned();
        let goose = send(user, request, path, |b| {
            if auth.is_empty() {
                b
            } else {
                b.header("authorization", auth)
            }
        })
        .await?;
        let mut metric = goose.request.clone();
        let answer = json_of(user, goose).await?;
        let status = answer["status"].as_str().unwrap_or_default().to_owned();
        let ended = ends.contains(&status.as_str());
        let late = !ended && started.elapsed() > FOLLOW_FOR;
        if late || failures.contains(&status.as_str()) {
            let why = format!("{path} ended {status:?} (after {:?})", started.elapsed());
            // set_failure records the failure and answers it as an error, which is ours too.
            let _recorded = user.set_failure(&why, &mut metric, None, None);
            if late {
                return Err(custom(why));
            }
        }
        if ended {
            return Ok(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_named_once_by_a_route_template() {
        for (i, a) in REQUESTS.iter().enumerate() {
            assert!(a.name.starts_with("/v1/"), "{a:?}");
            for b in &REQUESTS[i + 1..] {
                assert!((a.method, a.name) != (b.method, b.name), "{a:?} twice");
            }
        }
        assert_eq!(SEARCH.path(), "/v1/products");
        assert_eq!(PRODUCT.path(), "/v1/products/{id}");
    }

    #[test]
    fn the_scenarios_have_the_weights_of_a_shoppers_visit() {
        let scenarios =
            scenarios((Duration::from_millis(10), Duration::from_millis(20))).expect("scenarios");
        let names: Vec<&str> = scenarios.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["browser", "shopper", "privacy"]);
        let shopper = &scenarios[1];
        let weights: Vec<(String, usize)> = shopper
            .transactions
            .iter()
            .map(|t| (t.name.name_for_transaction().to_owned(), t.weight))
            .collect();
        for (name, weight) in [
            ("browse", 10),
            ("product", 10),
            ("search", 4),
            ("add to cart", 2),
            ("view cart", 3),
            ("checkout", 1),
            ("sign in", 1),
        ] {
            assert!(
                weights.contains(&(name.to_owned(), weight)),
                "{name} ×{weight} missing from {weights:?}"
            );
        }
        assert!(scenarios[2].weight < shopper.weight);
    }

    #[test]
    fn an_empty_catalogue_is_refused() {
        let empty = Catalogue {
            products: Vec::new(),
            categories: Vec::new(),
            terms: Vec::new(),
        };
        assert!(use_catalogue(empty).is_err());
    }
}
