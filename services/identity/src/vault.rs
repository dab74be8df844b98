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
}
