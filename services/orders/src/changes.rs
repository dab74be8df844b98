//! Requests waiting for an order to change (`GET /v1/orders/{id}` with `Prefer: wait=N`) learn
//! of the change from PostgreSQL: a trigger on `orders` sends `NOTIFY order_changed, '<id>'`
//! when an order's version moves (migration V3), whichever replica or consumer moved it, and
//! one listening connection per process hands the ids to the waiting requests. A storefront
//! thus shows "confirmed" as soon as the saga ends, with one request in flight instead of a
//! poll every few milliseconds.
//!
//! Notifications can be missed while the listening connection is down (and a lagging waiter
//! misses some): a waiter is then woken to read its order again, and while nobody listens it
//! reads again every second rather than trusting a silence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel the trigger notifies.
pub const CHANNEL: &str = "order_changed";
/// How often the listening connection proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a waiter trusts the silence while nobody listens.
const UNHEARD: Duration = Duration::from_secs(1);

/// What a waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// This order's version moved.
    Order(Uuid),
    /// Any order may have moved (the listener connected again, or lost its connection).
    Any,
}

/// The fan-out of `order_changed` notifications to waiting requests.
#[derive(Debug)]
pub struct OrderChanges {
    sender: broadcast::Sender<Change>,
    listening: AtomicBool,
}

/// A waiting request's view of the changes, taken before it reads its order so that no change
/// between the read and the wait goes unseen.
#[derive(Debug)]
pub struct Watch(broadcast::Receiver<Change>);

impl OrderChanges {
    pub fn new() -> Arc<Self> {
        let (sender, _) = broadcast::channel(1024);
        Arc::new(Self {
            sender,
            listening: AtomicBool::new(false),
        })
    }

    pub fn watch(&self) -> Watch {
        Watch(self.sender.subscribe())
    }

    /// Listens until `shutdown`, reconnecting when the connection is lost.
    pub async fn run(
        self: Arc<Self>,
        settings: comptoir_store::DatabaseSettings,
        shutdown: CancellationToken,
    ) {
        comptoir_store::keep_listening(settings, CHANNEL, HEARTBEAT, shutdown, |event| {
            let change = match event {
                comptoir_store::Listening::Connected => {
                    self.listening.store(true, Ordering::SeqCst);
                    Change::Any
                }
                comptoir_store::Listening::Lost => {
                    self.listening.store(false, Ordering::SeqCst);
                    Change::Any
                }
                comptoir_store::Listening::Notified(payload) => match payload.parse() {
                    Ok(order) => Change::Order(order),
                    Err(_) => Change::Any,
                },
            };
            // No receiver (nobody waits) is not an error.
            let _ = self.sender.send(change);
        })
        .await;
    }

    /// Returns when `order` may have changed, or at `deadline`, whichever comes first; at
    /// most [`UNHEARD`] later while no connection listens.
    pub async fn changed(&self, watch: &mut Watch, order: Uuid, deadline: Instant) {
        let until = if self.listening.load(Ordering::SeqCst) {
            deadline
        } else {
            deadline.min(Instant::now() + UNHEARD)
        };
        loop {
            tokio::select! {
                received = watch.0.recv() => match received {
                    Ok(Change::Order(other)) if other != order => {}
                    // This order, any order, or notifications this waiter fell behind on.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                },
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! On the real clock: a waiter that returns too early or too late fails these, and none of
    //! them waits longer than [`UNHEARD`].
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_for_its_order_or_any_not_for_another() {
        let changes = OrderChanges::new();
        changes.listening.store(true, Ordering::SeqCst);
        let mine = Uuid::now_v7();
        let far = Instant::now() + Duration::from_secs(60);

        let mut watch = changes.watch();
        changes
            .sender
            .send(Change::Order(Uuid::now_v7()))
            .expect("sent");
        changes.sender.send(Change::Order(mine)).expect("sent");
        changes.changed(&mut watch, mine, far).await;
        assert!(Instant::now() < far, "woken by its own order");

        changes.sender.send(Change::Any).expect("sent");
        changes.changed(&mut watch, mine, far).await;
        assert!(Instant::now() < far, "woken by any change");

        let near = Instant::now() + Duration::from_millis(200);
        changes
            .sender
            .send(Change::Order(Uuid::now_v7()))
            .expect("sent");
        changes.changed(&mut watch, mine, near).await;
        assert!(
            Instant::now() >= near,
            "another order's change does not wake it: it waits for its deadline"
        );
    }

    #[tokio::test]
    async fn while_nobody_listens_a_waiter_looks_again_every_second() {
        let changes = OrderChanges::new();
        let mut watch = changes.watch();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        changes.changed(&mut watch, Uuid::now_v7(), deadline).await;
        let waited = started.elapsed();
        assert!(waited >= UNHEARD, "returned after {waited:?}");
        assert!(Instant::now() < deadline, "returned after {waited:?}");
    }
}
