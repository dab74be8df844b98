//! A SIMULATION of a payment service provider: no real money moves, no real card is charged.
//!
//! [`SimulatedProvider`] stands where a real PSP's API client would (it implements
//! [`PaymentProvider`]), so the checkout saga can run end to end on a laptop and in tests. It
//! behaves like an outside party in the ways that matter to payments' design:
//!
//! - **Latency** (`simulated_provider.latency_ms`): every call takes a while.
//! - **Transient failures** (`simulated_provider.failure_rate`, 0.0–1.0): a call may fail
//!   with [`ProviderError::Unavailable`] *before* doing anything, as a 503 would.
//! - **Test card tokens** decide authorisations:
//!
//!   | token | answer |
//!   |---|---|
//!   | `tok_success` | authorised (reference `sim_<32 hex>`) |
//!   | `tok_decline` | `Declined("card-declined")` |
//!   | `tok_insufficient_funds` | `Declined("insufficient-funds")` |
//!   | `tok_timeout` | authorises, then never answers (hangs for an hour): the caller's timeout fires while the money is held |
//!   | anything else | `Declined("invalid-token")` |
//!
//! - **It remembers every idempotency key** and the answer it gave, in its own table
//!   `simulated_provider_operations`, written through **its own connections**, never through
//!   the transaction of the payments handler that calls it. A real provider does not forget a
//!   charge because our transaction rolled back; neither does the simulation. A repeated call
//!   with a known key returns the first answer without acting again: no double charge.
//!   (The table lives in payments' database only because the simulation has nowhere else to
//!   live; nothing of payments reads it.)
//!
//! Captures, voids and refunds succeed for any reference the simulation issued (`sim_...`)
//! and are declined with `unknown-reference` otherwise. The token is used to decide and then
//! dropped: it is neither stored nor logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::provider::{Authorisation, PaymentProvider, ProviderError, ProviderFuture, VoidTarget};
use crate::settings::SimulatedProviderSettings;

/// How long a `tok_timeout` authorisation hangs: far longer than any `provider_timeout_ms`.
const HANG: Duration = Duration::from_secs(3600);

/// The test card tokens the simulation understands (see the module documentation).
pub mod tokens {
    pub const SUCCESS: &str = "tok_success";
    pub const DECLINE: &str = "tok_decline";
    pub const INSUFFICIENT_FUNDS: &str = "tok_insufficient_funds";
    pub const TIMEOUT: &str = "tok_timeout";
}

/// What the simulation answered for one idempotency key, as stored in
/// `simulated_provider_operations.result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Recorded {
    Authorised {
        reference: String,
    },
    Declined {
        reason: String,
    },
    /// A capture, void or refund was done. For a void, the authorisation it cancelled, if any
    /// (a void of a request the simulation never received cancels nothing).
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

/// Where the simulation keeps what it did.
enum Memory {
    /// `simulated_provider_operations`, through a pool of the simulation's own.
    Postgres(Pool),
    /// A map in the process, for unit tests.
    InMemory(Mutex<HashMap<String, Recorded>>),
}

/// A SIMULATED payment provider. See the module documentation.
pub struct SimulatedProvider {
    latency: Duration,
    failure_rate: f64,
    memory: Memory,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("latency", &self.latency)
            .field("failure_rate", &self.failure_rate)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: &dyn std::error::Error) -> ProviderError {
    ProviderError::Unavailable(format!(
        "simulated provider storage: {}",
        comptoir_platform::telemetry::error_chain(error)
    ))
}

impl SimulatedProvider {
    /// A simulation remembering its operations in `simulated_provider_operations` through
    /// `pool`, which must be a pool of its own (not the one payments' handlers use), as a real
    /// provider's memory is not part of our transactions.
    pub fn with_database(settings: &SimulatedProviderSettings, pool: Pool) -> Self {
        Self::new(settings, Memory::Postgres(pool))
    }

    /// A simulation remembering its operations in memory (unit tests).
    pub fn in_memory(settings: &SimulatedProviderSettings) -> Self {
        Self::new(settings, Memory::InMemory(Mutex::new(HashMap::new())))
    }

