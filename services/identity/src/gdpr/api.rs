//! Routes of the GDPR flows.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /v1/me/exports` | access token | 202, `Location: /v1/me/exports/{id}`; a pending export is returned rather than a second one started |
//! | `GET /v1/me/exports/{id}` | access token, the export's subject only | 200 status (`pending` with who answered, `ready` with `download`, `failed`); 410 once expired |
//! | `GET /v1/me/exports/{id}/archive` | the same | 200 `application/json` attachment; 409 while pending; 410 once expired |
//! | `DELETE /v1/me` | access token + `{"password"}` | 202, `Location: /v1/erasures/{request_id}` |
//! | `GET /v1/erasures/{request_id}` | the request id (random UUIDv4) | 200 status, no personal data |
//!
//! Ids that do not parse get the same 404 as unknown ones; another customer's export is a
//! 404 too, never a 403 (which would confirm it exists).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as AxumJson, Router};
use comptoir_auth::Subject;
use comptoir_platform::{Json, Problem};
use comptoir_privacy::Pii;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::export::{self, Requested};
use super::{erasure, store};
use crate::AppState;
use crate::domain::Password;
use crate::error::{client_ip, invalid_credentials, problem, too_many};
use crate::limits::{count_failure, lockout, login_key};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/me/exports", post(request_export))
        .route("/v1/me/exports/{id}", get(export_status))
        .route("/v1/me/exports/{id}/archive", get(export_archive))
        .route("/v1/erasures/{request_id}", get(erasure_status))
        .with_state(state)
}

/// What `POST /v1/me/exports` and `DELETE /v1/me` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The export id or the erasure request id.
    pub id: Uuid,
    pub status: String,
    /// Where to follow it (also in `Location`).
    pub status_url: String,
}

fn accepted(id: Uuid, status_url: String) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        AxumJson(Accepted {
            id,
            status: "pending".to_owned(),
            status_url: status_url.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Ask for a copy of everything Comptoir holds about you (GDPR Art. 15 and 20).
///
/// Every service holding customer data is asked for its part over Pulsar; the export is
/// ready once all have answered. While one is pending, asking again returns that one.
#[utoipa::path(post, path = "/v1/me/exports", tag = "privacy", security(("bearer" = [])),
    responses((status = 202, body = Accepted, headers(("Location" = String))),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn request_export(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    let id = match export::request(&state.pool, &state.gdpr, subject.customer_id)
        .await
        .map_err(problem)?
    {
        Requested::Created(id) | Requested::AlreadyPending(id) => id,
        Requested::NoCustomer => return Err(Problem::not_found("customer")),
    };
    Ok(accepted(id, format!("/v1/me/exports/{id}")))
}

/// A participant's answer to an export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceAnswer {
    pub service: String,
    /// When its slice arrived; absent while it has not answered.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub answered_at: Option<OffsetDateTime>,
}

/// The state of an export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportStatus {
    pub id: Uuid,
    /// `pending`, `ready` or `failed`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub completed_at: Option<OffsetDateTime>,
    /// When the archive will be deleted (ready exports).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    /// Who must answer, and who has. Identity's own part is added when the archive is made.
    pub services: Vec<ServiceAnswer>,
    /// The archive (`application/json`), once ready.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub download: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub archive_bytes: Option<i32>,
    /// Why it failed (`archive-too-large`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<String>,
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found(what))
}

fn gone() -> Problem {
    Problem::typed(
        StatusCode::GONE,
        "export-expired",
        "This export has expired",
    )
    .with_detail("Its archive was deleted; ask for a new export")
}

fn expired(job: &store::ExportJob) -> bool {
    job.status == "expired"
        || (job.status == "ready"
            && job
                .expires_at
                .is_some_and(|at| at <= OffsetDateTime::now_utc()))
}

/// The state of one of your exports.
#[utoipa::path(get, path = "/v1/me/exports/{id}", tag = "privacy", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The export id")),
    responses((status = 200, body = ExportStatus), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 410, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn export_status(
    subject: Subject,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "export")?;
    let job = store::export_of(&state.pool, id, subject.customer_id)
        .await
        .map_err(problem)?
        .ok_or_else(|| Problem::not_found("export"))?;
    if expired(&job) {
        return Err(gone());
    }
    let answered = store::answered(&state.pool, id).await.map_err(problem)?;
    let services = job
        .services
        .iter()
        .map(|service| ServiceAnswer {
            service: service.clone(),
            answered_at: answered
                .iter()
                .find(|(s, _)| s == service)
                .map(|(_, at)| *at),
        })
        .collect();
    let ready = job.status == "ready";
    Ok(no_store(
        AxumJson(ExportStatus {
            id,
            status: job.status,
            requested_at: job.requested_at,
            completed_at: job.completed_at,
            expires_at: job.expires_at,
            services,
            download: ready.then(|| format!("/v1/me/exports/{id}/archive")),
            archive_bytes: job.archive_bytes.filter(|_| ready),
            failure: job.failure,
        })
        .into_response(),
    ))
}

