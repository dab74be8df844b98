//! RFC 9457 problem details: the one error shape every Comptoir endpoint returns.
//!
//! Handlers return `Result<_, Problem>` (services convert their own error enums into
//! [`Problem`] in one place). [`Json`] replaces axum's extractor so malformed or mistyped
//! bodies become problem+json too, and [`problem_for_bare_errors`] turns the empty error
//! responses produced by middleware (timeouts, body limits, unknown routes) into the same shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer-like path of the field, e.g. `price.amount_cents`.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI identifying the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Field-level validation errors (extension member), present on 422.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
    /// Seconds for the `Retry-After` header (429, load-shedding 503); not in the body.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem whose type is `about:blank` and whose title is the status' reason phrase.
    pub fn status(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// A problem of a Comptoir-specific type, documented under `https://comptoir.dev/problems/`.
    pub fn typed(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            kind: format!("https://comptoir.dev/problems/{kind}"),
            title: title.to_owned(),
            ..Self::status(status)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::status(StatusCode::NOT_FOUND).with_detail(format!("{what} not found"))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 422 with the list of invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request is not valid",
            )
        }
    }

    /// 500 that says nothing about the cause: the cause goes to the log, not to the client.
    pub fn internal() -> Self {
        Self::status(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("An unexpected error occurred; it has been logged")
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl Problem {
    /// Says when to come back: `Retry-After` in whole seconds, rounded up and at least 1 (a
    /// client told 0 would retry at once). The one rule for every 429 and every
    /// load-shedding 503 of the platform.
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(retry_after_secs(wait));
        self
    }

    /// [`Problem::with_retry_after`] as a response.
    pub fn retry_after(self, wait: std::time::Duration) -> Response {
        self.with_retry_after(wait).into_response()
    }
}

/// Whole seconds in `Retry-After` for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// JSON body extractor whose rejections are problem+json:
/// 400 for malformed JSON, 422 for well-formed JSON of the wrong shape (wrong types, missing
/// or unknown fields), 415 without a JSON content type, 413 past the body limit.
///
/// The body is a JSON object, as every request schema of the platform says: serde would also
/// read a struct from an array of its fields in order (`[null, null]`), which no schema allows,
/// so anything but an object is refused with 422.
///
/// A number with a zero fraction is an integer, as JSON Schema (and so the OpenAPI documents)
/// says: `62.0` is accepted where an integer is expected, like `62`. serde refuses it, so a
/// body refused for its shape is read again with such numbers written as integers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(rejection_to_problem(
                &JsonRejection::MissingJsonContentType(Default::default()),
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) => {
                return Err(rejection_to_problem(&JsonRejection::BytesRejection(
                    rejection,
                )));
            }
        };
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(_) if bytes.trim_ascii_start().first() != Some(&b'{') => Err(Problem::validation(
                vec![FieldError::new("", "the body must be a JSON object")],
            )),
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection @ JsonRejection::JsonDataError(_)) => integral_numbers(&bytes)
                .and_then(|again| axum::Json::<T>::from_bytes(&again).ok())
                .map(|axum::Json(value)| Self(value))
                .ok_or_else(|| rejection_to_problem(&rejection)),
            Err(rejection) => Err(rejection_to_problem(&rejection)),
        }
    }
}

/// `Content-Type: application/json` or `application/<anything>+json`, parameters aside.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body again with every number that has a zero fraction (and fits an i64) written as an
/// integer; `None` when there is none, or the body is not JSON.
fn integral_numbers(body: &[u8]) -> Option<Vec<u8>> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                match n.as_f64() {
                    #[allow(clippy::cast_possible_truncation)] // checked: integral, in range
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                        *value = serde_json::Value::from(f as i64);
                        true
                    }
                    _ => false,
                }
            }
            serde_json::Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= walk(item);
                }
                changed
            }
            serde_json::Value::Object(map) => {
                let mut changed = false;
                for item in map.values_mut() {
                    changed |= walk(item);
                }
                changed
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    walk(&mut value)
        .then(|| serde_json::to_vec(&value).ok())
        .flatten()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn rejection_to_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde_path_to_error gives "path: message"; keep both for the client.
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text)
                .to_owned();
            let (field, message) = match detail.split_once(": ") {
                Some((path, message)) if !path.contains(' ') => {
                    (path.to_owned(), message.to_owned())
                }
                _ => (String::new(), detail.clone()),
            };
            Problem {
                detail: Some(detail),
                ..Problem::validation(vec![FieldError::new(field, message)])
            }
        }
        JsonRejection::JsonSyntaxError(_) => {
            Problem::bad_request("The request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => {
            Problem::status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("Expected a request body with `Content-Type: application/json`")
        }
        other => {
            let status = other.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::status(status).with_detail("The request body is too large")
            } else {
                Problem::status(status).with_detail(other.body_text())
            }
        }
    }
}

