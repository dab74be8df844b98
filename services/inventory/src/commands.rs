//! Inventory's part in the checkout saga: orders' `StockCommand`s in, `StockOutcome`s out.
//!
//! Each command is handled inside the consumer's transaction (which also records the event in
//! the inbox): lock the order's reservation, decide from its state, change the stock, write
//! the reservation's new state, the outcome and the stock-level events (outbox), all
//! committed together or not at all.
//!
//! | reservation \ command | reserve | commit | release |
//! |---|---|---|---|
//! | *none* | all lines fit: hold them → `reserved`; else → `refused` (`out-of-stock`); a product not known yet → retried | `commit-refused` not-reserved | tombstone → `released` |
//! | reserved | `reserved` | units leave on_hand → `committed` (lapsed: given back → `commit-refused` not-reserved) | units back to available → `released` |
//! | committed | `committed` | `committed` | units back on hand → `released` |
//! | released | `released` (`expired` if lapsed; `refused` released-before-reserve for a tombstone) | `commit-refused` not-reserved | `released` |
//! | refused | `refused` (its reason) | `commit-refused` not-reserved | `released` |
//!
//! Idempotency: a redelivered event is caught by the inbox; a command repeated under a new
//! event id finds the reservation in its new state and gets the answer of the table, with no
//! further change.
//!
//! No oversell: a reserve locks the stock rows of its lines (in product id order, so two
//! reserves never deadlock) and checks `on_hand - reserved` under those locks, so concurrent
//! reserves of the last units (in this process or another instance) are decided one after
//! the other; the table's `CHECK (reserved <= on_hand)` refuses anything that slips past.

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::inventory::{StockOutcome, StockResult};
use comptoir_events::contracts::orders::{OrderLine, StockAction, StockCommand};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::Topics;
use crate::domain::{Lines, ReservationStatus, reason};
use crate::repo::{self, RepoError, Reservation};

/// Handles orders' stock commands (subscription `inventory-stock-commands`).
#[derive(Debug, Clone)]
pub struct StockCommands {
    topics: Topics,
    reservation_ttl_secs: i64,
}

impl Handler<StockCommand> for StockCommands {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<StockCommand>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.apply(tx, &event.data).await.map_err(Into::into) })
    }
}

/// The answer to a command, before it becomes an event.
fn answer(result: StockResult, why: Option<&str>) -> (StockResult, Option<String>) {
    (result, why.map(str::to_owned))
}

