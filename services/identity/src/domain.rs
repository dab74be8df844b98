//! Request bodies and the validated values they become ("parse, don't validate").
//!
//! Every personal value is held in [`Pii`] from the moment it is parsed, so it cannot end up
//! in a log line or an error message by accident.

use comptoir_platform::FieldError;
use comptoir_privacy::Pii;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest password accepted. Argon2 hashes any length in bounded time, but a cap keeps the
/// strength estimator (quadratic in length) and request sizes reasonable.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask for more).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Most postal addresses a customer may keep.
pub const MAX_ADDRESSES: usize = 10;

/// A syntactically valid email address, normalised (trimmed, lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(Pii<String>);

impl Email {
    /// Accepts `local@domain` where the domain has at least two labels of letters, digits and
    /// hyphens; no whitespace or control characters; at most 254 characters (RFC 5321).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let normalized = comptoir_privacy::normalize_email(raw);
        if normalized.is_empty() {
            return Err("must not be empty");
        }
        if normalized.chars().count() > 254 {
            return Err("must be at most 254 characters");
        }
        if normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = normalized.rsplit_once('@') else {
            return Err("must look like name@example.com");
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err("must look like name@example.com");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("must look like name@example.com");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |label: &&str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err("must look like name@example.com");
        }
        Ok(Self(Pii::new(normalized)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A password that passed the strength rules. Never printed.
#[derive(Clone)]
pub struct Password(Pii<String>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// At least [`PASSWORD_MIN_CHARS`] characters, at most [`PASSWORD_MAX_CHARS`], and
    /// judged at least "safely unguessable" (zxcvbn score 3 of 4) given the customer's own
    /// email and name, which a guesser would try first.
    pub fn parse(raw: &str, user_inputs: &[&str]) -> Result<Self, &'static str> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err("must be at least 12 characters");
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        let entropy = zxcvbn::zxcvbn(raw, user_inputs);
        if (entropy.score() as u8) < 3 {
            return Err("is too easy to guess: avoid common words, names and sequences");
        }
        Ok(Self(Pii::new(raw.to_owned())))
    }

    /// A password as typed at login: only its length is bounded, strength rules apply when
    /// one is chosen, not when one is presented.
    pub fn presented(raw: &str) -> Self {
        Self(Pii::new(raw.chars().take(PASSWORD_MAX_CHARS * 4).collect()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

fn text(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: &str,
    max: usize,
    required: bool,
) -> Option<String> {
    let value = raw.trim();
    if value.is_empty() {
        if required {
            errors.push(FieldError::new(field, "must not be empty"));
        }
        return None;
    }
    if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
        return None;
    }
    if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
        return None;
    }
    Some(value.to_owned())
}

/// A phone number, normalised to `+` and digits (E.164-like: 6 to 15 digits).
fn phone(errors: &mut Vec<FieldError>, raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", trimmed),
    };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        errors.push(FieldError::new(
            "phone",
            "must hold digits, spaces, dashes and an optional leading +",
        ));
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(6..=15).contains(&digits.len()) {
        errors.push(FieldError::new("phone", "must have 6 to 15 digits"));
        return None;
    }
    Some(format!("{plus}{digits}"))
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub postal_code: String,
    pub city: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `FR`.
    pub country: String,
}

/// Addresses are personal data: wiped when the `Pii` holding them is dropped.
impl zeroize::Zeroize for Address {
    fn zeroize(&mut self) {
        self.line1.zeroize();
        self.line2.zeroize();
        self.postal_code.zeroize();
        self.city.zeroize();
        self.country.zeroize();
    }
}

fn addresses(errors: &mut Vec<FieldError>, raw: &[Address]) -> Vec<Address> {
    if raw.len() > MAX_ADDRESSES {
        errors.push(FieldError::new(
            "addresses",
            format!("at most {MAX_ADDRESSES} addresses"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, address) in raw.iter().enumerate() {
        let at = |field: &str| format!("addresses[{i}].{field}");
        let before = errors.len();
        let line1 = text(errors, &at("line1"), &address.line1, 200, true);
        let line2 = address
            .line2
            .as_deref()
            .and_then(|l| text(errors, &at("line2"), l, 200, false));
        let postal_code = text(errors, &at("postal_code"), &address.postal_code, 20, true);
        let city = text(errors, &at("city"), &address.city, 100, true);
        let country = address.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(FieldError::new(
                at("country"),
                "must be an ISO 3166-1 alpha-2 code such as FR",
            ));
        }
        if errors.len() == before
            && let (Some(line1), Some(postal_code), Some(city)) = (line1, postal_code, city)
        {
            out.push(Address {
                line1,
                line2,
                postal_code,
                city,
                country,
            });
        }
    }
    out
}

/// `POST /v1/customers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    #[schema(value_type = String, example = "ada@example.com", max_length = 254)]
    pub email: Pii<String>,
    /// 12 to 128 characters, and not easy to guess (zxcvbn score 3 of 4, the email and the
    /// name counted as known to a guesser): a rule no schema states, hence a 422 for a
    /// schema-valid password that is too weak.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub password: Pii<String>,
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, max_length = 200, pattern = r"\S")]
    pub name: Pii<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Pii<String>>,
    #[serde(default = "no_addresses")]
    #[schema(value_type = Vec<Address>)]
    pub addresses: Pii<Vec<Address>>,
}

fn no_addresses() -> Pii<Vec<Address>> {
    Pii::new(Vec::new())
}

/// The personal data of a customer, decrypted. Debug redacts every field.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    pub email: Email,
    pub name: Pii<String>,
    pub phone: Option<Pii<String>>,
    pub addresses: Pii<Vec<Address>>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Profile([redacted])")
    }
}