/// Middleware: an error response without a body (from a timeout, a body limit, an unknown
/// route, a wrong method) becomes problem+json with the same status. A 413 also says
/// `Connection: close`: the rest of the refused body is never read, so the connection cannot
/// carry another request, and a client that does not know it would reuse it and fail.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let mut response = bare_errors_to_problems(request, next).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn bare_errors_to_problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let has_type = response.headers().contains_key(header::CONTENT_TYPE);
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_error || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    // Plain-text bodies from axum's own rejections (e.g. path or query parsing) are kept as
    // the detail; they describe the client's mistake, not our internals.
    let encoded = response.headers().contains_key(header::CONTENT_ENCODING);
    let detail = if has_type && status.is_client_error() && !encoded {
        let (_, body) = response.into_parts();
        match axum::body::to_bytes(body, 4096).await {
            Ok(bytes) if !bytes.is_empty() => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        }
    } else {
        None
    };
    let mut problem = Problem::status(status);
    problem.detail = detail;
    let mut response = problem.into_response();
    if let Some(allow) = allow {
        // A 405 must still say which methods the resource accepts.
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        quantity: i64,
        price: f64,
        tags: Vec<i32>,
    }

    async fn extract(content_type: Option<&str>, body: &str) -> Result<Line, Problem> {
        let mut request = http::Request::post("/").body(axum::body::Body::from(body.to_owned()));
        if let (Ok(r), Some(t)) = (request.as_mut(), content_type) {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(t).expect("header"),
            );
        }
        Json::<Line>::from_request(request.expect("request"), &())
            .await
            .map(|Json(line)| line)
    }

    #[tokio::test]
    async fn a_number_with_a_zero_fraction_is_an_integer() {
        let line = extract(
            Some("application/json"),
            r#"{"quantity": 62.0, "price": 2.0, "tags": [1.0, 2]}"#,
        )
        .await
        .expect("accepted");
        assert_eq!(
            line,
            Line {
                quantity: 62,
                price: 2.0,
                tags: vec![1, 2]
            }
        );
        let refused = extract(
            Some("application/json"),
            r#"{"quantity": 62.5, "price": 2.0, "tags": []}"#,
        )
        .await
        .expect_err("a fraction is no integer");
        assert_eq!(refused.status, 422);
        assert_eq!(refused.errors[0].field, "quantity");
    }

    #[tokio::test]
    async fn the_body_is_refused_with_the_right_status() {
        let body = r#"{"quantity": 1, "price": 1.5, "tags": []}"#;
        assert!(
            extract(Some("application/json; charset=utf-8"), body)
                .await
                .is_ok()
        );
        assert!(
            extract(Some("application/merge-patch+json"), body)
                .await
                .is_ok()
        );
        assert_eq!(extract(None, body).await.expect_err("no type").status, 415);
        assert_eq!(
            extract(Some("text/plain"), body)
                .await
                .expect_err("text")
                .status,
            415
        );
        assert_eq!(
            extract(Some("application/json"), "{")
                .await
                .expect_err("syntax")
                .status,
            400
        );
        let positional = extract(Some("application/json"), r#"[1, 1.5, []]"#)
            .await
            .expect_err("an array is no object");
        assert_eq!(positional.status, 422);
        let unknown = r#"{"quantity": 1, "price": 1.5, "tags": [], "x": 1}"#;
        assert_eq!(
            extract(Some("application/json"), unknown)
                .await
                .expect_err("shape")
                .status,
            422
        );
    }

    #[test]
    fn retry_after_is_rounded_up_and_never_zero() {
        use std::time::Duration;
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
        let response = Problem::status(StatusCode::TOO_MANY_REQUESTS)
            .retry_after(Duration::from_millis(2_500));
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn problem_serialises_as_rfc9457() {
        let p = Problem::validation(vec![FieldError::new("name", "must not be empty")]);
        let v = serde_json::to_value(&p).expect("serialise");
        assert_eq!(v["type"], "https://comptoir.dev/problems/validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["field"], "name");
        assert!(v.get("detail").is_none());
        assert_eq!(
            Problem::not_found("product").status_code(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn problem_response_has_problem_media_type() {
        let response = Problem::bad_request("nope").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
