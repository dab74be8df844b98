//! The platform's OpenAPI document: every upstream's `/openapi.json`, merged.
//!
//! Each upstream's document is fetched through the same client as the traffic (timeout,
//! breaker) and cached for `cache_ttl_ms`. When a fetch fails, the last good copy is served
//! and the document says so: the `x-comptoir-sources` extension gives each upstream's state
//! (`live`, `stale` or `missing`) and the `x-comptoir-openapi-degraded` response header names
//! the upstreams that are not live.
//!
//! Merging keeps only the paths the gateway actually routes to that upstream (so internal
//! routes never show), and merges `components.schemas` without letting one service's schema
//! replace another's: a name defined differently by two upstreams is renamed
//! `<upstream>.<Name>` in each, with every `$ref` to it rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use comptoir_platform::openapi::{problem_response, problem_schema};

use crate::proxy::{Route, route_for};
use crate::upstream::Upstream;

/// Largest upstream document accepted.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
const SCHEMA_REF: &str = "#/components/schemas/";

/// Name of the response header listing upstreams whose document is not live.
pub const DEGRADED_HEADER: &str = "x-comptoir-openapi-degraded";

#[derive(Debug)]
struct Cached {
    document: Value,
    fetched_at: Instant,
}

#[derive(Debug)]
struct Source {
    upstream: Upstream,
    cached: Option<Cached>,
    /// Whether the last fetch failed (the cached copy, if any, is stale).
    failing: bool,
}

/// Fetches, caches and merges the upstreams' documents.
#[derive(Debug)]
pub struct OpenApi {
    routes: Vec<Route>,
    ttl: Duration,
    fetch_timeout: Duration,
    /// One refresh at a time: concurrent readers wait for it instead of fetching again.
    sources: Mutex<Vec<Source>>,
}

/// The merged document and the upstreams that are not live.
#[derive(Debug)]
pub struct Merged {
    pub document: Value,
    pub degraded: Vec<String>,
}

impl OpenApi {
    pub fn new(
        upstreams: impl IntoIterator<Item = Upstream>,
        routes: Vec<Route>,
        ttl: Duration,
        fetch_timeout: Duration,
    ) -> Self {
        let sources = upstreams
            .into_iter()
            .map(|upstream| Source {
                upstream,
                cached: None,
                failing: false,
            })
            .collect();
        Self {
            routes,
            ttl,
            fetch_timeout,
            sources: Mutex::new(sources),
        }
    }

    /// The merged document, refreshing upstream copies older than the TTL first.
    pub async fn document(&self) -> Merged {
        let mut sources = self.sources.lock().await;
        let due: Vec<usize> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.failing
                    || s.cached
                        .as_ref()
                        .is_none_or(|c| c.fetched_at.elapsed() >= self.ttl)
            })
            .map(|(index, _)| index)
            .collect();
        let fetched = futures::future::join_all(
            due.iter()
                .map(|&index| fetch(&sources[index].upstream, self.fetch_timeout)),
        )
        .await;
        for (index, result) in due.into_iter().zip(fetched) {
            let source = &mut sources[index];
            match result {
                Ok(document) => {
                    source.cached = Some(Cached {
                        document,
                        fetched_at: Instant::now(),
                    });
                    source.failing = false;
                }
                Err(reason) => {
                    tracing::warn!(upstream = %source.upstream.name(), %reason, "Cannot fetch the upstream's OpenAPI document; serving the cached copy");
                    source.failing = true;
                }
            }
        }
        let mut status = Map::new();
        let mut degraded = Vec::new();
        let mut documents = Vec::new();
        for source in sources.iter() {
            let name = source.upstream.name().to_string();
            let state = match (&source.cached, source.failing) {
                (None, _) => "missing",
                (Some(_), true) => "stale",
                (Some(_), false) => "live",
            };
            let mut entry = json!({ "status": state });
            if let Some(cached) = &source.cached {
                entry["age_seconds"] = json!(cached.fetched_at.elapsed().as_secs());
                documents.push((name.clone(), &cached.document));
            }
            metrics::gauge!("gateway_openapi_source_live", "upstream" => name.clone())
                .set(if state == "live" { 1.0 } else { 0.0 });
            if state != "live" {
                degraded.push(name.clone());
            }
            status.insert(name, entry);
        }
        let mut document = merge(&documents, &self.routes);
        document["x-comptoir-sources"] = Value::Object(status);
        Merged { document, degraded }
    }
}

async fn fetch(upstream: &Upstream, timeout: Duration) -> Result<Value, String> {
    let uri = upstream.uri("/openapi.json").map_err(|e| e.to_string())?;
    let request = Request::get(uri)
        .header(header::ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = upstream
            .call(request)
            .await
            .map_err(|e| comptoir_platform::telemetry::error_chain(&e))?;
        if response.status() != StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("not JSON: {e}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no document within {timeout:?}"))?
}