/// A validated registration.
#[derive(Debug)]
pub struct Registration {
    pub profile: Profile,
    pub password: Password,
}

impl RegistrationInput {
    pub fn parse(self) -> Result<Registration, Vec<FieldError>> {
        let mut errors = Vec::new();
        let email = Email::parse(self.email.expose())
            .map_err(|m| errors.push(FieldError::new("email", m)))
            .ok();
        let name = text(&mut errors, "name", self.name.expose(), 200, true);
        let phone = self
            .phone
            .as_ref()
            .filter(|p| !p.expose().trim().is_empty())
            .and_then(|p| phone(&mut errors, p.expose()));
        let addresses = addresses(&mut errors, self.addresses.expose());
        let mut inputs: Vec<&str> = Vec::new();
        if let Some(email) = &email {
            inputs.push(email.expose());
            if let Some((local, _)) = email.expose().split_once('@') {
                inputs.push(local);
            }
        }
        if let Some(name) = &name {
            inputs.extend(name.split_whitespace());
        }
        let password = Password::parse(self.password.expose(), &inputs)
            .map_err(|m| errors.push(FieldError::new("password", m)))
            .ok();
        match (email, name, password) {
            (Some(email), Some(name), Some(password)) if errors.is_empty() => Ok(Registration {
                profile: Profile {
                    email,
                    name: Pii::new(name),
                    phone: phone.map(Pii::new),
                    addresses: Pii::new(addresses),
                },
                password,
            }),
            _ => Err(errors),
        }
    }
}

/// `PATCH /v1/me` body: only the fields present change. `phone: null` removes the phone.
/// The email is not changed here: that needs a proof of the new address (a later flow).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// 1 to 200 characters once trimmed.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"\S")]
    pub name: Option<Pii<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<Pii<String>>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Address>>)]
    pub addresses: Option<Pii<Vec<Address>>>,
}

fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl ProfilePatch {
    /// Applies the patch to `profile`, or says which fields are invalid.
    pub fn apply(self, mut profile: Profile) -> Result<Profile, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = self.name
            && let Some(name) = text(&mut errors, "name", name.expose(), 200, true)
        {
            profile.name = Pii::new(name);
        }
        match self.phone {
            None => {}
            Some(None) => profile.phone = None,
            Some(Some(raw)) if raw.expose().trim().is_empty() => profile.phone = None,
            Some(Some(raw)) => {
                if let Some(p) = phone(&mut errors, raw.expose()) {
                    profile.phone = Some(Pii::new(p));
                }
            }
        }
        if let Some(raw) = self.addresses {
            profile.addresses = Pii::new(addresses(&mut errors, raw.expose()));
        }
        if errors.is_empty() {
            Ok(profile)
        } else {
            Err(errors)
        }
    }
}

