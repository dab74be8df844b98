//! HTTP routes of the orders service and their OpenAPI description. Every route acts for the
//! customer proven by the access token ([`Subject`]); another customer's order is a 404, the
//! same answer as an order that does not exist. Errors become problem+json in [`crate::error`].

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json as AxumJson, Router};
use comptoir_auth::Subject;
use comptoir_platform::etag::{IfNoneMatch, etag};
use comptoir_platform::openapi::{BearerScheme, Contract};
use comptoir_platform::{FieldError, Json, Problem};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Cart, CartLineInput, CheckoutInput, Order, OrderPage};
use crate::error::idempotency_key;
use crate::repo::{self, NewOrder, RepoError};
use crate::saga::REASON_CUSTOMER;

/// The orders service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/cart", get(get_cart).delete(clear_cart))
        .route(
            "/v1/cart/lines/{product_id}",
            put(put_cart_line).delete(delete_cart_line),
        )
        .route("/v1/orders", get(list_orders).post(checkout))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/cancellation", post(cancel_order))
        .route("/v1/orders/{id}/refund", post(refund_order))
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

/// The shopper's cart, at current prices.
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("customer" = [])),
    responses((status = 200, body = Cart), (status = 401, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn get_cart(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<AxumJson<Cart>, Problem> {
    let client = state.pool.get().await.map_err(RepoError::from)?;
    Ok(AxumJson(repo::cart(&client, subject.customer_id).await?))
}

/// Sets how many units of a product the cart holds (adds the line if needed).
#[utoipa::path(put, path = "/v1/cart/lines/{product_id}", tag = "cart", security(("customer" = [])),
    request_body = CartLineInput,
    responses((status = 200, body = Cart), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, product_id = %product_id))]
pub async fn put_cart_line(
    subject: Subject,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
    Json(input): Json<CartLineInput>,
) -> Result<AxumJson<Cart>, Problem> {
    let quantity = input.parse().map_err(Problem::validation)?;
    let client = state.pool.get().await.map_err(RepoError::from)?;
    repo::set_cart_line(&client, subject.customer_id, product_id, quantity).await?;
    Ok(AxumJson(repo::cart(&client, subject.customer_id).await?))
}

/// Removes a product from the cart.
#[utoipa::path(delete, path = "/v1/cart/lines/{product_id}", tag = "cart", security(("customer" = [])),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, product_id = %product_id))]
pub async fn delete_cart_line(
    subject: Subject,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    let client = state.pool.get().await.map_err(RepoError::from)?;
    repo::remove_cart_line(&client, subject.customer_id, product_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Empties the cart.
#[utoipa::path(delete, path = "/v1/cart", tag = "cart", security(("customer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn clear_cart(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<StatusCode, Problem> {
    let client = state.pool.get().await.map_err(RepoError::from)?;
    repo::clear_cart(&client, subject.customer_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn accepted(order: Order, replayed: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, AxumJson(&order)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Checks out the cart: places an order at current prices and starts its saga. Answers 202
/// at once with the order's URL; the order moves on asynchronously (poll it). The same
/// `Idempotency-Key` with the same body answers the same order (`Idempotent-Replayed: true`),
/// never a second one; with another body, 422.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", security(("customer" = [])),
    request_body = CheckoutInput,
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,200}$",
        description = "A unique key per checkout (a UUID), 1–200 visible ASCII characters; retry with the same key")),
    responses((status = 202, body = Order, headers(("location" = String))), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, order_id))]
