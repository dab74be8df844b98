//! Limits on the credential routes: request rates per client address and per email (in
//! memory, `governor`'s GCRA), and lockout after consecutive failures (in PostgreSQL, so it
//! holds across restarts and replicas; see `repo::record_login_failure`).
//!
//! [`login_key`], [`lockout`] and [`count_failure`] are the lockout bookkeeping shared by
//! sign-in and re-authentication (erasure).
//!
//! The in-memory rates are per process: with N replicas a client gets at most N times the
//! rate, which is still bounded; the lockout is the hard limit and is shared.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use comptoir_platform::Problem;
use comptoir_platform::client::{TrustedProxies, rate_limit_key};
use time::OffsetDateTime;

use crate::error::{problem, too_many};
use crate::{AppState, repo, vault};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Rates and lockout of the credential routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Registrations and sign-ins per client address per minute.
    pub per_ip_per_minute: u32,
    /// Sign-ins per email per minute (counted by blind index, whether the email exists or not).
    pub per_email_per_minute: u32,
    /// Consecutive failed sign-ins for one email that lock it.
    pub lockout_threshold: u32,
    /// How long a locked email stays locked.
    pub lockout_secs: u64,
    /// Networks whose `X-Forwarded-For` is believed (the gateway's: CIDRs, since its pods
    /// move); empty: none, and every request behind the gateway counts as the gateway's.
    pub trusted_proxies: TrustedProxies,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 60,
            per_email_per_minute: 10,
            lockout_threshold: 5,
            lockout_secs: 900,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl LoginSettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.per_ip_per_minute == 0 || self.per_email_per_minute == 0 {
            problems.push(format!(
                "{prefix}.per_ip_per_minute and per_email_per_minute must be greater than 0"
            ));
        }
        if self.lockout_threshold == 0 || self.lockout_secs == 0 {
            problems.push(format!(
                "{prefix}.lockout_threshold and lockout_secs must be greater than 0"
            ));
        }
        problems
    }
}

/// The in-memory rate limits.
#[derive(Debug)]
pub struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_email: DefaultKeyedRateLimiter<[u8; 32]>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new(settings: &LoginSettings) -> Self {
        Self {
            per_ip: RateLimiter::keyed(per_minute(settings.per_ip_per_minute)),
            per_email: RateLimiter::keyed(per_minute(settings.per_email_per_minute)),
        }
    }

    /// Admits one request from `ip` (counted under its [`rate_limit_key`], as the gateway
    /// counts it), or says how long to wait.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.per_ip
            .check_key(&rate_limit_key(ip))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Admits one sign-in for the email with this blind index, or says how long to wait.
    pub fn check_email(&self, email_index: [u8; 32]) -> Result<(), Duration> {
        self.per_email
            .check_key(&email_index)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.per_email.retain_recent();
    }
}

/// Calls [`LoginLimiter::forget_idle`] every minute until `shutdown`.
pub async fn run_housekeeping(limiter: Arc<LoginLimiter>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
        }
    }
}

/// Whose failures count together for the lockout: this email from this client.
pub(crate) fn login_key(
    state: &AppState,
    email_index: [u8; 32],
    client: std::net::IpAddr,
) -> repo::LoginKey {
    repo::LoginKey {
        email_index,
        client_index: vault::client_index(&state.keys.blind_index, client),
    }
}

/// The lockout answer when this client is locked out of this email: the same 429 for a
/// customer's email and for nobody's.
pub(crate) async fn lockout(
    state: &AppState,
    key: &repo::LoginKey,
) -> Result<Option<Response>, Problem> {
    let Some(until) = repo::locked_until(&state.pool, key)
        .await
        .map_err(problem)?
    else {
        return Ok(None);
    };
    let wait = (until - OffsetDateTime::now_utc()).unsigned_abs();
    Ok(Some(too_many(
        "login-locked",
        "Too many failed sign-ins for this account",
        wait,
    )))
}

/// Counts a wrong password (sign-in or re-authentication) against this client and email.
pub(crate) async fn count_failure(state: &AppState, key: &repo::LoginKey) -> Result<(), Problem> {
    let locked = repo::record_login_failure(
        &state.pool,
        key,
        state.login.lockout_threshold,
        state.login.lockout_secs,
    )
    .await
    .map_err(problem)?;
    if locked.is_some() {
        tracing::warn!("Sign-ins locked for an email from one client after consecutive failures");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_key() {
        let limiter = LoginLimiter::new(&LoginSettings {
            per_ip_per_minute: 2,
            per_email_per_minute: 1,
            ..LoginSettings::default()
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(limiter.check_ip(a).is_ok());
        assert!(limiter.check_ip(a).is_ok());
        let wait = limiter.check_ip(a).expect_err("third in a minute");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limiter.check_ip(b).is_ok());
        // One IPv6 /64 is one client, as at the gateway.
        let c: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let d: IpAddr = "2001:db8:1:2:ffff::7".parse().expect("ip");
        assert!(limiter.check_ip(c).is_ok());
        assert!(limiter.check_ip(d).is_ok());
        assert!(limiter.check_ip(c).is_err(), "the /64 has used its two");
        assert!(limiter.check_email([1; 32]).is_ok());
        assert!(limiter.check_email([1; 32]).is_err());
        assert!(limiter.check_email([2; 32]).is_ok());
        limiter.forget_idle();
    }

    #[test]
    fn zero_rates_are_refused() {
        let settings = LoginSettings {
            per_ip_per_minute: 0,
            lockout_threshold: 0,
            ..LoginSettings::default()
        };
        assert_eq!(settings.problems("login").len(), 2);
    }
}
