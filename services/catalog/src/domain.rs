//! Requests become validated values here, and nowhere else ("parse, don't validate").

use comptoir_platform::FieldError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Largest price accepted, in cents (one million in the currency's unit).
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

/// A product as administrators send it (create and full update). Unknown fields are refused
/// so a misspelt field is an error, not silently ignored data.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// Stock-keeping unit: 3–32 characters, uppercase letters, digits and dashes.
    #[schema(example = "COF-ETH-250")]
    pub sku: String,
    #[schema(example = "Ethiopia Yirgacheffe, whole beans, 250 g")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category_id: Option<Uuid>,
    /// Price in the currency's minor unit.
    #[schema(example = 1290)]
    pub price_cents: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

/// A validated product input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Option<Uuid>,
    pub price_cents: i64,
    pub currency: String,
    pub active: bool,
}

impl ProductInput {
    /// Validates every field, reporting all problems at once.
    pub fn parse(self) -> Result<NewProduct, Vec<FieldError>> {
        let mut errors = Vec::new();
        let sku = self.sku.trim().to_owned();
        if !(3..=32).contains(&sku.len())
            || !sku
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
            || sku.starts_with('-')
        {
            errors.push(FieldError::new(
                "sku",
                "must be 3 to 32 characters of A-Z, 0-9 and '-', not starting with '-'",
            ));
        }
        let name = self.name.trim().to_owned();
        let name_len = name.chars().count();
        if name_len == 0 || name_len > 200 {
            errors.push(FieldError::new("name", "must be 1 to 200 characters"));
        }
        if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        let description = self.description.trim().to_owned();
        // Line breaks and tabs are fine in a description; other control characters (NUL above
        // all, which PostgreSQL refuses in text) are not.
        if description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            errors.push(FieldError::new(
                "description",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        if description.chars().count() > 5000 {
            errors.push(FieldError::new(
                "description",
                "must be at most 5000 characters",
            ));
        }
        if !(0..=MAX_PRICE_CENTS).contains(&self.price_cents) {
            errors.push(FieldError::new(
                "price_cents",
                format!("must be between 0 and {MAX_PRICE_CENTS}"),
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            errors.push(FieldError::new(
                "currency",
                "must be a three-letter ISO 4217 code",
            ));
        }
        if errors.is_empty() {
            Ok(NewProduct {
                sku,
                name,
                description,
                category_id: self.category_id,
                price_cents: self.price_cents,
                currency: self.currency,
                active: self.active,
            })
        } else {
            Err(errors)
        }
    }
}

/// A product as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Option<Uuid>,
    pub price_cents: i64,
    pub currency: String,
    pub active: bool,
    /// Incremented by every change; also the ETag.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A category as administrators send it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    /// URL-friendly identifier: lowercase letters, digits and dashes.
    #[schema(example = "coffee", pattern = r"^[a-z0-9-]{1,64}$")]
    pub slug: String,
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(
        example = "Coffee",
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// A validated category input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCategory {
    pub slug: String,
    pub name: String,
}

impl CategoryInput {
    pub fn parse(self) -> Result<NewCategory, Vec<FieldError>> {
        let mut errors = Vec::new();
        let slug = self.slug.trim().to_owned();
        if !(1..=64).contains(&slug.len())
            || !slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            errors.push(FieldError::new(
                "slug",
                "must be 1 to 64 characters of a-z, 0-9 and '-'",
            ));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must be 1 to 100 characters, without control characters",
            ));
        }
        if errors.is_empty() {
            Ok(NewCategory { slug, name })
        } else {
            Err(errors)
        }
    }
}

/// A category as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProductInput {
        ProductInput {
            sku: "COF-1".to_owned(),
            name: " Coffee ".to_owned(),
            description: String::new(),
            category_id: None,
            price_cents: 100,
            currency: "EUR".to_owned(),
            active: true,
        }
    }

    #[test]
    fn valid_input_is_trimmed() {
        let p = input().parse().expect("valid");
        assert_eq!(p.name, "Coffee");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let bad = ProductInput {
            sku: "x".to_owned(),
            name: String::new(),
            price_cents: -1,
            currency: "eur".to_owned(),
            ..input()
        };
        let errors = bad.parse().expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sku", "name", "price_cents", "currency"]);
    }

    #[test]
    fn category_slug_is_checked() {
        let bad = CategoryInput {
            slug: "Bad Slug".to_owned(),
            name: "x".to_owned(),
        };
        assert_eq!(bad.parse().expect_err("invalid")[0].field, "slug");
    }
}