pub async fn checkout(
    subject: Subject,
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(input): Json<CheckoutInput>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let checkout = input.parse(key).map_err(Problem::validation)?;
    let customer = subject.customer_id;
    let mut client = state.pool.get().await.map_err(RepoError::from)?;
    let tx = client.transaction().await.map_err(RepoError::from)?;
    let id = Uuid::now_v7();
    if let Some(existing) = repo::claim_key(
        &tx,
        customer,
        &checkout.idempotency_key,
        &checkout.fingerprint,
        id,
    )
    .await?
    {
        let order = repo::order(&tx, customer, existing).await?;
        tx.commit().await.map_err(RepoError::from)?;
        tracing::Span::current().record("order_id", tracing::field::display(existing));
        return Ok(accepted(order, true));
    }
    let cart = repo::cart(&tx, customer).await?;
    repo::insert_order(
        &tx,
        &NewOrder {
            id,
            customer,
            cart: &cart,
            shipping_address_id: checkout.shipping_address_id,
            step_timeout_secs: state.saga.step_timeout.as_secs_f64(),
        },
    )
    .await?;
    state.saga.start(&tx, id, &checkout.payment_token).await?;
    repo::clear_cart(&tx, customer).await?;
    let order = repo::order(&tx, customer, id).await?;
    tx.commit().await.map_err(RepoError::from)?;
    state.relay_wake.notify_one();
    tracing::Span::current().record("order_id", tracing::field::display(id));
    tracing::info!(lines = order.lines.len(), "Order placed");
    Ok(accepted(order, false))
}

/// Query of the order history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
}

/// The customer's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", params(ListQuery), tag = "orders", security(("customer" = [])),
    responses((status = 200, body = OrderPage), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn list_orders(
    subject: Subject,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<AxumJson<OrderPage>, Problem> {
    let limit = query.limit.unwrap_or(20);
    let offset = query.offset.unwrap_or(0);
    let mut errors = Vec::new();
    if !(1..=100).contains(&limit) {
        errors.push(FieldError::new("limit", "must be between 1 and 100"));
    }
    if !(0..=100_000).contains(&offset) {
        errors.push(FieldError::new("offset", "must be between 0 and 100000"));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let client = state.pool.get().await.map_err(RepoError::from)?;
    let (items, total) = repo::orders(&client, subject.customer_id, limit, offset).await?;
    let next = offset + items.len() as i64;
    Ok(AxumJson(OrderPage {
        items,
        total,
        limit,
        offset,
        next_offset: (next < total).then_some(next),
    }))
}

/// One of the customer's orders, with its lines and the statuses it went through.
/// The `Prefer` header of a read that may wait for a change (RFC 7240 §4.3), for
/// `params(PreferWait)`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PreferWait {
    /// `wait=N`: with an `If-None-Match` naming the current ETag, answer as soon as the order
    /// changes, or `304` after N seconds (at most 4). Other preferences are ignored.
    #[param(rename = "Prefer")]
    pub prefer: Option<String>,
}

/// The longest wait granted: below the gateway's upstream timeout (5 s by default), so a
/// waiting request is answered by orders, not cut by the gateway.
pub const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// The `wait` preference of `Prefer` headers, capped at [`LONGEST_WAIT`]; none when absent
/// or not a number of seconds (an unknown preference is ignored, RFC 7240 §2).
pub fn preferred_wait(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            let value = value.trim().trim_matches('"');
            (name.trim().eq_ignore_ascii_case("wait")).then(|| value.parse::<u64>().ok())?
        })
        .next()
        .map(|seconds| std::time::Duration::from_secs(seconds).min(LONGEST_WAIT))
}

/// One of the customer's orders, with its lines and history; `ETag` is its version. With
/// `If-None-Match` naming that ETag the answer is `304`, at once, or, with `Prefer: wait=N`,
/// as soon as the order changes (then `200`) or after N seconds (`304`): a storefront waits
/// for the saga's end with one request at a time instead of polling.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("customer" = [])),
    params(IfNoneMatch, PreferWait),
    responses((status = 200, body = Order, headers(("etag" = String), ("preference-applied" = String))),
              (status = 304, description = "The order named by If-None-Match is still current (after the wait asked for, if any)",
               headers(("etag" = String), ("preference-applied" = String))),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, order_id = %id))]
pub async fn get_order(
    subject: Subject,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let wait = preferred_wait(&headers);
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    // Watching before the first read: a change committed between the read and the wait
    // still wakes it.
    let mut watch = state.changes.watch();
    loop {
        // The version alone while the client's copy is current; no connection held waiting.
        let version = {
            let client = state.pool.get().await.map_err(RepoError::from)?;
            repo::order_version(&client, subject.customer_id, id).await?
        };
        let current = comptoir_platform::etag::none_match(&headers, &etag(version));
        let mut response = if !current {
            let client = state.pool.get().await.map_err(RepoError::from)?;
            let (order, version) = repo::order_tagged(&client, subject.customer_id, id).await?;
            let mut response = AxumJson(order).into_response();
            response.headers_mut().insert(header::ETAG, etag(version));
            response
        } else if tokio::time::Instant::now() >= deadline {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(header::ETAG, etag(version));
            response
        } else {
            state.changes.changed(&mut watch, id, deadline).await;
            continue;
        };
        if let Some(wait) = wait
            && let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
        {
            response
                .headers_mut()
                .insert(HeaderName::from_static("preference-applied"), applied);
        }
        return Ok(response);
    }
}

