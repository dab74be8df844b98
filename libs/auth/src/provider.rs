//! The `jsonwebtoken` crypto provider Comptoir installs: EdDSA (Ed25519) only.
//!
//! `jsonwebtoken` 10 separates JWT handling from the signature primitives. Its bundled
//! RustCrypto provider links RSA (whose crate carries an unfixed timing advisory,
//! RUSTSEC-2023-0071) and its other one links aws-lc (a C build). We need one algorithm, so we
//! provide exactly that one on `ed25519-dalek`; every other algorithm is refused here too, on
//! top of the [`crate::Verifier`]'s own algorithm check.

use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Installs the EdDSA-only provider for this process; later calls do nothing. Every entry
/// point of this crate that signs or verifies calls it first.
pub(crate) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider was installed already (by an earlier call in this process).
        let _ = PROVIDER.install_default();
    });
}

fn signer_factory(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(Error::from(ErrorKind::InvalidAlgorithm));
    }
    let key = SigningKey::from_pkcs8_der(key.inner())
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(EdDsaSigner(key)))
}

fn verifier_factory(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(Error::from(ErrorKind::InvalidAlgorithm));
    }
    let bytes: &[u8; 32] = key
        .as_bytes()
        .try_into()
        .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    let key =
        VerifyingKey::from_bytes(bytes).map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(EdDsaVerifier(key)))
}

struct EdDsaSigner(SigningKey);

impl signature::Signer<Vec<u8>> for EdDsaSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(signature::Signer::<Signature>::sign(&self.0, message)
            .to_bytes()
            .to_vec())
    }
}

impl JwtSigner for EdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdDsaVerifier(VerifyingKey);

impl signature::Verifier<Vec<u8>> for EdDsaVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let signature = Signature::from_slice(signature)?;
        // Strict: refuses small-order keys and non-canonical signatures (malleability).
        self.0.verify_strict(message, &signature)
    }
}

impl JwtVerifier for EdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}