/// Names of the schemas `value` refers to.
fn schema_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix(SCHEMA_REF) {
                            out.insert(name.to_owned());
                        }
                    }
                    _ => schema_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| schema_refs(v, out)),
        _ => {}
    }
}

fn rewrite_refs(value: &mut Value, renamed: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = value
                    && let Some(new) = target.strip_prefix(SCHEMA_REF).and_then(renamed)
                {
                    *target = format!("{SCHEMA_REF}{new}");
                } else {
                    rewrite_refs(value, renamed);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renamed)),
        _ => {}
    }
}

fn schemas(document: &Value) -> Option<&Map<String, Value>> {
    document.pointer("/components/schemas")?.as_object()
}

/// Schema names that must be renamed per upstream: defined by several upstreams differently,
/// or referring (transitively) to such a name, whose renaming makes the definitions differ.
fn conflicting_schemas(documents: &[(String, &Value)]) -> BTreeSet<String> {
    let mut definitions: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (_, document) in documents {
        for (name, schema) in schemas(document).into_iter().flatten() {
            definitions.entry(name).or_default().push(schema);
        }
    }
    let shared: Vec<(&str, &Vec<&Value>)> = definitions
        .iter()
        .filter(|(_, defs)| defs.len() > 1)
        .map(|(name, defs)| (*name, defs))
        .collect();
    let mut conflicting: BTreeSet<String> = shared
        .iter()
        .filter(|(_, defs)| defs.iter().any(|d| *d != defs[0]))
        .map(|(name, _)| (*name).to_owned())
        .collect();
    loop {
        let before = conflicting.len();
        for (name, defs) in &shared {
            if conflicting.contains(*name) {
                continue;
            }
            let mut refs = BTreeSet::new();
            defs.iter().for_each(|d| schema_refs(d, &mut refs));
            if refs.iter().any(|r| conflicting.contains(r)) {
                conflicting.insert((*name).to_owned());
            }
        }
        if conflicting.len() == before {
            return conflicting;
        }
    }
}

/// Merges `documents` (by upstream name) into one OpenAPI 3.1 document holding the paths each
/// upstream is routed for.
pub fn merge(documents: &[(String, &Value)], routes: &[Route]) -> Value {
    let conflicting = conflicting_schemas(documents);
    let mut paths = Map::new();
    let mut merged_schemas = Map::new();
    let mut security_schemes = Map::new();
    let mut tags: Vec<Value> = Vec::new();
    for (upstream, document) in documents {
        let renamed = |name: &str| {
            conflicting
                .contains(name)
                .then(|| format!("{upstream}.{name}"))
        };
        if let Some(items) = document.get("paths").and_then(Value::as_object) {
            for (path, item) in items {
                let routed_here = route_for(routes, path)
                    .is_some_and(|route| route.upstream.name().as_ref() == upstream.as_str());
                if routed_here && !paths.contains_key(path) {
                    let mut item = item.clone();
                    rewrite_refs(&mut item, &renamed);
                    paths.insert(path.clone(), item);
                }
            }
        }
        for (name, schema) in schemas(document).into_iter().flatten() {
            let mut schema = schema.clone();
            rewrite_refs(&mut schema, &renamed);
            merged_schemas.insert(renamed(name).unwrap_or_else(|| name.clone()), schema);
        }
        if let Some(schemes) = document
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
        {
            for (name, scheme) in schemes {
                security_schemes
                    .entry(name.clone())
                    .or_insert_with(|| scheme.clone());
            }
        }
        for tag in document
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !tags.iter().any(|t| t.get("name") == tag.get("name")) {
                tags.push(tag.clone());
            }
        }
    }
    declare_gateway_answers(&mut paths);
    merged_schemas
        .entry("Problem")
        .or_insert_with(|| serde_json::to_value(problem_schema()).unwrap_or_default());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Comptoir API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every public route of the platform, as served through the gateway.",
        },
        "paths": paths,
        "components": {
            "schemas": merged_schemas,
            "securitySchemes": security_schemes,
        },
        "tags": tags,
    })
}

/// What the gateway itself answers on every route it proxies, declared on every operation
/// beside what the upstream declares: a client over its rate limit (429, with `Retry-After`),
/// an upstream refusing connections or behind an open breaker, or tokens that cannot be
/// verified for want of keys (503), an upstream too slow (504) or answering a 5xx that is no
/// problem (502), and a body past the gateway's limit (413).
fn declare_gateway_answers(paths: &mut Map<String, Value>) {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let problem =
        |description: &str| serde_json::to_value(problem_response(description)).unwrap_or_default();
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let takes_body = operation.get("requestBody").is_some();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| problem(description));
            };
            add(
                "429",
                "Over the client's rate limit at the gateway (`Retry-After` says when to come back)",
            );
            add(
                "502",
                "The upstream service answered an error the gateway cannot pass on",
            );
            add(
                "503",
                "The upstream service is unreachable or its breaker is open, or access tokens cannot be verified right now",
            );
            add("504", "The upstream service did not answer in time");
            if takes_body {
                add("413", "The body is larger than the gateway accepts");
            }
        }
    }
}

