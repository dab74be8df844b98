//! Signing keys and the public keys identity publishes.
//!
//! Identity holds an Ed25519 private key in a PKCS#8 PEM file (`openssl genpkey -algorithm
//! ed25519` writes one) together with a key id (`kid`). It publishes the public half as an
//! OKP JSON Web Key (RFC 8037) in a JWKS (RFC 7517) that every verifier fetches.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Claims;

/// Why a signing key could not be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key file {} is not an Ed25519 private key in PKCS#8 PEM", path.display())]
    NotEd25519Pem { path: PathBuf },
    #[error("{} is not an Ed25519 public key in SubjectPublicKeyInfo PEM", path.display())]
    NotEd25519PublicPem { path: PathBuf },
    #[error(
        "{} holds a private key, where only the public half belongs (openssl pkey -in KEY -pubout)",
        path.display()
    )]
    PrivateWherePublic { path: PathBuf },
    #[error("invalid key id {0:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    InvalidKid(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Identity's token signer: an Ed25519 private key and its key id.
///
/// The private key lives only in ed25519-dalek's `SigningKey`, which wipes itself when
/// dropped. (`jsonwebtoken`'s `EncodingKey` would keep a second copy, as PKCS#8 DER in a plain
/// `Vec` that is never wiped; so tokens are signed here, as compact JWS, and `jsonwebtoken`
/// only verifies.)
pub struct Signer {
    kid: String,
    key: SigningKey,
    public: [u8; 32],
}

