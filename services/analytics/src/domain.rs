//! Requests become validated values here, and nowhere else ("parse, don't validate"): a batch
//! of clicks, the KPI windows; and the pseudonymisation keys, one per epoch (a UTC month).

use std::collections::BTreeMap;
use std::path::Path;

use comptoir_events::contracts::analytics::{Click, ClickKind};
use comptoir_platform::FieldError;
use comptoir_privacy::pseudonym::{PseudonymKey, Pseudonymizer};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Shortest and longest session id an anonymous batch may carry.
pub const SESSION_CHARS: std::ops::RangeInclusive<usize> = 16..=128;
/// Most units one add-to-cart click may name (as many as a cart line holds).
pub const MAX_QUANTITY: u32 = 999;
/// Longest KPI window, in minutes: a week.
pub const MAX_WINDOW_MINUTES: i64 = 7 * 24 * 60;

/// `POST /v1/events`: a visitor's clicks of the last few seconds.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// The storefront's session id. Required without an access token; ignored with one (the
    /// customer is the visitor). Pseudonymised before it leaves the service, never stored.
    #[serde(default)]
    #[schema(min_length = 16, max_length = 128, pattern = "^[A-Za-z0-9_-]+$")]
    pub session: Option<String>,
    /// The clicks, at most `max_batch_clicks` (500 by default).
    #[schema(min_items = 1, max_items = 500)]
    pub events: Vec<ClickInput>,
}

/// What a click is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClickType {
    PageView,
    ProductView,
    Search,
    AddToCart,
}

impl From<ClickType> for ClickKind {
    fn from(kind: ClickType) -> Self {
        match kind {
            ClickType::PageView => Self::PageView,
            ClickType::ProductView => Self::ProductView,
            ClickType::Search => Self::Search,
            ClickType::AddToCart => Self::AddToCart,
        }
    }
}

/// The kind of page a page view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PageKind {
    Home,
    Category,
    Product,
    Search,
    Cart,
    Checkout,
    Account,
    Other,
}

impl PageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::Category => "category",
            Self::Product => "product",
            Self::Search => "search",
            Self::Cart => "cart",
            Self::Checkout => "checkout",
            Self::Account => "account",
            Self::Other => "other",
        }
    }
}

/// One click as the storefront sends it. `product_id` goes with `product-view` and
/// `add-to-cart`, `page` with `page-view`, `results` with `search`, `quantity` with
/// `add-to-cart`, and nowhere else.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickInput {
    #[serde(rename = "type")]
    pub kind: ClickType,
    /// When it happened (RFC 3339); at most a few minutes ahead, at most a day old.
    #[schema(example = "2026-12-03T10:00:00Z", format = DateTime)]
    pub at: String,
    /// The product, for `product-view` and `add-to-cart`.
    #[serde(default)]
    pub product_id: Option<Uuid>,
    /// The kind of page, for `page-view`.
    #[serde(default)]
    pub page: Option<PageKind>,
    /// How many results a `search` found (the search terms are never sent).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub results: Option<u32>,
    /// Units put in the cart, for `add-to-cart`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: Option<u32>,
}

/// The bounds a click's time must fall within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_clicks: usize,
    pub max_future_skew: Duration,
    pub max_age: Duration,
}

/// Who sent a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visitor {
    /// A signed-in customer (identity's opaque id).
    Customer(Uuid),
    /// An anonymous storefront session.
    Session(String),
}

impl BatchInput {
    /// Who sent the batch (`customer` when signed in, else its session) and its clicks, each
    /// checked; every problem is reported at once.
    pub fn parse(
        self,
        customer: Option<Uuid>,
        now: OffsetDateTime,
        limits: Limits,
    ) -> Result<(Visitor, Vec<Click>), Vec<FieldError>> {
        let mut errors = Vec::new();
        let visitor = if let Some(customer) = customer {
            Some(Visitor::Customer(customer))
        } else {
            match self.session {
                Some(session) if valid_session(&session) => Some(Visitor::Session(session)),
                Some(_) => {
                    errors.push(FieldError::new(
                        "session",
                        "must be 16 to 128 characters of A-Z, a-z, 0-9, '_' or '-'",
                    ));
                    None
                }
                None => {
                    errors.push(FieldError::new(
                        "session",
                        "is required without an access token",
                    ));
                    None
                }
            }
        };
        if self.events.is_empty() {
            errors.push(FieldError::new("events", "must hold at least one click"));
        }
        if self.events.len() > limits.max_clicks {
            errors.push(FieldError::new(
                "events",
                format!(
                    "holds {} clicks; at most {} are accepted in one batch",
                    self.events.len(),
                    limits.max_clicks
                ),
            ));
            return Err(errors);
        }
        let mut clicks = Vec::with_capacity(self.events.len());
        for (index, input) in self.events.into_iter().enumerate() {
            match input.parse(now, limits) {
                Ok(click) => clicks.push(click),
                Err(problems) => errors.extend(problems.into_iter().map(|(field, message)| {
                    FieldError::new(format!("events[{index}].{field}"), message)
                })),
            }
        }
        match visitor {
            Some(visitor) if errors.is_empty() => Ok((visitor, clicks)),
            _ => Err(errors),
        }
    }
}

