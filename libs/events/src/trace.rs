//! W3C trace context across Pulsar: the producing side writes `traceparent` (and
//! `tracestate`) into message properties, the consuming side continues the trace from them.
//! Without an OpenTelemetry layer installed both are no-ops.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Properties<'a>(&'a mut HashMap<String, String>);

impl Injector for Properties<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct ReadProperties<'a>(&'a HashMap<String, String>);

impl Extractor for ReadProperties<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as message properties (empty outside a trace).
pub fn current_context_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Properties(&mut headers));
    });
    headers
}

/// Makes `span` continue the trace named by a message's properties, if any.
pub fn continue_trace(span: &tracing::Span, properties: &HashMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&ReadProperties(properties))
    });
    // Fails only when no OpenTelemetry layer is installed: nothing to continue then.
    let _ = span.set_parent(parent);
}