impl Signer {
    /// Reads an Ed25519 private key from a PKCS#8 PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>, kid: &str) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let pem =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::from_pkcs8_pem(&pem, kid).map_err(|error| match error {
            KeyError::NotEd25519Pem { .. } => KeyError::NotEd25519Pem {
                path: path.to_owned(),
            },
            other => other,
        })
    }

    /// An Ed25519 private key from PKCS#8 PEM text.
    pub fn from_pkcs8_pem(pem: &str, kid: &str) -> Result<Self, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::InvalidKid(kid.to_owned()));
        }
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::NotEd25519Pem {
            path: PathBuf::new(),
        })?;
        Self::from_signing_key(&key, kid)
    }

    fn from_signing_key(key: &SigningKey, kid: &str) -> Result<Self, KeyError> {
        Ok(Self {
            kid: kid.to_owned(),
            key: key.clone(),
            public: key.verifying_key().to_bytes(),
        })
    }

    /// A fresh random key (tests, and `generate_pem` for tooling).
    pub fn generate(kid: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_bytes(&random_seed());
        if !valid_kid(kid) {
            return Err(KeyError::InvalidKid(kid.to_owned()));
        }
        Self::from_signing_key(&key, kid)
    }

    /// A fresh Ed25519 private key as PKCS#8 PEM, the format [`Signer::from_pem_file`] reads.
    pub fn generate_pem() -> Zeroizing<String> {
        let key = SigningKey::from_bytes(&random_seed());
        key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("an Ed25519 key always encodes as PKCS#8")
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as SubjectPublicKeyInfo PEM: what a retired key is configured with
    /// ([`Jwk::from_public_key_pem_file`]).
    pub fn public_key_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        self.key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("an Ed25519 public key always encodes as SPKI")
    }

    /// The public half, as published in the JWKS.
    pub fn jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, &self.public)
    }

    /// Signs `claims` into a compact JWT with `alg: EdDSA`, `typ: JWT` and this key's `kid`.
    pub fn issue(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let sign_error = |error: serde_json::Error| KeyError::Sign(error.to_string());
        let header = serde_json::to_vec(&header).map_err(sign_error)?;
        let claims = serde_json::to_vec(claims).map_err(sign_error)?;
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        Ok(self.sign_compact(message))
    }

    /// `message.signature`: the JWS signing input signed with this key (RFC 7515 §7.1).
    pub(crate) fn sign_compact(&self, message: String) -> String {
        use ed25519_dalek::Signer as _;
        let signature = self.key.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

fn random_seed() -> [u8; 32] {
    use rand::TryRngCore as _;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .expect("the operating system's random generator failed");
    seed
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A public JSON Web Key. Comptoir publishes Ed25519 keys only: `kty: OKP`, `crv: Ed25519`,
/// `x` the base64url public key (RFC 8037 §2). Other fields a JWKS may carry are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The JWK of an Ed25519 public key.
    pub fn ed25519(kid: &str, public: &[u8; 32]) -> Self {
        Self {
            kty: "OKP".to_owned(),
            crv: Some("Ed25519".to_owned()),
            x: Some(URL_SAFE_NO_PAD.encode(public)),
            kid: Some(kid.to_owned()),
            alg: Some("EdDSA".to_owned()),
            use_: Some("sig".to_owned()),
        }
    }

    /// The JWK of the Ed25519 public key in a SubjectPublicKeyInfo PEM file (`openssl pkey
    /// -in old.pem -pubout` writes one): how a retired signing key is configured, so that
    /// only its public half stays deployed while its tokens can still be verified. A private
    /// key file is refused: a retired key must not be able to sign any more.
    pub fn from_public_key_pem_file(path: impl AsRef<Path>, kid: &str) -> Result<Self, KeyError> {
        let path = path.as_ref();
        if !valid_kid(kid) {
            return Err(KeyError::InvalidKid(kid.to_owned()));
        }
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if pem.contains("PRIVATE KEY") {
            // Dropped (and the String freed) without echoing anything of it.
            drop(Zeroizing::new(pem));
            return Err(KeyError::PrivateWherePublic {
                path: path.to_owned(),
            });
        }
        let key =
            VerifyingKey::from_public_key_pem(&pem).map_err(|_| KeyError::NotEd25519PublicPem {
                path: path.to_owned(),
            })?;
        Ok(Self::ed25519(kid, &key.to_bytes()))
    }

    /// The raw public key when this is a usable Ed25519 signing key with a `kid`.
    pub(crate) fn ed25519_key(&self) -> Option<(&str, [u8; 32])> {
        if self.kty != "OKP" || self.crv.as_deref() != Some("Ed25519") {
            return None;
        }
        if self.alg.as_deref().is_some_and(|alg| alg != "EdDSA")
            || self.use_.as_deref().is_some_and(|u| u != "sig")
        {
            return None;
        }
        let kid = self.kid.as_deref()?;
        let x = URL_SAFE_NO_PAD.decode(self.x.as_deref()?).ok()?;
        Some((kid, x.try_into().ok()?))
    }
}

/// A JSON Web Key Set, as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn new(keys: Vec<Jwk>) -> Self {
        Self { keys }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_lives_only_in_a_key_that_wipes_itself() {
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<SigningKey>();
    }

    #[test]
    fn a_retired_key_is_configured_by_its_public_half_only() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let private_pem = Signer::generate_pem();
        let key = SigningKey::from_pkcs8_pem(&private_pem).expect("key");
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("spki pem");
        let public_file = dir.path().join("old.pub.pem");
        std::fs::write(&public_file, &public_pem).expect("write");
        let signer = Signer::from_pkcs8_pem(&private_pem, "2026-old").expect("signer");
        assert_eq!(
            Jwk::from_public_key_pem_file(&public_file, "2026-old").expect("public jwk"),
            signer.jwk()
        );
        let private_file = dir.path().join("old.pem");
        std::fs::write(&private_file, private_pem.as_bytes()).expect("write");
        let error = Jwk::from_public_key_pem_file(&private_file, "2026-old").expect_err("private");
        assert!(
            matches!(error, KeyError::PrivateWherePublic { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("BEGIN"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").expect("write");
        assert!(matches!(
            Jwk::from_public_key_pem_file(&garbage, "2026-old"),
            Err(KeyError::NotEd25519PublicPem { .. })
        ));
    }

    #[test]
    fn pem_roundtrip_and_jwk_shape() {
        let pem = Signer::generate_pem();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.pem");
        std::fs::write(&path, pem.as_bytes()).expect("write");
        let signer = Signer::from_pem_file(&path, "2026-01").expect("valid key");
        let jwk = serde_json::to_value(signer.jwk()).expect("json");
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], "2026-01");
        assert_eq!(jwk["x"].as_str().map(str::len), Some(43));
        assert!(jwk.get("d").is_none(), "never the private part");
        assert_eq!(format!("{signer:?}"), r#"Signer { kid: "2026-01", .. }"#);
    }

    #[test]
    fn bad_files_and_kids_are_named_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-key.pem");
        std::fs::write(&path, "s3cr3t garbage").expect("write");
        let error = Signer::from_pem_file(&path, "k1").expect_err("garbage");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("not-a-key.pem"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let error = Signer::from_pem_file(dir.path().join("missing"), "k1").expect_err("missing");
        assert!(matches!(error, KeyError::Read { .. }));
        let pem = Signer::generate_pem();
        assert!(matches!(
            Signer::from_pkcs8_pem(&pem, "has space"),
            Err(KeyError::InvalidKid(_))
        ));
    }

    #[test]
    fn only_ed25519_signing_keys_are_usable() {
        let signer = Signer::generate("k1").expect("key");
        assert!(signer.jwk().ed25519_key().is_some());
        let mut rsa = signer.jwk();
        rsa.kty = "RSA".to_owned();
        assert!(rsa.ed25519_key().is_none());
        let mut enc = signer.jwk();
        enc.use_ = Some("enc".to_owned());
        assert!(enc.ed25519_key().is_none());
        let mut no_kid = signer.jwk();
        no_kid.kid = None;
        assert!(no_kid.ed25519_key().is_none());
        let mut short = signer.jwk();
        short.x = Some("AAAA".to_owned());
        assert!(short.ed25519_key().is_none());
    }
}
