//! Verifying access tokens: EdDSA from a known key, right issuer and audience, not expired.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{Claims, Jwks};

/// Clock skew tolerated on `exp`, in seconds: small next to a five-minute token.
pub const LEEWAY_SECS: u64 = 30;

/// Why a token was refused. None of these says anything about a key's secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not EdDSA")]
    UnsupportedAlgorithm,
    #[error("the token names no key id")]
    MissingKid,
    #[error("the token's key id {0:?} is unknown")]
    UnknownKid(String),
    #[error("the token's signature is invalid")]
    InvalidSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the keys to verify the token are unavailable: {0}")]
    KeysUnavailable(String),
}

/// Verifies access tokens against a fixed set of public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Verifier {
    /// A verifier for tokens from `issuer` to `audience`, signed by one of `jwks`' Ed25519
    /// keys. Keys of any other type are ignored, not trusted.
    pub fn new(jwks: &Jwks, issuer: &str, audience: &str) -> Self {
        crate::provider::install();
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| jwk.ed25519_key())
            .filter_map(|(kid, x)| {
                DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x))
                    .ok()
                    .map(|key| (kid.to_owned(), key))
            })
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self { keys, validation }
    }

    /// Whether a key with this id is known.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The verified claims of `token`.
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        // The header is read before the signature is checked, only to pick the key: nothing
        // in it is trusted (an embedded `jwk` or `jku` is never used).
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            // alg "none", "HS256"... parse or not; anything but EdDSA is refused below too.
            ErrorKind::Json(_) | ErrorKind::InvalidAlgorithmName => {
                VerifyError::UnsupportedAlgorithm
            }
            _ => VerifyError::Malformed,
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(VerifyError::MissingKid)?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidEddsaKey => {
                    VerifyError::InvalidSignature
                }
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    VerifyError::UnsupportedAlgorithm
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    VerifyError::InvalidClaims(format!("missing {claim}"))
                }
                ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                    VerifyError::InvalidClaims("wrong shape".to_owned())
                }
                _ => VerifyError::Malformed,
            })
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("Verifier").field("kids", &kids).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::Signer;
    use crate::claims::now_secs;

    const ISS: &str = "comptoir-identity";
    const AUD: &str = "comptoir";

    fn claims() -> Claims {
        Claims::new(
            ISS,
            AUD,
            Uuid::new_v4(),
            "customer",
            Duration::from_secs(300),
            None,
        )
    }

    fn setup() -> (Signer, Verifier) {
        let signer = Signer::generate("k1").expect("key");
        let verifier = Verifier::new(&Jwks::new(vec![signer.jwk()]), ISS, AUD);
        (signer, verifier)
    }

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).expect("json"))
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let (signer, verifier) = setup();
        let claims = claims();
        let token = signer.issue(&claims).expect("sign");
        assert_eq!(verifier.verify(&token), Ok(claims));
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "k1");
    }

    #[test]
    fn alg_none_is_refused() {
        let (signer, verifier) = setup();
        let token = signer.issue(&claims()).expect("sign");
        let payload = token.split('.').nth(1).expect("payload");
        for header in [
            serde_json::json!({"alg": "none", "kid": "k1"}),
            serde_json::json!({"alg": "None", "kid": "k1"}),
            serde_json::json!({"kid": "k1"}),
        ] {
            for signature in ["", "AAAA"] {
                let forged = format!("{}.{payload}.{signature}", b64(&header));
                assert_eq!(
                    verifier.verify(&forged),
                    Err(VerifyError::UnsupportedAlgorithm),
                    "{header}"
                );
            }
        }
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_refused() {
        let (signer, verifier) = setup();
        let jwk = signer.jwk();
        let public = URL_SAFE_NO_PAD.decode(jwk.x.expect("x")).expect("b64");
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        // The classic confusion, forged by hand: our provider cannot even compute HMACs.
        let head = b64(&serde_json::to_value(&header).expect("json"));
        let body = b64(&serde_json::to_value(claims()).expect("json"));
        let mac = hmac_sha256(&public, format!("{head}.{body}").as_bytes());
        let forged = format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(mac));
        assert_eq!(
            verifier.verify(&forged),
            Err(VerifyError::UnsupportedAlgorithm)
        );
    }

    fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn unknown_or_missing_kid_is_refused() {
        let (_, verifier) = setup();
        let other = Signer::generate("k2").expect("key");
        let token = other.issue(&claims()).expect("sign");
        assert_eq!(
            verifier.verify(&token),
            Err(VerifyError::UnknownKid("k2".to_owned()))
        );
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
        let rest = token.split_once('.').expect("dot").1;
        assert_eq!(
            verifier.verify(&format!("{}.{rest}", b64(&header))),
            Err(VerifyError::MissingKid)
        );
    }

    #[test]
    fn a_key_claiming_a_known_kid_is_not_trusted() {
        let (_, verifier) = setup();
        let impostor = Signer::generate("k1").expect("key");
        let token = impostor.issue(&claims()).expect("sign");
        assert_eq!(verifier.verify(&token), Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn expired_tokens_are_refused_past_the_leeway() {
        let (signer, verifier) = setup();
        let mut stale = claims();
        stale.iat = now_secs() - 1000;
        stale.exp = now_secs() - LEEWAY_SECS - 5;
        let token = signer.issue(&stale).expect("sign");
        assert_eq!(verifier.verify(&token), Err(VerifyError::Expired));
        let mut skewed = claims();
        skewed.exp = now_secs() - 5;
        let token = signer.issue(&skewed).expect("sign");
        assert!(verifier.verify(&token).is_ok(), "within the leeway");
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let (signer, verifier) = setup();
        let mut claims_aud = claims();
        claims_aud.aud = "elsewhere".to_owned();
        let token = signer.issue(&claims_aud).expect("sign");
        assert_eq!(verifier.verify(&token), Err(VerifyError::WrongAudience));
        let mut claims_iss = claims();
        claims_iss.iss = "evil".to_owned();
        let token = signer.issue(&claims_iss).expect("sign");
        assert_eq!(verifier.verify(&token), Err(VerifyError::WrongIssuer));
    }

    #[test]
    fn a_subject_that_is_not_a_uuid_is_refused() {
        let (signer, verifier) = setup();
        let token = signer.issue(&claims()).expect("sign");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
        body["sub"] = "ada@example.com".into();
        parts[1] = b64(&body);
        // Re-signed properly: only the claim shape is wrong.
        let token = signer.sign_compact(format!("{}.{}", parts[0], parts[1]));
        assert!(matches!(
            verifier.verify(&token),
            Err(VerifyError::InvalidClaims(_))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let (_, verifier) = setup();
        for token in ["", "a", "a.b", "a.b.c", "...", "ey.ey.ey"] {
            assert!(verifier.verify(token).is_err(), "{token:?}");
        }
        assert_eq!(format!("{verifier:?}"), r#"Verifier { kids: ["k1"] }"#);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_tampered_byte_is_refused(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (signer, verifier) = setup();
            let token = signer.issue(&claims()).expect("sign");
            let mut bytes = token.into_bytes();
            let i = index.index(bytes.len());
            bytes[i] ^= flip;
            // Not every flip keeps valid UTF-8/base64; those are refused as malformed.
            if let Ok(tampered) = String::from_utf8(bytes) {
                prop_assert!(verifier.verify(&tampered).is_err());
            }
        }

        #[test]
        fn a_forged_signature_is_refused(signature in proptest::collection::vec(any::<u8>(), 64)) {
            let (signer, verifier) = setup();
            let token = signer.issue(&claims()).expect("sign");
            let (message, _) = token.rsplit_once('.').expect("dot");
            let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
            prop_assert_eq!(verifier.verify(&forged), Err(VerifyError::InvalidSignature));
        }

        #[test]
        fn a_tampered_payload_is_refused(sub in any::<u128>()) {
            let (signer, verifier) = setup();
            let token = signer.issue(&claims()).expect("sign");
            let parts: Vec<&str> = token.split('.').collect();
            let mut body = serde_json::to_value(claims()).expect("json");
            body["sub"] = Uuid::from_u128(sub).to_string().into();
            let forged = format!("{}.{}.{}", parts[0], b64(&body), parts[2]);
            prop_assert_eq!(verifier.verify(&forged), Err(VerifyError::InvalidSignature));
        }
    }
}
