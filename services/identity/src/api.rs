//! Public routes of identity and their OpenAPI description. Errors become problem+json in
//! one place ([`crate::error`]); personal data never appears in a log line, an error or a span
//! (handlers are instrumented with `skip_all`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json as AxumJson, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comptoir_auth::{Claims, Subject};
use comptoir_platform::openapi::{BearerScheme, Contract};
use comptoir_platform::{FieldError, Json, Problem};
use comptoir_privacy::Pii;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{
    Address, Email, Password, Profile, ProfilePatch, ProfileView, RegistrationInput,
};
use crate::error::{client_ip, invalid_credentials, problem, too_many};
use crate::limits::{count_failure, lockout, login_key};
use crate::repo::{self, Refresh};
use crate::vault::{self};

/// Consent purposes a customer can grant or withdraw.
pub const PURPOSES: [&str; 2] = ["marketing", "analytics"];

/// The public routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/customers", post(register))
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/refresh", post(refresh))
        .route("/v1/sessions/current", axum::routing::delete(logout))
        .route(
            "/v1/me",
            get(get_me)
                .patch(patch_me)
                .delete(crate::gdpr::api::erase_me),
        )
        .route("/v1/me/consents", get(get_consents))
        .route("/v1/me/consents/history", get(get_consent_history))
        .route("/v1/me/consents/{purpose}", put(put_consent))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

/// What registration answers, whether the email was free or taken (see the ADR: telling
/// them apart would let anyone test which emails are customers).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegistrationAccepted {
    pub status: String,
    pub message: String,
}

/// Register a customer.
///
/// Answers 202 the same way whether or not the email is already registered, so the route
/// cannot be used to learn who is a customer. Sign in to continue.
#[utoipa::path(post, path = "/v1/customers", tag = "customer", request_body = RegistrationInput,
    responses((status = 202, body = RegistrationAccepted), (status = 400, body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem),
              (status = 503, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<RegistrationInput>,
) -> Result<Response, Problem> {
    if let Err(wait) = state.limiter.check_ip(client_ip(&state, peer, &headers)) {
        return Ok(too_many("rate-limited", "Too many requests", wait));
    }
    let registration = input.parse().map_err(Problem::validation)?;
    // Hashed before the duplicate check, so a taken email costs the same time as a free one.
    let password_hash = state
        .hasher
        .hash(&registration.password)
        .await
        .map_err(problem)?;
    let id = Uuid::now_v7();
    let keyring = &state.keys.keyring;
    let (data_key, wrapped) = vault::new_subject_key(keyring, id);
    let sealed = vault::seal(&data_key, id, &registration.profile);
    let email_index = vault::email_index(&state.keys.blind_index, &registration.profile.email);
    let inserted = repo::insert_customer(
        &state.pool,
        &repo::NewCustomer {
            id,
            email_index,
            password_hash: &password_hash,
            sealed: &sealed,
            kek_id: wrapped.kek_id(),
            wrapped_key: wrapped.to_bytes(),
        },
    )
    .await
    .map_err(problem)?;
    if inserted {
        metrics::counter!("identity_registrations_total").increment(1);
        tracing::info!(customer_id = %id, "Customer registered");
    } else {
        // The owner of the address will be told by email once notifications exist; the
        // caller learns nothing.
        tracing::info!("Registration for an email already registered; answered as usual");
    }
    let body = RegistrationAccepted {
        status: "accepted".to_owned(),
        message: "If this email can be used, the account is ready: sign in with it.".to_owned(),
    };
    Ok((StatusCode::ACCEPTED, AxumJson(body)).into_response())
}

/// `POST /v1/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    #[schema(value_type = String)]
    pub email: Pii<String>,
    #[schema(value_type = String, format = Password)]
    pub password: Pii<String>,
}

/// Tokens handed to a client after sign-in or refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: each refresh returns a new one. Reusing a spent one ends the session.
    pub refresh_token: String,
}

fn new_refresh_token() -> (String, [u8; 32]) {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator failed");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

fn hash_refresh_token(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn tokens(
    state: &AppState,
    customer: Uuid,
    session: Uuid,
    refresh_token: String,
) -> Result<TokenResponse, Problem> {
    let ttl = state.tokens.access_ttl_secs;
    let claims = Claims::new(
        &state.tokens.issuer,
        &state.tokens.audience,
        customer,
        "customer",
        Duration::from_secs(ttl),
        Some(session),
    );
    let access_token = state.keys.signer.issue(&claims).map_err(problem)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: ttl,
        refresh_token,
    })
}