    fn new(settings: &SimulatedProviderSettings, memory: Memory) -> Self {
        Self {
            latency: Duration::from_millis(settings.latency_ms),
            failure_rate: settings.failure_rate,
            memory,
        }
    }

    /// The answer already given for `key`, if any.
    async fn recall(&self, key: &str) -> Result<Option<Recorded>, ProviderError> {
        match &self.memory {
            Memory::InMemory(map) => Ok(map.lock().map_or(None, |m| m.get(key).cloned())),
            Memory::Postgres(pool) => {
                let client = pool.get().await.map_err(|e| unavailable(&e))?;
                let row = client
                    .query_opt(
                        "SELECT result FROM simulated_provider_operations \
                         WHERE idempotency_key = $1",
                        &[&key],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                row.map(|row| decode(row.get(0))).transpose()
            }
        }
    }

    /// Stores `result` for `key` unless an answer is already stored (a concurrent call with
    /// the same key won), and returns the stored answer: the first one always wins.
    async fn remember(
        &self,
        key: &str,
        action: &str,
        result: Recorded,
    ) -> Result<Recorded, ProviderError> {
        match &self.memory {
            Memory::InMemory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| ProviderError::Unavailable("poisoned memory".to_owned()))?;
                Ok(map.entry(key.to_owned()).or_insert(result).clone())
            }
            Memory::Postgres(pool) => {
                let client = pool.get().await.map_err(|e| unavailable(&e))?;
                let value = serde_json::to_value(&result).map_err(|e| unavailable(&e))?;
                // Autocommit on the simulation's own connection: stored at once, whatever
                // happens to the caller's transaction.
                let inserted = client
                    .execute(
                        "INSERT INTO simulated_provider_operations (idempotency_key, action, result) \
                         VALUES ($1, $2, $3) ON CONFLICT (idempotency_key) DO NOTHING",
                        &[&key, &action, &value],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                if inserted == 1 {
                    return Ok(result);
                }
                drop(client);
                self.recall(key).await?.ok_or_else(|| {
                    ProviderError::Unavailable("simulated provider lost a record".to_owned())
                })
            }
        }
    }

    /// The simulated network: latency, then maybe a transient failure.
    async fn round_trip(&self, key: &str, action: &str) -> Result<(), ProviderError> {
        tokio::time::sleep(self.latency).await;
        if self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate {
            tracing::info!(
                idempotency_key = key,
                action,
                "SIMULATED provider: transient failure"
            );
            return Err(ProviderError::Unavailable(
                "simulated transient failure".to_owned(),
            ));
        }
        Ok(())
    }

    /// Runs one call: the round trip, then the remembered answer for `key` or a new one
    /// decided by `decide` and remembered. Also says whether the answer is a new one.
    async fn call(
        &self,
        key: &str,
        action: &str,
        decide: impl AsyncFnOnce() -> Result<Recorded, ProviderError>,
    ) -> Result<(Recorded, bool), ProviderError> {
        self.round_trip(key, action).await?;
        if let Some(previous) = self.recall(key).await? {
            tracing::info!(
                idempotency_key = key,
                action,
                "SIMULATED provider: repeated request, first answer returned"
            );
            return Ok((previous, false));
        }
        let decided = decide().await?;
        let stored = self.remember(key, action, decided).await?;
        tracing::info!(
            idempotency_key = key,
            action,
            outcome = outcome_name(&stored),
            "SIMULATED provider: done"
        );
        Ok((stored, true))
    }
}

fn decode(value: serde_json::Value) -> Result<Recorded, ProviderError> {
    serde_json::from_value(value).map_err(|e| unavailable(&e))
}

fn outcome_name(recorded: &Recorded) -> &'static str {
    match recorded {
        Recorded::Authorised { .. } => "authorised",
        Recorded::Declined { .. } => "declined",
        Recorded::Done { .. } => "done",
    }
}