/// Locks one of the customer's orders and runs `step` on it in one transaction.
async fn with_order<F>(
    state: &AppState,
    customer: Uuid,
    id: Uuid,
    step: F,
) -> Result<Response, Problem>
where
    F: for<'a> FnOnce(
        &'a deadpool_postgres::Transaction<'a>,
        &'a repo::SagaOrder,
    ) -> futures::future::BoxFuture<'a, Result<(), RepoError>>,
{
    let mut client = state.pool.get().await.map_err(RepoError::from)?;
    let tx = client.transaction().await.map_err(RepoError::from)?;
    let order = repo::lock_order(&tx, id, Some(customer))
        .await?
        .ok_or(RepoError::NotFound)?;
    step(&tx, &order).await?;
    let order = repo::order(&tx, customer, id).await?;
    tx.commit().await.map_err(RepoError::from)?;
    state.relay_wake.notify_one();
    Ok((StatusCode::ACCEPTED, AxumJson(order)).into_response())
}

/// Cancels an order before its payment is captured; what it held is given back.
#[utoipa::path(post, path = "/v1/orders/{id}/cancellation", tag = "orders", security(("customer" = [])),
    responses((status = 202, body = Order), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, order_id = %id))]
pub async fn cancel_order(
    subject: Subject,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let saga = state.saga.clone();
    with_order(&state, subject.customer_id, id, move |tx, order| {
        Box::pin(async move { saga.cancel(tx, order, REASON_CUSTOMER).await })
    })
    .await
}

/// Asks for a confirmed order's payment to be refunded.
#[utoipa::path(post, path = "/v1/orders/{id}/refund", tag = "orders", security(("customer" = [])),
    responses((status = 202, body = Order), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, order_id = %id))]
pub async fn refund_order(
    subject: Subject,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let saga = state.saga.clone();
    with_order(&state, subject.customer_id, id, move |tx, order| {
        Box::pin(async move { saga.request_refund(tx, order).await })
    })
    .await
}

/// The customer's access token (a JWT signed by identity).
const CUSTOMER_TOKEN: BearerScheme = BearerScheme {
    name: "customer",
    format: Some("JWT"),
};

/// The orders service's OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir orders", description = "Carts, checkout and order history."),
    paths(get_cart, put_cart_line, delete_cart_line, clear_cart, checkout, list_orders, get_order,
          cancel_order, refund_order),
    components(schemas(Cart, crate::domain::CartLine, CartLineInput, CheckoutInput, Order,
                       crate::domain::OrderLineView, crate::domain::HistoryEntry, OrderPage,
                       Problem, FieldError)),
    modifiers(&CUSTOMER_TOKEN, &Contract),
    tags((name = "cart", description = "The signed-in shopper's cart"),
         (name = "orders", description = "Checkout and the shopper's orders"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn the_wait_preference_is_read_capped_and_otherwise_ignored() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(preferred_wait(&prefer(&["wait=2"])), Some(secs(2)));
        assert_eq!(
            preferred_wait(&prefer(&["respond-async, WAIT = 3"])),
            Some(secs(3))
        );
        assert_eq!(
            preferred_wait(&prefer(&["return=minimal", "wait=\"1\";x=y"])),
            Some(secs(1))
        );
        assert_eq!(preferred_wait(&prefer(&["wait=86400"])), Some(LONGEST_WAIT));
        assert_eq!(preferred_wait(&prefer(&["wait=0"])), Some(secs(0)));
        for ignored in ["wait=-1", "wait=soon", "wait", "handling=lenient", ""] {
            assert_eq!(preferred_wait(&prefer(&[ignored])), None, "{ignored}");
        }
        assert_eq!(preferred_wait(&HeaderMap::new()), None);
    }
}