fn valid_session(session: &str) -> bool {
    SESSION_CHARS.contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ClickInput {
    fn parse(
        self,
        now: OffsetDateTime,
        limits: Limits,
    ) -> Result<Click, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let kind = ClickKind::from(self.kind);
        let at =
            match OffsetDateTime::parse(&self.at, &time::format_description::well_known::Rfc3339) {
                Ok(at) if at > now + limits.max_future_skew => {
                    errors.push(("at", "is too far in the future".to_owned()));
                    None
                }
                Ok(at) if at < now - limits.max_age => {
                    errors.push(("at", "is too old to be counted".to_owned()));
                    None
                }
                Ok(at) => Some(at.to_offset(time::UtcOffset::UTC)),
                Err(_) => {
                    errors.push(("at", "must be an RFC 3339 date-time".to_owned()));
                    None
                }
            };
        let wants = |field: &'static str, present: bool, needed: bool, errors: &mut Vec<_>| match (
            present, needed,
        ) {
            (false, true) => errors.push((field, "is required for this type".to_owned())),
            (true, false) => errors.push((field, "does not apply to this type".to_owned())),
            _ => {}
        };
        use ClickKind::*;
        wants(
            "product_id",
            self.product_id.is_some(),
            matches!(kind, ProductView | AddToCart),
            &mut errors,
        );
        wants("page", self.page.is_some(), kind == PageView, &mut errors);
        wants(
            "results",
            self.results.is_some(),
            kind == Search,
            &mut errors,
        );
        wants(
            "quantity",
            self.quantity.is_some(),
            kind == AddToCart,
            &mut errors,
        );
        if let Some(quantity) = self.quantity
            && !(1..=MAX_QUANTITY).contains(&quantity)
        {
            errors.push(("quantity", format!("must be between 1 and {MAX_QUANTITY}")));
        }
        match at {
            Some(at) if errors.is_empty() => Ok(Click {
                kind,
                at,
                product_id: self.product_id,
                page: self.page.map(|page| page.as_str().to_owned()),
                results: self.results,
                quantity: self.quantity,
            }),
            _ => Err(errors),
        }
    }
}

/// The start of the minute `at` falls in (UTC): the tumbling window it is counted in.
pub fn minute_of(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_second(0)
        .and_then(|at| at.replace_nanosecond(0))
        .expect("0 is a valid second and nanosecond")
}

/// The pseudonymisation epoch of `at`: its UTC month, `YYYY-MM`.
pub fn epoch_of(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

/// The pseudonymisation keys read from `pseudonym_keys_dir`.
pub struct PseudonymKeys {
    pub pseudonymizer: Pseudonymizer,
    pub epochs: Vec<String>,
}

impl std::fmt::Debug for PseudonymKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKeys")
            .field("epochs", &self.epochs)
            .finish()
    }
}

impl PseudonymKeys {
    /// Reads every `<YYYY-MM>.key` file of `dir`. Files not ending in `.key` are left alone (the
    /// directory may hold the service's other secrets); a `.key` file named otherwise is a
    /// mistake worth stopping for.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(dir)
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
        let mut keys = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Other secrets may share the directory (the fleet mounts one Secret per service),
            // and a Kubernetes secret volume has entries of its own (`..data`).
            if name.starts_with('.') || !name.ends_with(".key") {
                continue;
            }
            let Some(epoch) = name.strip_suffix(".key").filter(|e| valid_epoch(e)) else {
                return Err(format!(
                    "{} is not named <YYYY-MM>.key",
                    entry.path().display()
                ));
            };
            let key = PseudonymKey::from_file(entry.path())
                .map_err(|error| format!("{}: {error}", entry.path().display()))?;
            keys.insert(epoch.to_owned(), key);
        }
        if keys.is_empty() {
            return Err(format!("{} holds no <YYYY-MM>.key file", dir.display()));
        }
        let epochs = keys.keys().cloned().collect();
        let pseudonymizer = keys
            .into_iter()
            .fold(Pseudonymizer::new(), |p, (epoch, key)| {
                p.with_epoch(epoch, key)
            });
        Ok(Self {
            pseudonymizer,
            epochs,
        })
    }
}

