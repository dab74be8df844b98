//! Access tokens for Comptoir: identity signs them, every service verifies them itself.
//!
//! An access token is a short-lived JWT (RFC 7519) signed with EdDSA over Ed25519 (RFC 8037),
//! whose `kid` header names the signing key. Its subject is a customer id (a UUID, never an
//! email). A service trusts a subject only after checking the signature against identity's
//! JSON Web Key Set, never from a header someone outside could set. See
//! `docs/adr/0011-token-design.md` for why.
//!
//! Layout:
//! - [`claims`]: [`Claims`], what a token says, and how a fresh one is made;
//! - [`keys`]: [`Signer`] (identity's private key, from a PKCS#8 PEM file) and the public
//!   [`Jwk`]/[`Jwks`] it publishes;
//! - [`verify`]: [`Verifier`], which accepts EdDSA from a known key and nothing else;
//! - [`cache`]: [`JwksCache`], a verifier fed by identity's JWKS over HTTP, refreshed
//!   periodically and when an unknown `kid` shows up (rate-limited);
//! - [`extract`]: the axum extractor [`Subject`] and the [`Authenticator`] it asks.
//!
//! The JWT encoding, parsing and claim validation are `jsonwebtoken`'s; the signature
//! primitive is `ed25519-dalek`, plugged in through [`provider`] so that no other algorithm's
//! code is even linked.
#![forbid(unsafe_code)]

pub mod cache;
pub mod claims;
pub mod extract;
pub mod keys;
mod provider;
pub mod verify;

pub use cache::{JwksCache, JwksCacheError, JwksCacheSettings};
pub use claims::Claims;
pub use extract::{Authenticator, Subject};
pub use keys::{Jwk, Jwks, KeyError, Signer};
pub use verify::{Verifier, VerifyError};

/// The issuer identity signs as unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "comptoir-identity";
/// The audience of tokens for the platform's API unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "comptoir";
