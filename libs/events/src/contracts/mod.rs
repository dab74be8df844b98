//! Event payloads, one module per bounded context. Versioning rule: add optional fields in
//! place (old payloads must still decode, which the tests check); anything breaking is a new
//! type with the next `.vN` suffix.

pub mod catalog;