fn valid_epoch(epoch: &str) -> bool {
    let bytes = epoch.as_bytes();
    bytes.len() == 7
        && bytes[4] == b'-'
        && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit)
        && matches!(epoch[5..].parse::<u8>(), Ok(1..=12))
}

/// The window of a KPI query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// The window: the last this many minutes (1 to 10080), 60 by default.
    #[param(minimum = 1, maximum = 10080)]
    pub minutes: Option<i64>,
    /// How many products, for rankings (1 to 100), 10 by default.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A checked KPI window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub minutes: i64,
    pub limit: i64,
}

impl WindowQuery {
    pub fn parse(self) -> Result<Window, Vec<FieldError>> {
        let mut errors = Vec::new();
        let minutes = self.minutes.unwrap_or(60);
        if !(1..=MAX_WINDOW_MINUTES).contains(&minutes) {
            errors.push(FieldError::new(
                "minutes",
                format!("must be between 1 and {MAX_WINDOW_MINUTES}"),
            ));
        }
        let limit = self.limit.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            errors.push(FieldError::new("limit", "must be between 1 and 100"));
        }
        if errors.is_empty() {
            Ok(Window { minutes, limit })
        } else {
            Err(errors)
        }
    }
}

/// What `POST /v1/events` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Clicks put on the click stream.
    pub accepted: usize,
    /// Clicks dropped because the signed-in customer has not granted the analytics consent.
    pub dropped: usize,
}

/// One product's count in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductCount {
    pub product_id: Uuid,
    pub views: i64,
}

/// The most viewed products of a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopProducts {
    pub minutes: i64,
    pub products: Vec<ProductCount>,
}

/// One minute of a product's views and add-to-carts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MinuteCount {
    /// Start of the minute (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub minute: OffsetDateTime,
    pub views: i64,
    pub added_to_cart: i64,
}

/// A product's per-minute series over a window (minutes without clicks are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductSeries {
    pub product_id: Uuid,
    pub minutes: i64,
    pub series: Vec<MinuteCount>,
}

/// The funnel of a window: how many product views, add-to-carts, checkouts and confirmed
/// orders, and the ratios between the steps (null when the step before is zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Funnel {
    pub minutes: i64,
    pub page_views: i64,
    pub product_views: i64,
    pub searches: i64,
    pub add_to_carts: i64,
    pub checkouts: i64,
    pub confirmed_orders: i64,
    pub cancelled_orders: i64,
    /// Add-to-carts per product view.
    pub view_to_cart: Option<f64>,
    /// Checkouts per add-to-cart.
    pub cart_to_checkout: Option<f64>,
    /// Confirmed orders per checkout.
    pub checkout_to_order: Option<f64>,
    /// Confirmed orders per product view: the conversion rate.
    pub conversion: Option<f64>,
    /// Revenue of the confirmed orders, in minor units, per currency.
    pub revenue_minor: BTreeMap<String, i64>,
}

