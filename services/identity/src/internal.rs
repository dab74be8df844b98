//! `/internal`: the one way another service reads personal data (docs/architecture.md §5).
//!
//! `POST /internal/v1/customers/{id}/pii` with `Authorization: Bearer <client token>` and
//! `{"purpose": "...", "fields": ["email", ...]}`. The client is recognised by its token
//! (one per service, read from a file); it gets the fields only for a purpose it was
//! configured with, and only the fields configured for that purpose (data minimisation: the
//! notifications service may read an email to confirm an order, not the phone number).
//! Every read — granted, or asked for a customer who does not exist — is written to
//! `pii_access_log` before anything is answered, and shows in the subject's GDPR export.
//! A refused request is counted (`identity_pii_refusals_total{reason}`) and logged without
//! what it claimed, but never stored against the subject: an unauthenticated caller must not
//! be able to write its own strings into someone's export, or grow that table without end.
//! The gateway never routes `/internal`: only services inside the cluster network reach it
//! (NetworkPolicy).

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json as AxumJson, Router};
use comptoir_platform::{FieldError, Json, Problem};
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::repo::{self, PiiAccess, RepoError};
use crate::{AppState, InternalClient, vault};

/// Fields a client may ask for.
pub const FIELDS: [&str; 4] = ["email", "name", "phone", "addresses"];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/customers/{id}/pii", post(resolve_pii))
        .with_state(state)
}

/// What a client asks for and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiRequest {
    pub purpose: String,
    pub fields: Vec<String>,
}

/// The fields asked for; absent ones were not asked for or the customer has none.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PiiResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<crate::domain::Address>>,
}

fn identify<'a>(clients: &'a [InternalClient], headers: &HeaderMap) -> Option<&'a InternalClient> {
    let presented = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    // Every configured token is compared, in constant time, whatever matches first.
    clients.iter().fold(None, |found, client| {
        let matches = constant_time_eq::constant_time_eq(
            presented.as_bytes(),
            client.token.expose().as_bytes(),
        );
        if matches { Some(client) } else { found }
    })
}

/// A declared purpose as stored in the log: what the client said, bounded and printable.
fn loggable(purpose: &str) -> String {
    purpose
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn forbidden(detail: &str) -> Problem {
    Problem::typed(
        StatusCode::FORBIDDEN,
        "pii-access-refused",
        "PII access refused",
    )
    .with_detail(detail)
}

fn internal(error: impl Into<crate::error::ApiError>) -> Problem {
    Problem::from(error.into())
}

/// Resolve a customer's personal data for a declared purpose (service-to-service only).
#[tracing::instrument(skip_all, fields(customer_id = %id))]
pub async fn resolve_pii(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(request): Json<PiiRequest>,
) -> Result<AxumJson<PiiResponse>, Problem> {
    let client = identify(&state.keys.clients, &headers);
    let purpose = loggable(&request.purpose);
    let fields: Vec<String> = request
        .fields
        .iter()
        .map(|f| loggable(f))
        .take(16)
        .collect();
    let unknown_fields = fields.is_empty() || fields.iter().any(|f| !FIELDS.contains(&f.as_str()));
    let refusal = match client.map(|c| (c, c.purposes.get(&request.purpose))) {
        None => Some("client"),
        Some((_, None)) => Some("purpose"),
        Some(_) if unknown_fields => Some("fields"),
        Some((_, Some(allowed))) if fields.iter().any(|f| !allowed.contains(f)) => {
            Some("fields-not-allowed")
        }
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        // Counted and logged with the client's configured name only: nothing the caller
        // wrote is kept, and nothing lands in the subject's record.
        metrics::counter!("identity_pii_refusals_total", "reason" => reason).increment(1);
        tracing::warn!(
            client = client.map_or("unknown", |c| c.name.as_str()),
            reason,
            "PII request refused"
        );
        return Err(match reason {
            "client" => forbidden("Unknown client"),
            "purpose" => forbidden("This client may not declare that purpose"),
            "fields-not-allowed" => forbidden("That purpose does not allow these fields"),
            _ => Problem::validation(vec![FieldError::new(
                "fields",
                format!("must list one or more of {}", FIELDS.join(", ")),
            )]),
        });
    }
    let Some(client) = client else {
        return Err(forbidden("Unknown client"));
    };
    let client_name = client.name.as_str();
    let log = |outcome: &'static str| PiiAccess {
        client: client_name,
        subject: id,
        purpose: &purpose,
        fields: &fields,
        outcome,
    };
    tracing::info!(client = client_name, purpose = %purpose, "PII requested");
    let stored = match repo::load_customer(&state.pool, id).await {
        Ok(stored) => stored,
        Err(RepoError::NotFound) => {
            repo::log_pii_access(&state.pool, &log("not-found"))
                .await
                .map_err(internal)?;
            return Err(Problem::not_found("customer"));
        }
        Err(error) => return Err(internal(error)),
    };
    let key =
        vault::open_subject_key(&state.keys.keyring, id, &stored.wrapped_key).map_err(internal)?;
    let profile = vault::open(&key, id, &stored.sealed).map_err(internal)?;
    // Logged before the answer leaves: no read goes unaudited.
    repo::log_pii_access(&state.pool, &log("granted"))
        .await
        .map_err(internal)?;
    metrics::counter!("identity_pii_resolutions_total", "client" => client_name.to_owned())
        .increment(1);
    let wants = |field: &str| fields.iter().any(|f| f == field);
    Ok(AxumJson(PiiResponse {
        email: wants("email").then(|| profile.email.expose().to_owned()),
        name: wants("name").then(|| profile.name.expose().clone()),
        phone: if wants("phone") {
            profile.phone.map(|p| p.into_inner())
        } else {
            None
        },
        addresses: wants("addresses").then(|| profile.addresses.into_inner()),
    }))
}