/// A new reference, in the shape the simulation recognises later.
fn new_reference() -> String {
    format!("sim_{}", Uuid::new_v4().simple())
}

fn is_ours(reference: &str) -> bool {
    reference
        .strip_prefix("sim_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The answer to an authorisation, from the test card token alone.
fn decide_authorisation(token: &str) -> Recorded {
    let declined = |reason: &str| Recorded::Declined {
        reason: reason.to_owned(),
    };
    match token {
        tokens::SUCCESS | tokens::TIMEOUT => Recorded::Authorised {
            reference: new_reference(),
        },
        tokens::DECLINE => declined("card-declined"),
        tokens::INSUFFICIENT_FUNDS => declined("insufficient-funds"),
        _ => declined("invalid-token"),
    }
}

/// A capture, refund or void of `reference`: done if the simulation issued it.
fn decide_on_reference(reference: &str) -> Recorded {
    if is_ours(reference) {
        Recorded::Done {
            reference: Some(reference.to_owned()),
        }
    } else {
        Recorded::Declined {
            reason: "unknown-reference".to_owned(),
        }
    }
}

fn into_unit(recorded: Recorded) -> Result<(), ProviderError> {
    match recorded {
        Recorded::Done { .. } => Ok(()),
        Recorded::Declined { reason } => Err(ProviderError::Declined(reason)),
        Recorded::Authorised { .. } => Err(ProviderError::Unavailable(
            "idempotency key reused for another action".to_owned(),
        )),
    }
}

impl PaymentProvider for SimulatedProvider {
    fn authorise<'a>(
        &'a self,
        key: &'a str,
        _amount_minor: i64,
        _currency: &'a str,
        token: &'a str,
    ) -> ProviderFuture<'a, Authorisation> {
        Box::pin(async move {
            let (recorded, new) = self
                .call(key, "authorise", async || Ok(decide_authorisation(token)))
                .await?;
            if new && token == tokens::TIMEOUT {
                // The money is held, but the answer never comes: the caller's timeout fires.
                tracing::info!(
                    idempotency_key = key,
                    "SIMULATED provider: hanging (tok_timeout)"
                );
                tokio::time::sleep(HANG).await;
            }
            match recorded {
                Recorded::Authorised { reference } => Ok(Authorisation { reference }),
                Recorded::Declined { reason } => Err(ProviderError::Declined(reason)),
                Recorded::Done { .. } => Err(ProviderError::Unavailable(
                    "idempotency key reused for another action".to_owned(),
                )),
            }
        })
    }

    fn capture<'a>(
        &'a self,
        key: &'a str,
        reference: &'a str,
        _amount_minor: i64,
    ) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let (recorded, _) = self
                .call(key, "capture", async || Ok(decide_on_reference(reference)))
                .await?;
            into_unit(recorded)
        })
    }

    fn void<'a>(&'a self, key: &'a str, target: VoidTarget<'a>) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let (recorded, _) = self
                .call(key, "void", async || match target {
                    VoidTarget::Reference(reference) => Ok(decide_on_reference(reference)),
                    // Cancels whatever the simulation did for that request, if anything.
                    VoidTarget::RequestKey(request) => Ok(Recorded::Done {
                        reference: match self.recall(request).await? {
                            Some(Recorded::Authorised { reference }) => Some(reference),
                            _ => None,
                        },
                    }),
                })
                .await?;
            into_unit(recorded)
        })
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        reference: &'a str,
        _amount_minor: i64,
    ) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let (recorded, _) = self
                .call(key, "refund", async || Ok(decide_on_reference(reference)))
                .await?;
            into_unit(recorded)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(failure_rate: f64) -> SimulatedProvider {
        SimulatedProvider::in_memory(&SimulatedProviderSettings {
            latency_ms: 0,
            failure_rate,
        })
    }

    #[tokio::test]
    async fn test_tokens_decide_the_authorisation() {
        let sim = provider(0.0);
        let ok = sim
            .authorise("o1:authorise", 2580, "EUR", tokens::SUCCESS)
            .await
            .expect("authorised");
        assert!(is_ours(&ok.reference), "{}", ok.reference);
        for (i, (token, reason)) in [
            (tokens::DECLINE, "card-declined"),
            (tokens::INSUFFICIENT_FUNDS, "insufficient-funds"),
            ("4111111111111111", "invalid-token"),
            ("", "invalid-token"),
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("o{}:authorise", i + 2);
            assert_eq!(
                sim.authorise(&key, 2580, "EUR", token).await,
                Err(ProviderError::Declined(reason.to_owned()))
            );
        }
    }

    #[tokio::test]
    async fn a_repeated_key_gets_the_first_answer_and_acts_once() {
        let sim = provider(0.0);
        let first = sim
            .authorise("o1:authorise", 2580, "EUR", tokens::SUCCESS)
            .await
            .expect("authorised");
        // Same key: same reference, whatever the token says now.
        let again = sim
            .authorise("o1:authorise", 2580, "EUR", tokens::DECLINE)
            .await
            .expect("the first answer");
        assert_eq!(again, first);
        let declined = sim
            .authorise("o2:authorise", 100, "EUR", tokens::DECLINE)
            .await;
        let retried = sim
            .authorise("o2:authorise", 100, "EUR", tokens::SUCCESS)
            .await;
        assert_eq!(declined, retried);
        let Memory::InMemory(map) = &sim.memory else {
            unreachable!()
        };
        assert_eq!(map.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn transient_failures_act_on_nothing() {
        let failing = provider(1.0);
        assert!(matches!(
            failing
                .authorise("o1:authorise", 100, "EUR", tokens::SUCCESS)
                .await,
            Err(ProviderError::Unavailable(_))
        ));
        let Memory::InMemory(map) = &failing.memory else {
            unreachable!()
        };
        assert!(map.lock().expect("lock").is_empty(), "nothing remembered");
    }

    #[tokio::test]
    async fn a_timeout_token_holds_the_money_and_never_answers_until_voided_by_key() {
        let sim = provider(0.0);
        let call = sim.authorise("o1:authorise", 100, "EUR", tokens::TIMEOUT);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err(),
            "hangs"
        );
        let Some(Recorded::Authorised { reference }) =
            sim.recall("o1:authorise").await.expect("recall")
        else {
            panic!("the authorisation happened");
        };
        sim.void("o1:void", VoidTarget::RequestKey("o1:authorise"))
            .await
            .expect("voided");
        assert_eq!(
            sim.recall("o1:void").await.expect("recall"),
            Some(Recorded::Done {
                reference: Some(reference)
            })
        );
        // A void of a request that never arrived cancels nothing, and succeeds.
        sim.void("o2:void", VoidTarget::RequestKey("o2:authorise"))
            .await
            .expect("nothing to void");
        assert_eq!(
            sim.recall("o2:void").await.expect("recall"),
            Some(Recorded::Done { reference: None })
        );
    }

    #[tokio::test]
    async fn captures_refunds_and_voids_need_a_reference_it_issued() {
        let sim = provider(0.0);
        let auth = sim
            .authorise("o1:authorise", 100, "EUR", tokens::SUCCESS)
            .await
            .expect("authorised");
        sim.capture("o1:capture", &auth.reference, 100)
            .await
            .expect("captured");
        sim.refund("o1:refund", &auth.reference, 100)
            .await
            .expect("refunded");
        assert_eq!(
            sim.capture("o2:capture", "psp_123", 100).await,
            Err(ProviderError::Declined("unknown-reference".to_owned()))
        );
        assert_eq!(
            sim.void("o2:void", VoidTarget::Reference("nope")).await,
            Err(ProviderError::Declined("unknown-reference".to_owned()))
        );
    }

    #[test]
    fn records_are_stored_as_tagged_json() {
        let value = serde_json::to_value(Recorded::Declined {
            reason: "card-declined".to_owned(),
        })
        .expect("json");
        assert_eq!(
            value,
            serde_json::json!({"outcome": "declined", "reason": "card-declined"})
        );
    }
}
