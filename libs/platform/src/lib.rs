//! Service bootstrap shared by every Comptoir service.
//!
//! A service's `main.rs` loads its typed settings with [`config::load`], installs telemetry
//! with [`telemetry::init`], binds a listener and hands its router to [`http::serve`] together
//! with a shutdown token. Everything a service would otherwise re-write lives here:
//!
//! - [`client`]: the client address behind trusted proxies and the rate-limit key rule;
//! - [`config`]: layered settings (defaults → file → `COMPTOIR_*` environment), validated
//!   before any port is bound, secrets read from files ([`secret`]);
//! - [`telemetry`]: `tracing` with JSON or human logs, OpenTelemetry export when configured;
//! - [`http`]: the tower middleware stack, `/livez`, `/readyz`, `/metrics`, graceful shutdown;
//! - [`tls`]: the optional HTTPS listener of the public routes, its certificate reloaded when
//!   its files change;
//! - [`metrics`]: the Prometheus recorder and RED metrics per route;
//! - [`etag`]: a resource's version as its ETag, and the `If-Match` a change must send;
//! - [`problem`]: RFC 9457 problem+json for every error, and a JSON extractor that produces it;
//! - [`openapi`]: what the platform answers on every route, declared in each service's
//!   OpenAPI document, and the one bearer security scheme declaration;
//! - [`service`]: the `main` of every service binary, built from the pieces above.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod etag;
pub mod health;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use problem::{FieldError, Json, Problem};
