//! Identity's typed settings: defaults, then a TOML file, then `COMPTOIR_IDENTITY__...`
//! variables; every problem is reported at once, before a port is bound.

use std::collections::BTreeMap;
use std::path::PathBuf;

use comptoir_events::pulsar::PulsarSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

use crate::gdpr::GdprSettings;
use crate::keys::Keys;
use crate::limits::LoginSettings;
use crate::password::Argon2Settings;

/// A key-encryption key: its id (stored beside every key it wraps) and the file holding it
/// (32 bytes, base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekFile {
    pub id: String,
    pub file: PathBuf,
}

/// Where identity's keys are. Every one is a file: secrets never sit in config values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// The KEK new data keys are wrapped under.
    pub active_kek: Option<KekFile>,
    /// Older KEKs, kept only to unwrap data keys until the rewrap job has moved them all.
    pub retired_keks: Vec<KekFile>,
    /// HMAC key of the email blind index (32 bytes, base64). Changing it needs a reindex.
    pub blind_index_key_file: Option<PathBuf>,
    /// Data keys moved to the active KEK per rewrap transaction.
    pub rewrap_batch: i64,
}

/// A signing key retired by a rotation: its id and its (private, PKCS#8 PEM) key file, from
/// which the public key is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredSigningKey {
    pub kid: String,
    /// The retired key's public half only, as SubjectPublicKeyInfo PEM (`openssl pkey -in
    /// old.pem -pubout`): it is published in the JWKS until the tokens it signed expire; the
    /// private key is destroyed at rotation and never deployed again.
    pub public_key_file: PathBuf,
}

/// Access and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    pub signing_key_file: Option<PathBuf>,
    /// The key id published in the JWKS and put in every token header.
    pub signing_kid: String,
    /// Keys tokens were signed with before the last rotation: their public halves stay in the
    /// JWKS, so tokens already issued keep verifying until they expire. Remove an entry once
    /// `access_ttl_secs` has passed since the rotation.
    pub retired_signing_keys: Vec<RetiredSigningKey>,
    pub issuer: String,
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each use issues a new one).
    pub refresh_ttl_secs: u64,
    /// Absolute lifetime of a session: however often it is refreshed, it ends this long
    /// after the sign-in, and the customer signs in again.
    pub session_max_age_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            signing_kid: "identity-1".to_owned(),
            retired_signing_keys: Vec::new(),
            issuer: comptoir_auth::DEFAULT_ISSUER.to_owned(),
            audience: comptoir_auth::DEFAULT_AUDIENCE.to_owned(),
            access_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
        }
    }
}

/// A service allowed to resolve PII through `/internal`, and the purposes it may declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalClientSettings {
    /// File holding the bearer token the client presents.
    pub token_file: PathBuf,
    /// Purposes the client may declare, each with the only fields it may read for it (data
    /// minimisation), e.g. `order-confirmation = ["email", "name"]`.
    pub purposes: BTreeMap<String, Vec<String>>,
}

/// Identity settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker; `namespace` is identity's (`comptoir/identity`), where the export and
    /// erasure requests are published.
    pub pulsar: PulsarSettings,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub argon2: Argon2Settings,
    pub login: LoginSettings,
    /// Clients of the internal PII route, by service name.
    pub internal_clients: BTreeMap<String, InternalClientSettings>,
    /// Exports and erasures: who must answer, how long archives live.
    pub gdpr: GdprSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "identity".to_owned(),
                user: "identity".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/identity".to_owned(),
                ..PulsarSettings::default()
            },
            keys: KeySettings {
                rewrap_batch: 500,
                ..KeySettings::default()
            },
            tokens: TokenSettings::default(),
            argon2: Argon2Settings::default(),
            login: LoginSettings::default(),
            internal_clients: BTreeMap::new(),
            gdpr: GdprSettings::default(),
        }
    }
}

impl comptoir_platform::service::ServiceSettings for Settings {
    fn http(&self) -> &HttpSettings {
        &self.http
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.http.validate();
        problems.extend(self.telemetry.validate());
        problems.extend(self.database.problems("database"));
        problems.extend(self.pulsar.problems("pulsar"));
        problems.extend(self.gdpr.problems("gdpr"));
        problems.extend(self.argon2.problems("argon2"));
        problems.extend(self.login.problems("login"));
        if self.tokens.access_ttl_secs == 0 || self.tokens.access_ttl_secs > 3600 {
            problems.push("tokens.access_ttl_secs must be between 1 and 3600".to_owned());
        }
        if self.tokens.refresh_ttl_secs < self.tokens.access_ttl_secs {
            problems.push("tokens.refresh_ttl_secs must be at least access_ttl_secs".to_owned());
        }
        if self.tokens.session_max_age_secs < self.tokens.access_ttl_secs {
            problems
                .push("tokens.session_max_age_secs must be at least access_ttl_secs".to_owned());
        }
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            problems.push("tokens.issuer and tokens.audience must be set".to_owned());
        }
        if self.keys.rewrap_batch < 1 {
            problems.push("keys.rewrap_batch must be at least 1".to_owned());
        }
        // Reading every key now is the point: a missing or malformed key stops the process
        // before it binds a port, with a message naming the file (never its content).
        if let Err(key_problems) = Keys::load(self) {
            problems.extend(key_problems);
        }
        problems
    }
}
