//! A shared HTTP cache (RFC 9111) for the public answers the services allow a shared cache to
//! keep: the gateway answers a repeated read itself, without the hop to the upstream.
//!
//! Only what is safe to share is kept: a `GET` without `Authorization` (nor a cookie), answered
//! `200` with `Cache-Control: s-maxage=N` (N > 0) and neither `private` nor `no-store`, whose
//! `Vary` names at most `Accept-Encoding`, with a body under the size limit. The entry is
//! served for N seconds, then asked again in full. The key is the path, the query and the
//! request's `Accept-Encoding`. A client's own `Cache-Control: no-cache` (or `no-store`) skips
//! the stored answer. `If-None-Match` naming the stored `ETag` is answered `304` here.
//!
//! The catalog's listings say `s-maxage=1` (services/catalog/src/pages.rs): through the
//! gateway a catalogue change is therefore seen within that second plus the catalog's own bound.
//! The cache is bounded (entries and bytes per entry) and starts over when full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// What a stored answer is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    target: String,
    accept_encoding: Option<HeaderValue>,
}

#[derive(Debug)]
struct Entry {
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    expires: Instant,
}

/// The gateway's shared cache.
#[derive(Debug)]
pub struct SharedCache {
    entries: Mutex<HashMap<Key, Entry>>,
    max_entries: usize,
    max_body_bytes: usize,
}

fn count(result: &'static str) {
    metrics::counter!("gateway_cache_total", "result" => result).increment(1);
}

impl SharedCache {
    pub fn new(max_entries: usize, max_body_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
            max_body_bytes,
        }
    }

    /// The most a stored body may hold.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key of a request whose answer may be shared, if it is one.
    pub fn key(parts: &Parts, path_and_query: &str) -> Option<Key> {
        let shareable = parts.method == Method::GET
            && !parts.headers.contains_key(header::AUTHORIZATION)
            && !parts.headers.contains_key(header::COOKIE);
        shareable.then(|| Key {
            target: path_and_query.to_owned(),
            accept_encoding: parts.headers.get(header::ACCEPT_ENCODING).cloned(),
        })
    }

    /// The stored answer for `key`, while fresh, unless the client asked to bypass caches.
    pub fn lookup(&self, key: &Key, request: &HeaderMap) -> Option<Response> {
        if directives(request).any(|d| d == "no-cache" || d == "no-store") {
            count("bypass");
            return None;
        }
        let now = Instant::now();
        let entries = self.lock();
        let Some(entry) = entries.get(key).filter(|e| e.expires > now) else {
            count("miss");
            return None;
        };
        count("hit");
        let (mut headers, body) = (entry.headers.clone(), entry.body.clone());
        let age = now.duration_since(entry.stored).as_secs();
        drop(entries);
        headers.insert(header::AGE, HeaderValue::from(age));
        let held = headers
            .get(header::ETAG)
            .is_some_and(|tag| comptoir_platform::etag::none_match(request, tag));
        let mut response = if held {
            headers.remove(header::CONTENT_TYPE);
            headers.remove(header::CONTENT_LENGTH);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            Response::new(Body::from(body))
        };
        *response.headers_mut() = headers;
        Some(response)
    }

    /// How long an upstream answer may be kept, if it may be.
    pub fn lifetime(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        if status != StatusCode::OK {
            return None;
        }
        let vary_ok = headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .all(|name| name.eq_ignore_ascii_case("accept-encoding"));
        let mut s_maxage = None;
        for directive in directives(headers) {
            match directive.split_once('=') {
                _ if directive == "private" || directive == "no-store" => return None,
                Some(("s-maxage", secs)) => s_maxage = secs.trim_matches('"').parse::<u64>().ok(),
                _ => {}
            }
        }
        s_maxage
            .filter(|&secs| secs > 0 && vary_ok)
            .map(Duration::from_secs)
    }

    /// Stores an answer for `key` for `lifetime`.
    pub fn store(&self, key: Key, headers: &HeaderMap, body: Bytes, lifetime: Duration) {
        if body.len() > self.max_body_bytes {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.max_entries {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                headers: headers.clone(),
                body,
                stored: now,
                expires: now + lifetime,
            },
        );
    }
}