/// When a refresh token issued now expires: its TTL, and never past a new session's
/// absolute lifetime (a rotation also caps it at the session's own end).
fn refresh_expiry(state: &AppState) -> OffsetDateTime {
    let secs = state
        .tokens
        .refresh_ttl_secs
        .min(state.tokens.session_max_age_secs);
    OffsetDateTime::now_utc() + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

/// Sign in.
///
/// A wrong password and an unknown email get the same 401, in about the same time. After
/// too many consecutive failures for one email from one client, that client's sign-ins for
/// it get 429 for a while, whether or not a customer has it; the owner signing in from
/// elsewhere is not locked out. 503 with `Retry-After` when every password check slot is busy.
#[utoipa::path(post, path = "/v1/sessions", tag = "customer", request_body = LoginInput,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem),
              (status = 422, body = Problem), (status = 429, body = Problem),
              (status = 503, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<LoginInput>,
) -> Result<Response, Problem> {
    let client = client_ip(&state, peer, &headers);
    if let Err(wait) = state.limiter.check_ip(client) {
        return Ok(too_many("rate-limited", "Too many requests", wait));
    }
    // A string that is no email cannot be anyone's: same answer as a wrong password.
    let password = Password::presented(input.password.expose());
    let Ok(email) = Email::parse(input.email.expose()) else {
        state
            .hasher
            .verify(&password, None)
            .await
            .map_err(problem)?;
        return Err(invalid_credentials());
    };
    let email_index = vault::email_index(&state.keys.blind_index, &email);
    if let Err(wait) = state.limiter.check_email(email_index) {
        return Ok(too_many("rate-limited", "Too many requests", wait));
    }
    let key = login_key(&state, email_index, client);
    if let Some(locked) = lockout(&state, &key).await? {
        return Ok(locked);
    }
    let found = repo::find_credentials(&state.pool, &email_index)
        .await
        .map_err(problem)?;
    let (customer, stored) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let verified = state
        .hasher
        .verify(&password, stored.clone())
        .await
        .map_err(problem)?;
    let Some(customer) = customer.filter(|_| verified) else {
        metrics::counter!("identity_logins_total", "outcome" => "failure").increment(1);
        count_failure(&state, &key).await?;
        return Err(invalid_credentials());
    };
    repo::clear_login_failures(&state.pool, &key)
        .await
        .map_err(problem)?;
    // Made with older parameters: replace it now that the password is at hand, so a raise of
    // the parameters reaches this account (and its sign-ins cost what an unknown email's do).
    if stored
        .as_deref()
        .is_some_and(|hash| state.hasher.needs_rehash(hash))
    {
        let fresh = state.hasher.hash(&password).await.map_err(problem)?;
        repo::update_password_hash(&state.pool, customer, &fresh)
            .await
            .map_err(problem)?;
        metrics::counter!("identity_password_rehashes_total").increment(1);
        tracing::info!(customer_id = %customer, "Password rehashed with the current parameters");
    }
    let (refresh_token, refresh_hash) = new_refresh_token();
    let session =
        repo::create_session(&state.pool, customer, &refresh_hash, refresh_expiry(&state))
            .await
            .map_err(problem)?;
    metrics::counter!("identity_logins_total", "outcome" => "success").increment(1);
    tracing::info!(customer_id = %customer, session_id = %session, "Signed in");
    Ok(AxumJson(tokens(&state, customer, session, refresh_token)?).into_response())
}

/// `POST /v1/sessions/refresh` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    pub refresh_token: String,
}

fn invalid_refresh() -> Problem {
    Problem::typed(
        StatusCode::UNAUTHORIZED,
        "invalid-refresh-token",
        "The refresh token is not valid",
    )
    .with_detail("Sign in again")
}

