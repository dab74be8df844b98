//! Every key identity uses, read from its file and checked before a port is bound: the KEK
//! keyring, the blind-index key, the token signer and the retired keys' public halves, the
//! internal clients' tokens. Messages name files, never their content.

use std::collections::BTreeMap;

use comptoir_auth::Signer;
use comptoir_platform::secret::{MIN_BEARER_TOKEN_LEN, Secret, read_secret_file};
use comptoir_platform::telemetry::error_chain;
use comptoir_privacy::{BlindIndexKey, Kek, Keyring};

use crate::internal;
use crate::settings::Settings;

/// A configured internal client, its token read.
#[derive(Debug)]
pub struct InternalClient {
    pub name: String,
    pub token: Secret<String>,
    /// Purpose → the fields it allows.
    pub purposes: BTreeMap<String, Vec<String>>,
}

/// Every key identity uses, read from its file.
#[derive(Debug)]
pub struct Keys {
    pub keyring: Keyring,
    pub blind_index: BlindIndexKey,
    pub signer: Signer,
    /// Public keys of retired signing keys, still published (see `TokenSettings`).
    pub retired_jwks: Vec<comptoir_auth::Jwk>,
    pub clients: Vec<InternalClient>,
}

impl Keys {
    /// Reads every key file named by `settings`, or lists every problem.
    pub fn load(settings: &Settings) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let keys = &settings.keys;
        let keyring = match &keys.active_kek {
            None => {
                problems.push("keys.active_kek must be set (id and file)".to_owned());
                None
            }
            Some(active) => match Kek::from_file(&active.id, &active.file) {
                Ok(kek) => {
                    let mut keyring = Some(Keyring::new(kek));
                    for retired in &keys.retired_keks {
                        match Kek::from_file(&retired.id, &retired.file) {
                            Ok(kek) => {
                                keyring = match keyring.map(|k| k.with_retired(kek)).transpose() {
                                    Ok(k) => k,
                                    Err(error) => {
                                        problems.push(format!("keys.retired_keks: {error}"));
                                        None
                                    }
                                };
                            }
                            Err(error) => {
                                problems
                                    .push(format!("keys.retired_keks: {}", error_chain(&error)));
                            }
                        }
                    }
                    keyring
                }
                Err(error) => {
                    problems.push(format!("keys.active_kek: {}", error_chain(&error)));
                    None
                }
            },
        };
        let blind_index = match &keys.blind_index_key_file {
            None => {
                problems.push("keys.blind_index_key_file must be set".to_owned());
                None
            }
            Some(path) => BlindIndexKey::from_file(path)
                .map_err(|error| {
                    problems.push(format!(
                        "keys.blind_index_key_file: {}",
                        error_chain(&error)
                    ));
                })
                .ok(),
        };
        let signer = match &settings.tokens.signing_key_file {
            None => {
                problems.push("tokens.signing_key_file must be set".to_owned());
                None
            }
            Some(path) => Signer::from_pem_file(path, &settings.tokens.signing_kid)
                .map_err(|error| {
                    problems.push(format!("tokens.signing_key_file: {}", error_chain(&error)));
                })
                .ok(),
        };
        let mut retired_jwks = Vec::new();
        for retired in &settings.tokens.retired_signing_keys {
            if retired.kid == settings.tokens.signing_kid {
                problems.push(format!(
                    "tokens.retired_signing_keys: kid {:?} is the active signing key's",
                    retired.kid
                ));
                continue;
            }
            match comptoir_auth::Jwk::from_public_key_pem_file(
                &retired.public_key_file,
                &retired.kid,
            ) {
                Ok(jwk) => retired_jwks.push(jwk),
                Err(error) => problems.push(format!(
                    "tokens.retired_signing_keys ({}): {}",
                    retired.kid,
                    error_chain(&error)
                )),
            }
        }
        let mut clients = Vec::new();
        for (name, client) in &settings.internal_clients {
            if client.purposes.is_empty() {
                problems.push(format!(
                    "internal_clients.{name}.purposes must name at least one purpose"
                ));
            }
            for (purpose, fields) in &client.purposes {
                if fields.is_empty()
                    || fields
                        .iter()
                        .any(|f| !internal::FIELDS.contains(&f.as_str()))
                {
                    problems.push(format!(
                        "internal_clients.{name}.purposes.{purpose} must list one or more of {}",
                        internal::FIELDS.join(", ")
                    ));
                }
            }
            match read_secret_file(&client.token_file) {
                Ok(token) if token.expose().len() < MIN_BEARER_TOKEN_LEN => problems.push(format!(
                    "internal_clients.{name}.token_file: the token must be at least {MIN_BEARER_TOKEN_LEN} characters"
                )),
                Ok(token) => clients.push(InternalClient {
                    name: name.clone(),
                    token,
                    purposes: client.purposes.clone(),
                }),
                Err(error) => problems.push(format!(
                    "internal_clients.{name}.token_file: {}",
                    error_chain(&error)
                )),
            }
        }
        match (keyring, blind_index, signer) {
            (Some(keyring), Some(blind_index), Some(signer)) if problems.is_empty() => Ok(Self {
                keyring,
                blind_index,
                signer,
                retired_jwks,
                clients,
            }),
            _ => Err(problems),
        }
    }
}