/// `numerator / denominator`, or None when nothing came before.
pub fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-03 10:00:30 UTC);

    fn limits() -> Limits {
        Limits {
            max_clicks: 3,
            max_future_skew: Duration::minutes(5),
            max_age: Duration::days(1),
        }
    }

    fn click(kind: ClickType) -> ClickInput {
        ClickInput {
            kind,
            at: "2026-12-03T10:00:00Z".to_owned(),
            product_id: None,
            page: None,
            results: None,
            quantity: None,
        }
    }

    fn batch(events: Vec<ClickInput>) -> BatchInput {
        BatchInput {
            session: Some("s".repeat(20)),
            events,
        }
    }

    #[test]
    fn a_good_batch_parses() {
        let product = Uuid::from_u128(7);
        let events = vec![
            ClickInput {
                page: Some(PageKind::Home),
                ..click(ClickType::PageView)
            },
            ClickInput {
                product_id: Some(product),
                quantity: Some(2),
                at: "2026-12-03T11:00:00+01:00".into(),
                ..click(ClickType::AddToCart)
            },
        ];
        let (visitor, clicks) = batch(events).parse(None, NOW, limits()).expect("valid");
        assert_eq!(visitor, Visitor::Session("s".repeat(20)));
        assert_eq!(clicks[1].kind, ClickKind::AddToCart);
        assert_eq!(clicks[1].at, datetime!(2026-12-03 10:00:00 UTC));
        assert_eq!(clicks[1].at.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn every_problem_of_a_batch_is_named() {
        let events = vec![
            ClickInput {
                at: "2026-12-03T10:30:00Z".into(),
                ..click(ClickType::Search)
            },
            ClickInput {
                at: "yesterday".into(),
                page: Some(PageKind::Cart),
                ..click(ClickType::PageView)
            },
            ClickInput {
                page: Some(PageKind::Cart),
                ..click(ClickType::ProductView)
            },
        ];
        let mut input = batch(events);
        input.session = Some("short".into());
        let errors = input.parse(None, NOW, limits()).expect_err("invalid");
        let fields: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        for expected in [
            (
                "session",
                "must be 16 to 128 characters of A-Z, a-z, 0-9, '_' or '-'",
            ),
            ("events[0].at", "is too far in the future"),
            ("events[0].results", "is required for this type"),
            ("events[1].at", "must be an RFC 3339 date-time"),
            ("events[2].product_id", "is required for this type"),
            ("events[2].page", "does not apply to this type"),
        ] {
            assert!(fields.contains(&expected), "{expected:?} not in {fields:?}");
        }
        assert_eq!(fields.len(), 6, "{fields:?}");
    }

    #[test]
    fn size_age_and_sessions_are_bounded() {
        let too_many = batch(vec![click(ClickType::Search); 4]);
        let errors = too_many.parse(None, NOW, limits()).expect_err("too many");
        assert!(errors[0].message.contains("at most 3"), "{errors:?}");
        let old = batch(vec![ClickInput {
            at: "2026-12-01T10:00:00Z".into(),
            results: Some(3),
            ..click(ClickType::Search)
        }]);
        let errors = old.parse(None, NOW, limits()).expect_err("too old");
        assert_eq!(errors[0].field, "events[0].at");
        let mut anonymous = batch(vec![ClickInput {
            results: Some(0),
            ..click(ClickType::Search)
        }]);
        anonymous.session = None;
        assert_eq!(
            anonymous
                .clone()
                .parse(None, NOW, limits())
                .expect_err("no session")[0]
                .field,
            "session"
        );
        let customer = Uuid::from_u128(3);
        let (visitor, _) = anonymous
            .parse(Some(customer), NOW, limits())
            .expect("signed in");
        assert_eq!(visitor, Visitor::Customer(customer));
        assert!(batch(vec![]).parse(None, NOW, limits()).is_err());
    }

    #[test]
    fn fields_that_do_not_apply_are_refused() {
        let errors = batch(vec![ClickInput {
            product_id: Some(Uuid::from_u128(1)),
            quantity: Some(1000),
            ..click(ClickType::Search)
        }])
        .parse(None, NOW, limits())
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"events[0].product_id"));
        assert!(fields.contains(&"events[0].quantity"));
        assert!(fields.contains(&"events[0].results"));
    }

    #[test]
    fn minutes_and_epochs_are_utc() {
        let at = datetime!(2026-12-31 23:59:59.9 -01:00);
        assert_eq!(minute_of(at), datetime!(2027-01-01 00:59:00 UTC));
        assert_eq!(epoch_of(at), "2027-01");
        assert_eq!(epoch_of(datetime!(2026-03-05 00:00 UTC)), "2026-03");
    }

    #[test]
    fn epochs_are_months() {
        for good in ["2026-01", "2026-12"] {
            assert!(valid_epoch(good), "{good}");
        }
        for bad in [
            "2026-13", "2026-00", "26-01", "2026_01", "2026-1x", "2026-011",
        ] {
            assert!(!valid_epoch(bad), "{bad}");
        }
    }

    #[test]
    fn windows_are_bounded() {
        let window = WindowQuery {
            minutes: None,
            limit: None,
        };
        assert_eq!(
            window.parse().expect("defaults"),
            Window {
                minutes: 60,
                limit: 10
            }
        );
        let errors = WindowQuery {
            minutes: Some(0),
            limit: Some(101),
        }
        .parse()
        .expect_err("out of range");
        assert_eq!(errors.len(), 2);
        assert_eq!(ratio(1, 0), None);
        assert_eq!(ratio(1, 4), Some(0.25));
    }
}
