//! A circuit breaker per upstream: closed → open after `failures` consecutive failures →
//! half-open after `cool_down` → closed again when one probe succeeds.
//!
//! Written here rather than taken from a crate (see `docs/adr/0013-gateway-resilience.md`):
//! the candidates let every request through while half-open, where this lets exactly one probe
//! through and rejects the rest until it has answered. The breaker reads the time through a
//! clock it is given (`Instant::now` outside the tests), so the tests move time by hand.
//!
//! A caller asks [`Breaker::acquire`] for a [`Permit`] before each attempt and reports how the
//! attempt went on the permit. A permit dropped without a report (the client went away) counts
//! as neither: a half-open breaker lets the next request probe instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::time::Instant;

/// Where a breaker stands, as exported in the `gateway_upstream_circuit_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the circuit is open; retry in {retry_after:?}")]
pub struct Rejected {
    /// When a request may get through again (the rest of the cool-down, or a probe's time).
    pub retry_after: Duration,
}

/// One upstream's breaker. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstream: Arc<str>,
    failures: u32,
    cool_down: Duration,
    /// The time now: `Instant::now`, or a test's clock.
    now: fn() -> Instant,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker that opens after `failures` consecutive failures (at least 1) and
    /// stays open for `cool_down`.
    pub fn new(upstream: Arc<str>, failures: u32, cool_down: Duration) -> Self {
        Self::with_clock(upstream, failures, cool_down, Instant::now)
    }

    fn with_clock(
        upstream: Arc<str>,
        failures: u32,
        cool_down: Duration,
        now: fn() -> Instant,
    ) -> Self {
        let breaker = Self {
            inner: Arc::new(Inner {
                upstream,
                failures: failures.max(1),
                cool_down,
                now,
                state: Mutex::new(State::Closed {
                    consecutive_failures: 0,
                }),
            }),
        };
        breaker.export(CircuitState::Closed);
        breaker
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now (an open breaker whose cool-down is over reads as half-open).
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if (self.inner.now)() < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// A permit for one attempt, or why not.
    pub fn acquire(&self) -> Result<Permit, Rejected> {
        let mut state = self.lock();
        let now = (self.inner.now)();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => {
                return Err(Rejected {
                    retry_after: until - now,
                });
            }
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                drop(state);
                self.export(CircuitState::HalfOpen);
                tracing::info!(upstream = %self.inner.upstream, "Circuit half-open: probing");
                true
            }
            // One probe at a time; the others are told to come back about when it will have
            // answered.
            State::HalfOpen { probing: true } => {
                return Err(Rejected {
                    retry_after: Duration::from_secs(1),
                });
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    fn on_success(&self) {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Closed {
            consecutive_failures: 0,
        };
        drop(state);
        if !was_closed {
            self.export(CircuitState::Closed);
            tracing::info!(upstream = %self.inner.upstream, "Circuit closed: the upstream answers again");
        }
    }

    fn on_failure(&self, probe: bool) {
        let mut state = self.lock();
        let open = match &mut *state {
            State::Closed {
                consecutive_failures,
            } => {
                *consecutive_failures += 1;
                *consecutive_failures >= self.inner.failures
            }
            // A failed probe reopens; a straggler from before the breaker opened changes nothing.
            State::HalfOpen { .. } => probe,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: (self.inner.now)() + self.inner.cool_down,
            };
            drop(state);
            self.export(CircuitState::Open);
            metrics::counter!("gateway_upstream_circuit_opened_total", "upstream" => self.inner.upstream.to_string())
                .increment(1);
            tracing::warn!(
                upstream = %self.inner.upstream,
                cool_down_ms = self.inner.cool_down.as_millis() as u64,
                "Circuit open: the upstream keeps failing"
            );
        }
    }

    fn on_abandoned(&self, probe: bool) {
        if probe {
            let mut state = self.lock();
            if matches!(*state, State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }

    fn export(&self, state: CircuitState) {
        metrics::gauge!("gateway_upstream_circuit_state", "upstream" => self.inner.upstream.to_string())
            .set(state.gauge());
    }
}

/// Leave to make one attempt; report its outcome with [`Permit::success`] or
/// [`Permit::failure`].
#[derive(Debug)]
pub struct Permit {
    breaker: Breaker,
    probe: bool,
    reported: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.on_success();
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.probe);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.on_abandoned(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;

    const COOL_DOWN: Duration = Duration::from_secs(5);

    thread_local! {
        // Each test runs on its own thread, so each has its own clock: where it started, and
        // how far the test has moved it since.
        static STARTED: Instant = Instant::now();
        static MOVED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    fn test_clock() -> Instant {
        STARTED.with(|started| *started) + MOVED.with(Cell::get)
    }

    fn advance(by: Duration) {
        MOVED.with(|moved| moved.set(moved.get() + by));
    }

    fn breaker() -> Breaker {
        Breaker::with_clock("test".into(), 3, COOL_DOWN, test_clock)
    }

    fn fail(b: &Breaker, times: u32) {
        for _ in 0..times {
            b.acquire().expect("permit").failure();
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        fail(&b, 2);
        b.acquire().expect("permit").success();
        fail(&b, 2);
        assert_eq!(b.state(), CircuitState::Closed, "a success reset the count");
        fail(&b, 1);
        assert_eq!(b.state(), CircuitState::Open);
        let rejected = b.acquire().expect_err("open");
        assert_eq!(rejected.retry_after, COOL_DOWN);
        advance(Duration::from_secs(2));
        assert_eq!(
            b.acquire().expect_err("still open").retry_after,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let b = breaker();
        fail(&b, 3);
        advance(COOL_DOWN);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let probe = b.acquire().expect("the probe");
        assert!(b.acquire().is_err(), "a second request waits for the probe");
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.acquire().is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cool_down() {
        let b = breaker();
        fail(&b, 3);
        advance(COOL_DOWN);
        b.acquire().expect("the probe").failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.acquire().expect_err("open").retry_after, COOL_DOWN);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let b = breaker();
        fail(&b, 3);
        advance(COOL_DOWN);
        drop(b.acquire().expect("the probe"));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        b.acquire().expect("a new probe").success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn stragglers_do_not_reopen_a_half_open_breaker() {
        let b = breaker();
        let straggler = b.acquire().expect("permit before the failures");
        fail(&b, 3);
        advance(COOL_DOWN);
        let probe = b.acquire().expect("the probe");
        straggler.failure();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