/// Download the archive of a ready export: one JSON document, identity's part and every
/// service's.
#[utoipa::path(get, path = "/v1/me/exports/{id}/archive", tag = "privacy", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The export id")),
    responses((status = 200, content_type = "application/json", description = "The archive"),
              (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 410, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn export_archive(
    subject: Subject,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "export")?;
    let customer = subject.customer_id;
    let job = store::export_of(&state.pool, id, customer)
        .await
        .map_err(problem)?
        .ok_or_else(|| Problem::not_found("export"))?;
    if expired(&job) {
        return Err(gone());
    }
    if job.status != "ready" {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "export-not-ready",
            "This export has no archive",
        )
        .with_detail(format!(
            "Its status is {}: see /v1/me/exports/{id}",
            job.status
        )));
    }
    let Some(archive) = export::archive(&state.pool, &state.gdpr, id, customer)
        .await
        .map_err(problem)?
    else {
        // Expired between the two reads.
        return Err(gone());
    };
    tracing::info!(request_id = %id, "Export archive downloaded");
    let disposition = format!("attachment; filename=\"comptoir-export-{id}.json\"");
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        archive,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(no_store(response))
}

/// `DELETE /v1/me` body: the current password, to be sure the account holder asks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureInput {
    #[schema(value_type = String, format = Password)]
    pub password: Pii<String>,
}

/// Erase your account and every personal data Comptoir holds about you (GDPR Art. 17).
///
/// Needs the current password. Identity deletes your data at once (you cannot sign in
/// afterwards); every other service is told to and confirms. Follow the request at
/// `status_url`: keep it, it is the only way to read the status.
#[utoipa::path(delete, path = "/v1/me", tag = "privacy", security(("bearer" = [])),
    request_body = ErasureInput,
    responses((status = 202, body = Accepted, headers(("Location" = String))),
              (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 429, body = Problem), (status = 503, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn erase_me(
    subject: Subject,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<ErasureInput>,
) -> Result<Response, Problem> {
    let client = client_ip(&state, peer, &headers);
    if let Err(wait) = state.limiter.check_ip(client) {
        return Ok(too_many("rate-limited", "Too many requests", wait));
    }
    let customer = subject.customer_id;
    let Some((email_index, hash)) = store::credentials_of(&state.pool, customer)
        .await
        .map_err(problem)?
    else {
        return Err(Problem::not_found("customer"));
    };
    // Re-authentication counts like a sign-in: same per-email rate, same lockout (per email
    // and client, so nobody else can lock the owner out of their erasure).
    if let Err(wait) = state.limiter.check_email(email_index) {
        return Ok(too_many("rate-limited", "Too many requests", wait));
    }
    let key = login_key(&state, email_index, client);
    if let Some(locked) = lockout(&state, &key).await? {
        return Ok(locked);
    }
    let password = Password::presented(input.password.expose());
    if !state
        .hasher
        .verify(&password, Some(hash))
        .await
        .map_err(problem)?
    {
        metrics::counter!("identity_reauthentications_total", "outcome" => "failure").increment(1);
        count_failure(&state, &key).await?;
        return Err(invalid_credentials());
    }
    metrics::counter!("identity_reauthentications_total", "outcome" => "success").increment(1);
    match erasure::request(&state.pool, &state.gdpr, customer)
        .await
        .map_err(problem)?
    {
        Some(id) => Ok(accepted(id, format!("/v1/erasures/{id}"))),
        None => Err(Problem::not_found("customer")),
    }
}

/// A participant's confirmation of an erasure.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceConfirmation {
    pub service: String,
    /// Absent while it has not confirmed.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub confirmed_at: Option<OffsetDateTime>,
}

/// The state of an erasure request. Holds no personal data, not even the customer id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureStatus {
    pub request_id: Uuid,
    /// `pending` until every service confirmed, then `complete`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub completed_at: Option<OffsetDateTime>,
    pub services: Vec<ServiceConfirmation>,
}

/// The state of an erasure request.
///
/// No access token: the subject cannot sign in any more. The request id, random (UUIDv4,
/// 122 bits) and given only to the subject, is the capability.
#[utoipa::path(get, path = "/v1/erasures/{request_id}", tag = "privacy",
    params(("request_id" = Uuid, Path, description = "The erasure request id")),
    responses((status = 200, body = ErasureStatus), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn erasure_status(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&request_id, "erasure request")?;
    let (request, confirmed) = store::erasure_status(&state.pool, id)
        .await
        .map_err(problem)?
        .ok_or_else(|| Problem::not_found("erasure request"))?;
    let services = request
        .services
        .iter()
        .map(|service| ServiceConfirmation {
            service: service.clone(),
            confirmed_at: confirmed
                .iter()
                .find(|(s, _)| s == service)
                .map(|(_, at)| *at),
        })
        .collect();
    Ok(no_store(
        AxumJson(ErasureStatus {
            request_id: id,
            status: if request.completed_at.is_some() {
                "complete"
            } else {
                "pending"
            }
            .to_owned(),
            requested_at: request.requested_at,
            completed_at: request.completed_at,
            services,
        })
        .into_response(),
    ))
}
