//! Optimistic concurrency over HTTP, the one way every service does it: a resource's version
//! is its ETag (`"<version>"`), and a change names the version it replaces in `If-Match`.
//!
//! [`expected_version`] reads `If-Match` (RFC 9110 §13.1.1): missing → 428; `*` (any current
//! version) → `None`; one of our ETags → its version; another well-formed entity tag → a
//! version no resource has, so the change is refused like a stale one (409); not an entity
//! tag at all → 400. [`IfMatch`] declares the header in the OpenAPI documents with exactly
//! that grammar, so a schema-valid value is never refused as malformed.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use utoipa::IntoParams;

use crate::problem::Problem;

/// The `If-Match` header of a change, for `params(IfMatch)` in a route's OpenAPI declaration.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The ETag of the version being changed (from the last read), or `*` for whatever the
    /// current version is.
    #[param(rename = "If-Match", pattern = r#"^(\*|(W/)?"[!#-~]*")$"#)]
    pub if_match: String,
}

/// The `If-None-Match` header of a conditional read, for `params(IfNoneMatch)`: the ETags the
/// client holds (or `*`); the answer is `304 Not Modified` when one is current.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatch {
    /// ETags from earlier answers, comma-separated, or `*`. A value that names none of the
    /// current tags (malformed ones included) is ignored: the answer is the full `200`.
    #[param(rename = "If-None-Match")]
    pub if_none_match: Option<String>,
}

/// Whether the request's `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2) or
/// is `*`: the answer is then `304 Not Modified`.
pub fn none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let strip = |tag: &[u8]| tag.strip_prefix(b"W/").map_or(tag.to_vec(), <[u8]>::to_vec);
    let ours = strip(etag.as_bytes());
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || strip(tag.as_bytes()) == ours)
}

/// The version a foreign entity tag stands for: none, so it matches nothing.
const NO_VERSION: i64 = -1;

/// `"<version>"`, the ETag of a resource at `version`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The version the request's `If-Match` names (see the module's documentation).
pub fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(Problem::status(StatusCode::PRECONDITION_REQUIRED)
            .with_detail("Send If-Match with the ETag of the version you are changing"));
    };
    let malformed = || {
        Problem::bad_request(
            "If-Match must be `*` or one entity tag, as in the ETag header: \"<version>\"",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    if value == "*" {
        return Ok(None);
    }
    let opaque = value
        .strip_prefix("W/")
        .unwrap_or(value)
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| v.bytes().all(|b| b == b'!' || (b'#'..=b'~').contains(&b)))
        .ok_or_else(malformed)?;
    Ok(Some(opaque.parse::<i64>().unwrap_or(NO_VERSION)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(value: Option<&str>) -> Result<Option<i64>, u16> {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(header::IF_MATCH, HeaderValue::from_str(v).expect("header"));
        }
        expected_version(&headers).map_err(|p| p.status)
    }

    #[test]
    fn if_match_names_a_version_any_version_or_none() {
        assert_eq!(expected(Some("\"7\"")), Ok(Some(7)));
        assert_eq!(expected(Some("W/\"7\"")), Ok(Some(7)));
        assert_eq!(expected(Some(" \"7\" ")), Ok(Some(7)));
        assert_eq!(expected(Some("*")), Ok(None));
        // Well-formed, but no ETag of ours: it matches nothing.
        assert_eq!(expected(Some("\"abc\"")), Ok(Some(NO_VERSION)));
        assert_eq!(expected(Some("\"\"")), Ok(Some(NO_VERSION)));
        assert_eq!(expected(None), Err(428));
        for malformed in ["7", "\"7", "\"a\"b\"", "\"7\", \"8\"", "**"] {
            assert_eq!(expected(Some(malformed)), Err(400), "{malformed}");
        }
    }

    #[test]
    fn the_etag_of_a_version_is_read_back_as_that_version() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, etag(42));
        assert_eq!(
            expected_version(&headers).map_err(|p| p.status),
            Ok(Some(42))
        );
    }
}
