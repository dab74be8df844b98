//! What an access token says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The scope of a token issued to a signed-in customer.
pub const CUSTOMER_SCOPE: &str = "customer";

/// The claims of a Comptoir access token. Nothing personal: the subject is an opaque id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: identity's configured name.
    pub iss: String,
    /// Subject: the customer id.
    pub sub: Uuid,
    /// Audience: who the token is for (the platform's API).
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Token id, unique per token (for audit and, later, deny lists).
    pub jti: Uuid,
    /// Space-separated scopes, e.g. `customer`.
    pub scope: String,
    /// The session (refresh-token family) this token was issued in; logout revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

impl Claims {
    /// Fresh claims for `subject`, valid `ttl` from now.
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: Uuid,
        scope: &str,
        ttl: Duration,
        session: Option<Uuid>,
    ) -> Self {
        let now = now_secs();
        Self {
            iss: issuer.to_owned(),
            sub: subject,
            aud: audience.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            jti: Uuid::new_v4(),
            scope: scope.to_owned(),
            sid: session,
        }
    }

    /// Whether the space-separated `scope` holds `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split(' ').any(|s| s == wanted)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_claims_expire_after_the_ttl() {
        let sub = Uuid::new_v4();
        let claims = Claims::new(
            "iss",
            "aud",
            sub,
            "customer",
            Duration::from_secs(300),
            None,
        );
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.sub, sub);
        assert!(claims.has_scope("customer"));
        assert!(!claims.has_scope("admin"));
        let json = serde_json::to_value(&claims).expect("json");
        assert!(json.get("sid").is_none());
    }
}
