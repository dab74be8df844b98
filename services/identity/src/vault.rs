//! Sealing and opening a customer's personal data: the only place plaintext PII meets its
//! ciphertext.
//!
//! Each field is encrypted under the customer's own [`DataKey`] with the AAD
//! `field_aad(customer id, field name)`, so a ciphertext copied to another row or column does
//! not decrypt. The data key is stored wrapped by the [`Keyring`]'s active KEK.

use comptoir_privacy::{
    BlindIndexKey, DataKey, Keyring, Pii, WrappedKey, decrypt, decrypt_str, encrypt, encrypt_str,
    field_aad,
};
use uuid::Uuid;

use crate::domain::{Address, Email, Profile};

/// The blind-index domain of login emails.
pub const EMAIL_INDEX_DOMAIN: &str = "identity/customer-email";
/// Blind-index domain of sign-in clients (their rate-limit key), for the lockout counters.
pub const LOGIN_CLIENT_DOMAIN: &str = "identity/login-client";

/// A customer's personal data as stored: ciphertexts only.
#[derive(Debug, Clone)]
pub struct SealedProfile {
    pub email: Vec<u8>,
    pub name: Vec<u8>,
    pub phone: Option<Vec<u8>>,
    pub addresses: Vec<u8>,
}

/// Why stored personal data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the customer's data key cannot be unwrapped")]
    Unwrap(#[from] comptoir_privacy::UnwrapError),
    #[error("the customer's wrapped data key is malformed")]
    Decode(#[from] comptoir_privacy::WrappedKeyDecodeError),
    #[error("a field of the customer failed to decrypt")]
    Decrypt(#[from] comptoir_privacy::DecryptError),
    #[error("a stored field does not have the expected shape")]
    Shape,
}

/// The login lookup key of an email.
pub fn email_index(key: &BlindIndexKey, email: &Email) -> [u8; 32] {
    key.blind_index(EMAIL_INDEX_DOMAIN, email.expose())
}

/// The lockout key of a client: a keyed hash of its rate-limit key (IPv4 address, IPv6 /64),
/// so the counters hold no address.
pub fn client_index(key: &BlindIndexKey, client: std::net::IpAddr) -> [u8; 32] {
    let client = comptoir_platform::client::rate_limit_key(client);
    key.blind_index(LOGIN_CLIENT_DOMAIN, &client.to_string())
}

/// A fresh data key for a new customer, and its wrapped form to store.
pub fn new_subject_key(keyring: &Keyring, customer: Uuid) -> (DataKey, WrappedKey) {
    let key = DataKey::generate();
    let wrapped = keyring.wrap(&key, customer.as_bytes());
    (key, wrapped)
}

/// Unwraps a stored data key.
pub fn open_subject_key(
    keyring: &Keyring,
    customer: Uuid,
    wrapped: &[u8],
) -> Result<DataKey, VaultError> {
    let wrapped = WrappedKey::from_bytes(wrapped)?;
    Ok(keyring.unwrap(&wrapped, customer.as_bytes())?)
}

fn aad(customer: Uuid, field: &str) -> Vec<u8> {
    field_aad(customer.as_bytes(), field)
}

pub fn seal(key: &DataKey, customer: Uuid, profile: &Profile) -> SealedProfile {
    let addresses =
        serde_json::to_vec(profile.addresses.expose()).expect("addresses always serialise");
    SealedProfile {
        email: encrypt_str(key, profile.email.expose(), &aad(customer, "email")),
        name: encrypt_str(key, profile.name.expose(), &aad(customer, "name")),
        phone: profile
            .phone
            .as_ref()
            .map(|p| encrypt_str(key, p.expose(), &aad(customer, "phone"))),
        addresses: encrypt(key, &addresses, &aad(customer, "addresses")),
    }
}

pub fn open(key: &DataKey, customer: Uuid, sealed: &SealedProfile) -> Result<Profile, VaultError> {
    let email = decrypt_str(key, &sealed.email, &aad(customer, "email"))?;
    let email = Email::parse(email.expose()).map_err(|_| VaultError::Shape)?;
    let name = decrypt_str(key, &sealed.name, &aad(customer, "name"))?;
    let phone = sealed
        .phone
        .as_ref()
        .map(|p| decrypt_str(key, p, &aad(customer, "phone")))
        .transpose()?;
    let addresses = decrypt(key, &sealed.addresses, &aad(customer, "addresses"))?;
    let addresses: Vec<Address> =
        serde_json::from_slice(&addresses).map_err(|_| VaultError::Shape)?;
    Ok(Profile {
        email,
        name,
        phone,
        addresses: Pii::new(addresses),
    })
}

/// What a sealed document is, bound into its AAD so that one cannot pass for another: an
/// export archive, or one service's slice of an export.
#[derive(Debug, Clone, Copy)]
pub enum Document<'a> {
    ExportArchive { export: Uuid },
    ExportSlice { export: Uuid, service: &'a str },
}

impl Document<'_> {
    fn label(&self) -> String {
        match self {
            Self::ExportArchive { export } => format!("export-archive:{export}"),
            Self::ExportSlice { export, service } => format!("export-slice:{export}:{service}"),
        }
    }
}

/// Seals a document about `customer` (an export archive or slice, as JSON bytes) under their
/// data key: erasing the customer shreds it with the rest.
pub fn seal_document(
    key: &DataKey,
    customer: Uuid,
    document: Document<'_>,
    bytes: &[u8],
) -> Vec<u8> {
    encrypt(key, bytes, &aad(customer, &document.label()))
}

/// Opens what [`seal_document`] sealed, for the same customer and document only; the
/// plaintext (an export archive: personal data) is wiped when dropped.
pub fn open_document(
    key: &DataKey,
    customer: Uuid,
    document: Document<'_>,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
    Ok(decrypt(key, sealed, &aad(customer, &document.label()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use comptoir_privacy::{KEY_LEN, Kek};

    fn profile() -> Profile {
        Profile {
            email: Email::parse("ada@example.com").expect("valid"),
            name: Pii::new("Ada Lovelace".to_owned()),
            phone: Some(Pii::new("+33612345678".to_owned())),
            addresses: Pii::new(vec![Address {
                line1: "1 rue de Rivoli".to_owned(),
                line2: None,
                postal_code: "75001".to_owned(),
                city: "Paris".to_owned(),
                country: "FR".to_owned(),
            }]),
        }
    }

    #[test]
    fn sealed_profiles_open_only_for_their_customer() {
        let keyring = Keyring::new(Kek::new("k1", [1; KEY_LEN]).expect("id"));
        let customer = Uuid::new_v4();
        let (key, wrapped) = new_subject_key(&keyring, customer);
        let sealed = seal(&key, customer, &profile());
        for ciphertext in [&sealed.email, &sealed.name, &sealed.addresses] {
            let text = String::from_utf8_lossy(ciphertext);
            for plain in ["ada@example.com", "Ada", "Rivoli", "75001"] {
                assert!(!text.contains(plain));
            }
        }
        let key = open_subject_key(&keyring, customer, &wrapped.to_bytes()).expect("unwrap");
        assert_eq!(open(&key, customer, &sealed).expect("open"), profile());
        assert!(open(&key, Uuid::new_v4(), &sealed).is_err(), "another row");
        assert!(open_subject_key(&keyring, Uuid::new_v4(), &wrapped.to_bytes()).is_err());
        let mut swapped = sealed.clone();
        swapped.name = sealed.email.clone();
        assert!(open(&key, customer, &swapped).is_err(), "another column");
    }

    #[test]
    fn the_email_index_is_deterministic_per_key() {
        let key = BlindIndexKey::from_bytes([2; KEY_LEN]);
        let other = BlindIndexKey::from_bytes([3; KEY_LEN]);
        let a = Email::parse("Ada@Example.com").expect("valid");
        let b = Email::parse("ada@example.com").expect("valid");
        assert_eq!(email_index(&key, &a), email_index(&key, &b));
        assert_ne!(email_index(&key, &a), email_index(&other, &a));
    }

    #[test]
    fn documents_open_only_as_what_they_were_sealed_as() {
        let keyring = Keyring::new(Kek::new("k1", [1; KEY_LEN]).expect("id"));
        let customer = Uuid::new_v4();
        let export = Uuid::new_v4();
        let (key, _) = new_subject_key(&keyring, customer);
        let archive = Document::ExportArchive { export };
        let sealed = seal_document(&key, customer, archive, b"{\"email\":\"ada@example.com\"}");
        assert!(!String::from_utf8_lossy(&sealed).contains("ada@"));
        assert_eq!(
            open_document(&key, customer, archive, &sealed)
                .expect("open")
                .as_slice(),
            b"{\"email\":\"ada@example.com\"}"
        );
        let slice = Document::ExportSlice {
            export,
            service: "catalog",
        };
        assert!(open_document(&key, customer, slice, &sealed).is_err());
        let other = Document::ExportArchive {
            export: Uuid::new_v4(),
        };
        assert!(open_document(&key, customer, other, &sealed).is_err());
        assert!(open_document(&key, Uuid::new_v4(), archive, &sealed).is_err());
        let (other_key, _) = new_subject_key(&keyring, customer);
        assert!(open_document(&other_key, customer, archive, &sealed).is_err());
    }
}