/// Exchange a refresh token for new tokens.
///
/// The refresh token is spent: the response carries its successor. Presenting a spent one
/// again means a copy exists somewhere, so the whole session is revoked.
#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "customer", request_body = RefreshInput,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    State(state): State<AppState>,
    Json(input): Json<RefreshInput>,
) -> Result<AxumJson<TokenResponse>, Problem> {
    if input.refresh_token.len() > 256 {
        return Err(invalid_refresh());
    }
    let presented = hash_refresh_token(&input.refresh_token);
    let (next, next_hash) = new_refresh_token();
    let max_age = Duration::from_secs(state.tokens.session_max_age_secs);
    match repo::rotate_refresh_token(
        &state.pool,
        &presented,
        &next_hash,
        refresh_expiry(&state),
        max_age,
    )
    .await
    .map_err(problem)?
    {
        Refresh::Rotated { customer, session } => {
            Ok(AxumJson(tokens(&state, customer, session, next)?))
        }
        Refresh::ReuseDetected { session } => {
            metrics::counter!("identity_refresh_reuse_total").increment(1);
            tracing::warn!(session_id = %session, "Refresh token reused; session revoked");
            Err(invalid_refresh())
        }
        Refresh::Refused => Err(invalid_refresh()),
    }
}

/// Sign out: revoke the session of the access token (its refresh tokens stop working; the
/// access token itself expires within minutes).
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "customer", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn logout(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<StatusCode, Problem> {
    if let Some(session) = subject.claims.sid {
        repo::revoke_session(&state.pool, subject.customer_id, session)
            .await
            .map_err(problem)?;
        tracing::info!(session_id = %session, "Signed out");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn load_profile(
    state: &AppState,
    customer: Uuid,
) -> Result<(Profile, repo::StoredCustomer), Problem> {
    let stored = repo::load_customer(&state.pool, customer)
        .await
        .map_err(problem)?;
    let key = vault::open_subject_key(&state.keys.keyring, customer, &stored.wrapped_key)
        .map_err(problem)?;
    let profile = vault::open(&key, customer, &stored.sealed).map_err(problem)?;
    Ok((profile, stored))
}

fn view(customer: Uuid, profile: Profile, created_at: OffsetDateTime) -> ProfileView {
    ProfileView {
        id: customer,
        email: profile.email.expose().to_owned(),
        name: profile.name.into_inner(),
        phone: profile.phone.map(Pii::into_inner),
        addresses: profile.addresses.into_inner(),
        created_at,
    }
}

/// The signed-in customer's profile.
#[utoipa::path(get, path = "/v1/me", tag = "customer", security(("bearer" = [])),
    responses((status = 200, body = ProfileView), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn get_me(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<AxumJson<ProfileView>, Problem> {
    let (profile, stored) = load_profile(&state, subject.customer_id).await?;
    Ok(AxumJson(view(
        subject.customer_id,
        profile,
        stored.created_at,
    )))
}

/// Change the signed-in customer's name, phone or addresses.
#[utoipa::path(patch, path = "/v1/me", tag = "customer", security(("bearer" = [])), request_body = ProfilePatch,
    responses((status = 200, body = ProfileView), (status = 401, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn patch_me(
    subject: Subject,
    State(state): State<AppState>,
    Json(patch): Json<ProfilePatch>,
) -> Result<AxumJson<ProfileView>, Problem> {
    let customer = subject.customer_id;
    let (profile, stored) = load_profile(&state, customer).await?;
    let profile = patch.apply(profile).map_err(Problem::validation)?;
    let key = vault::open_subject_key(&state.keys.keyring, customer, &stored.wrapped_key)
        .map_err(problem)?;
    let sealed = vault::seal(&key, customer, &profile);
    if !repo::update_profile(&state.pool, customer, stored.version, &sealed)
        .await
        .map_err(problem)?
    {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "version-conflict",
            "The profile changed meanwhile",
        )
        .with_detail("Fetch it again and retry"));
    }
    tracing::info!("Profile updated");
    Ok(AxumJson(view(customer, profile, stored.created_at)))
}

/// A consent and when it was last set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    pub purpose: String,
    pub granted: bool,
    /// Absent when never set (not granted).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub updated_at: Option<OffsetDateTime>,
}

/// `PUT /v1/me/consents/{purpose}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub granted: bool,
}

/// One change of a consent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsentChange {
    pub purpose: String,
    pub granted: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// The signed-in customer's consent for every purpose.
#[utoipa::path(get, path = "/v1/me/consents", tag = "customer", security(("bearer" = [])),
    responses((status = 200, body = Vec<Consent>), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn get_consents(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<AxumJson<Vec<Consent>>, Problem> {
    repo::ensure_customer(&state.pool, subject.customer_id)
        .await
        .map_err(problem)?;
    let stored = repo::consents(&state.pool, subject.customer_id)
        .await
        .map_err(problem)?;
    Ok(AxumJson(
        PURPOSES
            .iter()
            .map(|purpose| {
                let found = stored.iter().find(|(p, _, _)| p == purpose);
                Consent {
                    purpose: (*purpose).to_owned(),
                    granted: found.is_some_and(|(_, granted, _)| *granted),
                    updated_at: found.map(|(_, _, at)| *at),
                }
            })
            .collect(),
    ))
}

/// Grant or withdraw consent for a purpose (`marketing` or `analytics`).
#[utoipa::path(put, path = "/v1/me/consents/{purpose}", tag = "customer", security(("bearer" = [])),
    request_body = ConsentInput,
    responses((status = 200, body = Consent), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id, purpose = %purpose))]
pub async fn put_consent(
    subject: Subject,
    State(state): State<AppState>,
    Path(purpose): Path<String>,
    Json(input): Json<ConsentInput>,
) -> Result<AxumJson<Consent>, Problem> {
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(Problem::not_found("consent purpose"));
    }
    let at = repo::set_consent(
        &state.pool,
        &state.gdpr.consent_changes_topic,
        subject.customer_id,
        &purpose,
        input.granted,
    )
    .await
    .map_err(problem)?;
    tracing::info!(granted = input.granted, "Consent set");
    Ok(AxumJson(Consent {
        purpose,
        granted: input.granted,
        updated_at: Some(at),
    }))
}

/// Every change of the signed-in customer's consents, oldest first.
#[utoipa::path(get, path = "/v1/me/consents/history", tag = "customer", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConsentChange>), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(customer_id = %subject.customer_id))]
pub async fn get_consent_history(
    subject: Subject,
    State(state): State<AppState>,
) -> Result<AxumJson<Vec<ConsentChange>>, Problem> {
    repo::ensure_customer(&state.pool, subject.customer_id)
        .await
        .map_err(problem)?;
    let history = repo::consent_history(&state.pool, subject.customer_id)
        .await
        .map_err(problem)?;
    Ok(AxumJson(
        history
            .into_iter()
            .map(|(purpose, granted, recorded_at)| ConsentChange {
                purpose,
                granted,
                recorded_at,
            })
            .collect(),
    ))
}

/// The public keys access tokens are signed with (RFC 7517), for every verifier.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "JSON Web Key Set")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        // Verifiers cache it; a rotation is picked up on the first unknown kid anyway.
        [(header::CACHE_CONTROL, "public, max-age=300")],
        AxumJson(state.jwks.as_ref().clone()),
    )
        .into_response()
}