impl StockCommands {
    pub fn new(topics: Topics, reservation_ttl_secs: u64) -> Self {
        Self {
            topics,
            reservation_ttl_secs: i64::try_from(reservation_ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// Applies one command in `tx`: the stock, the reservation, the outcome and stock-level
    /// events.
    pub async fn apply(
        &self,
        tx: &Transaction<'_>,
        command: &StockCommand,
    ) -> Result<(), RepoError> {
        let order = command.order_id;
        let existing = repo::lock_reservation(tx, order).await?;
        let (result, why) = match command.action {
            StockAction::Reserve => match existing {
                Some(reservation) => replay_reserve(&reservation),
                None => self.reserve(tx, order, &command.lines).await?,
            },
            StockAction::Commit => self.commit(tx, order, existing).await?,
            StockAction::Release => self.release(tx, order, existing).await?,
        };
        tracing::info!(order_id = %order, action = ?command.action, ?result, reason = why.as_deref(), "Stock command handled");
        metrics::counter!("inventory_stock_outcomes_total", "result" => result_name(result))
            .increment(1);
        let outcome = StockOutcome {
            order_id: order,
            result,
            reason: why,
        };
        repo::record_outcome(tx, &self.topics.outcomes, outcome).await
    }

    /// A first reserve: all lines or nothing.
    async fn reserve(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        lines: &[OrderLine],
    ) -> Result<(StockResult, Option<String>), RepoError> {
        let Some(lines) = Lines::parse(lines) else {
            return refuse(tx, order, reason::INVALID_LINES).await;
        };
        let products = lines.products();
        let held = repo::lock_stock(tx, &products).await?;
        if let Some(missing) = products
            .iter()
            .find(|p| !held.iter().any(|s| s.product_id == **p))
        {
            // Orders only sells products of the catalog, which inventory learns from the same
            // catalog's events: a product unknown here is one whose event is still on its way
            // (inventory was down, or lags). Refusing would cancel a good order; the consumer
            // retries with backoff instead (`commands_max_redeliveries`), and the order's own
            // deadline compensates if it never arrives.
            return Err(RepoError::ProductNotYetKnown(*missing));
        }
        let short = held
            .iter()
            .any(|s| s.available < i64::from(lines.quantity(s.product_id).unwrap_or(0)));
        if short {
            return refuse(tx, order, reason::OUT_OF_STOCK).await;
        }
        let quantities: Vec<i64> = lines.quantities().into_iter().map(i64::from).collect();
        let levels = repo::move_stock(tx, &products, &vec![0; products.len()], &quantities).await?;
        repo::insert_reservation(
            tx,
            order,
            ReservationStatus::Reserved,
            None,
            Some(self.reservation_ttl_secs),
        )
        .await?;
        repo::insert_lines(tx, order, &lines).await?;
        repo::record_levels(tx, &self.topics.levels, &levels).await?;
        Ok(answer(StockResult::Reserved, None))
    }

    async fn commit(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        existing: Option<Reservation>,
    ) -> Result<(StockResult, Option<String>), RepoError> {
        let not_reserved = answer(StockResult::CommitRefused, Some(reason::NOT_RESERVED));
        let Some(reservation) = existing else {
            return Ok(not_reserved);
        };
        match reservation.status {
            ReservationStatus::Reserved if reservation.lapsed => {
                // Past its expiry, the hold is over even if the sweep has not run yet: give
                // the units back now, as the sweep would, and refuse the sale.
                self.give_back(tx, order, false).await?;
                repo::set_status(
                    tx,
                    &[order],
                    ReservationStatus::Released,
                    Some(reason::EXPIRED),
                )
                .await?;
                Ok(not_reserved)
            }
            ReservationStatus::Reserved => {
                let (products, quantities) = repo::lines_of(tx, &[order]).await?;
                repo::lock_stock(tx, &products).await?;
                let minus: Vec<i64> = quantities.iter().map(|q| -q).collect();
                let levels = repo::move_stock(tx, &products, &minus, &minus).await?;
                repo::set_status(tx, &[order], ReservationStatus::Committed, None).await?;
                repo::record_levels(tx, &self.topics.levels, &levels).await?;
                Ok(answer(StockResult::Committed, None))
            }
            ReservationStatus::Committed => Ok(answer(StockResult::Committed, None)),
            ReservationStatus::Released | ReservationStatus::Refused => Ok(not_reserved),
        }
    }

    async fn release(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        existing: Option<Reservation>,
    ) -> Result<(StockResult, Option<String>), RepoError> {
        match existing.map(|r| r.status) {
            None => {
                // The release overtook its reserve: remember it, so the reserve is refused.
                repo::insert_reservation(
                    tx,
                    order,
                    ReservationStatus::Released,
                    Some(reason::RELEASED_BEFORE_RESERVE),
                    None,
                )
                .await?;
            }
            Some(ReservationStatus::Reserved) => {
                self.give_back(tx, order, false).await?;
                repo::set_status(tx, &[order], ReservationStatus::Released, None).await?;
            }
            Some(ReservationStatus::Committed) => {
                self.give_back(tx, order, true).await?;
                repo::set_status(tx, &[order], ReservationStatus::Released, None).await?;
            }
            Some(ReservationStatus::Released | ReservationStatus::Refused) => {}
        }
        Ok(answer(StockResult::Released, None))
    }

    /// Returns an order's units: from `reserved` to available, or (`sold`) back on hand.
    async fn give_back(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        sold: bool,
    ) -> Result<(), RepoError> {
        let (products, quantities) = repo::lines_of(tx, &[order]).await?;
        repo::lock_stock(tx, &products).await?;
        let (on_hand, reserved): (Vec<i64>, Vec<i64>) = if sold {
            (quantities, vec![0; products.len()])
        } else {
            (
                vec![0; products.len()],
                quantities.iter().map(|q| -q).collect(),
            )
        };
        let levels = repo::move_stock(tx, &products, &on_hand, &reserved).await?;
        repo::record_levels(tx, &self.topics.levels, &levels).await
    }
}

/// Records a refused reserve (nothing held) and answers it.
async fn refuse(
    tx: &Transaction<'_>,
    order: Uuid,
    why: &str,
) -> Result<(StockResult, Option<String>), RepoError> {
    repo::insert_reservation(tx, order, ReservationStatus::Refused, Some(why), None).await?;
    Ok(answer(StockResult::Refused, Some(why)))
}

/// The answer to a reserve for an order inventory already decided: its current state.
fn replay_reserve(reservation: &Reservation) -> (StockResult, Option<String>) {
    let why = reservation.reason.as_deref();
    match reservation.status {
        ReservationStatus::Reserved => answer(StockResult::Reserved, None),
        ReservationStatus::Committed => answer(StockResult::Committed, None),
        ReservationStatus::Refused => answer(StockResult::Refused, why),
        ReservationStatus::Released => match why {
            Some(reason::RELEASED_BEFORE_RESERVE) => answer(StockResult::Refused, why),
            Some(reason::EXPIRED) => answer(StockResult::Expired, None),
            _ => answer(StockResult::Released, None),
        },
    }
}

/// A result's name, for metric labels.
pub fn result_name(result: StockResult) -> &'static str {
    match result {
        StockResult::Reserved => "reserved",
        StockResult::Refused => "refused",
        StockResult::Committed => "committed",
        StockResult::CommitRefused => "commit-refused",
        StockResult::Released => "released",
        StockResult::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(status: ReservationStatus, why: Option<&str>) -> Reservation {
        Reservation {
            status,
            reason: why.map(str::to_owned),
            lapsed: false,
        }
    }

    #[test]
    fn a_repeated_reserve_gets_the_current_state() {
        use ReservationStatus::*;
        let cases = [
            (reservation(Reserved, None), StockResult::Reserved, None),
            (reservation(Committed, None), StockResult::Committed, None),
            (
                reservation(Refused, Some(reason::OUT_OF_STOCK)),
                StockResult::Refused,
                Some(reason::OUT_OF_STOCK),
            ),
            (
                reservation(Released, Some(reason::RELEASED_BEFORE_RESERVE)),
                StockResult::Refused,
                Some(reason::RELEASED_BEFORE_RESERVE),
            ),
            (
                reservation(Released, Some(reason::EXPIRED)),
                StockResult::Expired,
                None,
            ),
            (reservation(Released, None), StockResult::Released, None),
        ];
        for (reservation, result, why) in cases {
            assert_eq!(
                replay_reserve(&reservation),
                answer(result, why),
                "{reservation:?}"
            );
        }
    }
}