/// The `Cache-Control` directives of `headers`, lower-cased.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut request = http::Request::builder()
            .method(method)
            .uri("/v1/products?limit=20");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    fn answer(cache_control: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        headers
    }

    #[test]
    fn only_anonymous_gets_are_shared() {
        let target = "/v1/products?limit=20";
        assert!(SharedCache::key(&parts(Method::GET, &[]), target).is_some());
        assert!(SharedCache::key(&parts(Method::POST, &[]), target).is_none());
        assert!(
            SharedCache::key(
                &parts(Method::GET, &[("authorization", "Bearer x")]),
                target
            )
            .is_none()
        );
        assert!(SharedCache::key(&parts(Method::GET, &[("cookie", "a=b")]), target).is_none());
        let gzip = SharedCache::key(&parts(Method::GET, &[("accept-encoding", "gzip")]), target);
        assert_ne!(gzip, SharedCache::key(&parts(Method::GET, &[]), target));
    }

    #[test]
    fn only_answers_that_allow_a_shared_cache_are_kept() {
        let ok = StatusCode::OK;
        let lifetime = |cc| SharedCache::lifetime(ok, &answer(cc));
        assert_eq!(
            lifetime("public, max-age=0, s-maxage=1, must-revalidate"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(lifetime("no-cache"), None);
        assert_eq!(
            lifetime("max-age=60"),
            None,
            "max-age alone is for the client"
        );
        assert_eq!(lifetime("private, s-maxage=5"), None);
        assert_eq!(lifetime("no-store, s-maxage=5"), None);
        assert_eq!(lifetime("s-maxage=0"), None);
        assert_eq!(
            SharedCache::lifetime(StatusCode::NOT_FOUND, &answer("s-maxage=5")),
            None
        );
        let mut vary = answer("s-maxage=5");
        vary.insert(
            header::VARY,
            HeaderValue::from_static("Accept-Encoding, Authorization"),
        );
        assert_eq!(SharedCache::lifetime(ok, &vary), None);
    }

    #[test]
    fn a_stored_answer_is_served_while_fresh_and_304_when_the_client_holds_it() {
        let cache = SharedCache::new(10, 1024);
        let key = SharedCache::key(&parts(Method::GET, &[]), "/v1/products").expect("key");
        assert!(cache.lookup(&key, &HeaderMap::new()).is_none());
        cache.store(
            key.clone(),
            &answer("s-maxage=1"),
            Bytes::from_static(b"[1]"),
            Duration::from_secs(60),
        );
        let hit = cache.lookup(&key, &HeaderMap::new()).expect("hit");
        assert_eq!(hit.status(), StatusCode::OK);
        assert_eq!(hit.headers()[header::AGE], "0");

        let mut holds = HeaderMap::new();
        holds.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(
            cache.lookup(&key, &holds).expect("hit").status(),
            StatusCode::NOT_MODIFIED
        );

        let mut bypass = HeaderMap::new();
        bypass.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert!(cache.lookup(&key, &bypass).is_none());
    }

    #[test]
    fn an_expired_answer_is_not_served() {
        let cache = SharedCache::new(10, 1024);
        let key = SharedCache::key(&parts(Method::GET, &[]), "/v1/products").expect("key");
        cache.store(
            key.clone(),
            &answer("s-maxage=1"),
            Bytes::from_static(b"[1]"),
            Duration::ZERO,
        );
        assert!(cache.lookup(&key, &HeaderMap::new()).is_none());
    }

    #[test]
    fn limits_bound_the_cache() {
        let cache = SharedCache::new(2, 4);
        let key = |t: &str| SharedCache::key(&parts(Method::GET, &[]), t).expect("key");
        cache.store(
            key("/big"),
            &answer("s-maxage=9"),
            Bytes::from_static(b"12345"),
            Duration::from_secs(9),
        );
        assert!(
            cache.lookup(&key("/big"), &HeaderMap::new()).is_none(),
            "over the body limit"
        );
        for t in ["/a", "/b", "/c"] {
            cache.store(
                key(t),
                &answer("s-maxage=9"),
                Bytes::from_static(b"1"),
                Duration::from_secs(9),
            );
        }
        assert!(cache.lock().len() <= 2);
    }
}