/// The customer's access token (a JWT signed by identity).
const CUSTOMER_TOKEN: BearerScheme = BearerScheme {
    name: "bearer",
    format: Some("JWT"),
};

/// Identity's OpenAPI 3.1 document (public routes; `/internal` is not part of it).
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir identity", description = "Customers, sessions, profiles and consents."),
    paths(register, login, refresh, logout, get_me, patch_me, get_consents, put_consent,
          get_consent_history, jwks, crate::gdpr::api::request_export,
          crate::gdpr::api::export_status, crate::gdpr::api::export_archive,
          crate::gdpr::api::erase_me, crate::gdpr::api::erasure_status),
    components(schemas(RegistrationInput, RegistrationAccepted, LoginInput, TokenResponse,
                       RefreshInput, ProfileView, ProfilePatch, Address, Consent, ConsentInput,
                       ConsentChange, Problem, FieldError, crate::gdpr::api::Accepted,
                       crate::gdpr::api::ExportStatus, crate::gdpr::api::ServiceAnswer,
                       crate::gdpr::api::ErasureInput, crate::gdpr::api::ErasureStatus,
                       crate::gdpr::api::ServiceConfirmation)),
    modifiers(&CUSTOMER_TOKEN, &Contract),
    tags((name = "customer", description = "Registration, sign-in and the customer's own data"),
         (name = "privacy", description = "GDPR: export (Art. 15, 20) and erasure (Art. 17)"),
         (name = "keys", description = "Token verification keys"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, hash_a) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a), hash_a);
        assert_ne!(hash_a.as_slice(), a.as_bytes());
    }

    #[test]
    fn the_openapi_document_lists_the_public_routes_only() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/v1/customers",
            "/v1/sessions",
            "/v1/me",
            "/v1/me/consents/{purpose}",
            "/v1/me/exports",
            "/v1/me/exports/{id}",
            "/v1/me/exports/{id}/archive",
            "/v1/erasures/{request_id}",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        assert!(!paths.keys().any(|p| p.starts_with("/internal")));
        assert!(paths["/v1/me"]["delete"].is_object(), "erasure");
    }
}