/// The view of a profile a customer gets back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub addresses: Vec<Address>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada.Lovelace+shop@Example.CO.uk ")
                .expect("valid")
                .expose(),
            "ada.lovelace+shop@example.co.uk"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@exa_mple.com",
            "ada@-example.com",
            "ada@example..com",
            ".ada@example.com",
            "ada\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn weak_passwords_are_refused() {
        for weak in [
            "short",
            "password1234",
            "123456789012",
            "qwertyuiopasdf",
            "aaaaaaaaaaaaaaaa",
            "adalovelace1815",
        ] {
            assert!(
                Password::parse(weak, &["ada", "lovelace", "adalovelace"]).is_err(),
                "{weak:?}"
            );
        }
        assert!(Password::parse("correct horse battery staple", &[]).is_ok());
        assert!(
            Password::parse(&"x9$Lk".repeat(30), &[]).is_err(),
            "too long"
        );
        assert_eq!(
            format!("{:?}", Password::presented("hunter2")),
            "Password([redacted])"
        );
    }

    #[test]
    fn registration_reports_every_bad_field() {
        let input: RegistrationInput = serde_json::from_value(serde_json::json!({
            "email": "nope",
            "password": "password",
            "name": "  ",
            "phone": "call me",
            "addresses": [{"line1": "", "postal_code": "75001", "city": "Paris", "country": "France"}]
        }))
        .expect("shape");
        let errors = input.parse().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for field in [
            "email",
            "name",
            "phone",
            "addresses[0].line1",
            "addresses[0].country",
            "password",
        ] {
            assert!(fields.contains(&field), "{field} not in {fields:?}");
        }
    }

    #[test]
    fn a_valid_registration_is_normalised_and_redacted() {
        let input: RegistrationInput = serde_json::from_value(serde_json::json!({
            "email": "Ada@Example.com",
            "password": "correct horse battery staple",
            "name": " Ada Lovelace ",
            "phone": "+33 6 12-34-56-78",
            "addresses": [{"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "fr"}]
        }))
        .expect("shape");
        let registration = input.parse().expect("valid");
        let profile = &registration.profile;
        assert_eq!(profile.email.expose(), "ada@example.com");
        assert_eq!(profile.name.expose(), "Ada Lovelace");
        assert_eq!(
            profile.phone.as_ref().map(|p| p.expose().as_str()),
            Some("+33612345678")
        );
        assert_eq!(profile.addresses.expose()[0].country, "FR");
        let shown = format!("{registration:?}");
        for secret in ["ada@", "Lovelace", "33612345678", "Rivoli", "horse"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn patch_changes_only_what_is_present() {
        let profile = Profile {
            email: Email::parse("ada@example.com").expect("valid"),
            name: Pii::new("Ada".to_owned()),
            phone: Some(Pii::new("+33612345678".to_owned())),
            addresses: Pii::new(Vec::new()),
        };
        let patch: ProfilePatch =
            serde_json::from_value(serde_json::json!({"name": "Ada L."})).expect("shape");
        let patched = patch.apply(profile.clone()).expect("valid");
        assert_eq!(patched.name.expose(), "Ada L.");
        assert!(patched.phone.is_some());
        let patch: ProfilePatch =
            serde_json::from_value(serde_json::json!({"phone": null})).expect("shape");
        assert!(patch.apply(profile.clone()).expect("valid").phone.is_none());
        assert!(
            serde_json::from_value::<ProfilePatch>(serde_json::json!({"email": "x@y.z"})).is_err(),
            "the email is not changed through PATCH"
        );
    }

    proptest! {
        #[test]
        fn email_parse_never_panics_and_output_is_normal(raw in any::<String>()) {
            if let Ok(email) = Email::parse(&raw) {
                let e = email.expose();
                prop_assert_eq!(e, e.trim().to_lowercase());
                prop_assert_eq!(e.matches('@').count(), 1);
                prop_assert!(!e.chars().any(char::is_whitespace));
            }
        }

        #[test]
        fn generated_addresses_parse(
            local in "[a-z0-9]{1,20}([._+-][a-z0-9]{1,10})?",
            domain in "[a-z0-9]{1,20}(-[a-z0-9]{1,10})?",
            tld in "[a-z]{2,10}",
        ) {
            let raw = format!("{local}@{domain}.{tld}");
            prop_assert_eq!(Email::parse(&raw).map(|e| e.expose().to_owned()), Ok(raw));
        }
    }
}