/// The document as an HTTP response, with the degraded header when some upstream is not live.
pub fn respond(merged: Merged) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = axum::Json(merged.document).into_response();
    if !merged.degraded.is_empty()
        && let Ok(value) = http::HeaderValue::from_str(&merged.degraded.join(", "))
    {
        response
            .headers_mut()
            .insert(http::HeaderName::from_static(DEGRADED_HEADER), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::UpstreamSettings;

    fn route(prefix: &str, upstream: &Upstream) -> Route {
        Route {
            prefix: prefix.into(),
            upstream: upstream.clone(),
            verify_token: true,
        }
    }

    fn upstream(name: &str) -> Upstream {
        Upstream::new(name, &UpstreamSettings::at("http://127.0.0.1:1")).expect("upstream")
    }

    #[test]
    fn paths_are_kept_only_where_routed_and_colliding_schemas_are_renamed() {
        let (a, b) = (upstream("catalog"), upstream("identity"));
        let routes = vec![route("/v1/products", &a), route("/v1/me", &b)];
        let problem = json!({"type": "object", "properties": {"title": {"type": "string"}}});
        let catalog = json!({
            "paths": {
                "/v1/products/{id}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Product"}}}}}}},
                "/openapi.json": {"get": {}},
                "/v1/me": {"get": {}},
            },
            "components": {"schemas": {
                "Product": {"type": "object", "properties": {"price": {"$ref": "#/components/schemas/Price"}}},
                "Price": {"type": "integer"},
                "Problem": problem,
            }},
        });
        let identity = json!({
            "paths": {
                "/v1/me": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Price"}}}}}}},
                "/internal/v1/customers/{id}/pii": {"post": {}},
            },
            "components": {"schemas": {
                "Price": {"type": "string"},
                "Problem": problem,
            }},
        });
        let merged = merge(
            &[
                ("catalog".to_owned(), &catalog),
                ("identity".to_owned(), &identity),
            ],
            &routes,
        );
        let paths: Vec<&String> = merged["paths"].as_object().expect("paths").keys().collect();
        assert_eq!(paths, ["/v1/me", "/v1/products/{id}"]);
        let schemas: Vec<&String> = merged["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
            .collect();
        assert_eq!(
            schemas,
            ["Problem", "Product", "catalog.Price", "identity.Price"]
        );
        assert_eq!(
            merged["components"]["schemas"]["Product"]["properties"]["price"]["$ref"],
            "#/components/schemas/catalog.Price"
        );
        assert_eq!(
            merged["paths"]["/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/identity.Price"
        );
    }

    #[test]
    fn every_operation_declares_what_the_gateway_itself_answers() {
        let catalog_upstream = upstream("catalog");
        let routes = vec![route("/v1/products", &catalog_upstream)];
        let catalog = json!({
            "paths": {"/v1/products": {
                "get": {"responses": {"200": {"description": "A page"}}},
                "post": {"requestBody": {"content": {"application/json": {}}},
                         "responses": {"201": {"description": "Created"}, "503": {"description": "its own"}}},
            }},
        });
        let merged = merge(&[("catalog".to_owned(), &catalog)], &routes);
        let statuses = |method: &str| -> Vec<String> {
            merged["paths"]["/v1/products"][method]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(statuses("get"), ["200", "429", "502", "503", "504"]);
        assert_eq!(statuses("post"), ["201", "413", "429", "502", "503", "504"]);
        // The upstream's own declaration is kept; the added ones are problems.
        assert_eq!(
            merged["paths"]["/v1/products"]["post"]["responses"]["503"]["description"],
            "its own"
        );
        assert_eq!(
            merged["paths"]["/v1/products"]["get"]["responses"]["429"]["content"]["application/problem+json"]
                ["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(merged["components"]["schemas"]["Problem"]["properties"]["status"].is_object());
    }

    #[test]
    fn a_schema_referring_to_a_renamed_one_is_renamed_too() {
        let wrapper = json!({"type": "array", "items": {"$ref": "#/components/schemas/Item"}});
        let a = json!({"components": {"schemas": {"Page": wrapper, "Item": {"type": "integer"}}}});
        let b = json!({"components": {"schemas": {"Page": wrapper, "Item": {"type": "string"}}}});
        let conflicting = conflicting_schemas(&[("a".to_owned(), &a), ("b".to_owned(), &b)]);
        assert_eq!(
            conflicting.into_iter().collect::<Vec<_>>(),
            ["Item", "Page"]
        );
    }
}
