//! The checkout saga, orchestrated here (docs/adr/0016-checkout-saga.md; its first step in
//! two parallel legs: docs/adr/0027-saga-parallel-first-step.md).
//!
//! ```text
//!          ┌─ reserve ───reserved───▶ stock-reserved ──┐
//! pending ─┤                                           ├─ both held ─▶ payment-authorised ──committed──▶
//!          └─ authorise ─authorised─▶ (still pending) ─┘
//!    stock-committed ──captured──▶ confirmed ──(refund asked)──▶ refund-requested ──▶ refunded
//! any step refused, timed out, or cancelled by the customer before capture ──▶ cancelled
//! ```
//!
//! The checkout writes both first commands at once: inventory reserves the stock while
//! payments authorises the card. `stock-reserved` means the stock is held and the
//! authorisation still awaited; `payment-authorised` means both are held (when the
//! authorisation answered first, the order is marked authorised and stays `pending` until the
//! stock answers, then passes both statuses in one step). Then the commit of the stock, then the
//! capture: those two stay in sequence, because the capture is the point of no return and a
//! reservation that lapsed must not be paid for.
//!
//! Each arrow is a command this module writes to the outbox (a [`StockCommand`] or
//! [`PaymentCommand`]) and the reply it reacts to (a [`StockOutcome`] or [`PaymentOutcome`]),
//! handled by an inbox consumer in the transaction that moves the order. The order row is
//! locked for the step, so replies, the customer's cancellation and the timeout sweep never
//! interleave on one order. The saga's state is the order's row: after a crash of orders,
//! replies still waiting in the broker move it on, and commands still in the outbox leave.
//!
//! Compensation is idempotent and safe to send early: inventory and payments record a release
//! or void that arrives before its reserve or authorise and refuse the latter. A refusal of
//! either first leg cancels the order and compensates the other leg, answered or not (the
//! stock released, the authorisation voided). A reply that arrives after the order was
//! cancelled is compensated again (a late reservation is released, a late authorisation
//! voided). Capture is the point of no return: an order whose capture is in flight is never
//! cancelled; it waits for payments.

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::inventory::{StockOutcome, StockResult};
use comptoir_events::contracts::orders::{
    OrderChanged, OrderStatus, PaymentAction, PaymentCommand, StockAction, StockCommand,
};
use comptoir_events::contracts::payments::{PaymentOutcome, PaymentResult};
use comptoir_events::outbox;
use deadpool_postgres::{GenericClient, Transaction};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::EVENT_SOURCE;
use crate::repo::{self, RepoError, SagaOrder};

/// Full topic names the saga writes to.
#[derive(Debug, Clone)]
pub struct Topics {
    pub stock_commands: String,
    pub payment_commands: String,
    pub order_events: String,
}

/// The saga: where its commands go and how long a step may take.
#[derive(Debug, Clone)]
pub struct Saga {
    pub topics: Topics,
    pub step_timeout: Duration,
}

/// Why an order is cancelled by us rather than by a participant.
pub const REASON_CUSTOMER: &str = "customer";
pub const REASON_TIMEOUT: &str = "timeout";

impl Saga {
    fn deadline(&self) -> Option<f64> {
        Some(self.step_timeout.as_secs_f64())
    }

    async fn stock<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        action: StockAction,
    ) -> Result<(), RepoError> {
        let lines = if action == StockAction::Reserve {
            order.lines.clone()
        } else {
            Vec::new()
        };
        let command = StockCommand {
            order_id: order.id,
            action,
            lines,
        };
        outbox::enqueue(
            tx,
            &self.topics.stock_commands,
            &CloudEvent::new(EVENT_SOURCE, order.id.to_string(), command),
        )
        .await?;
        Ok(())
    }

    async fn payment<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        action: PaymentAction,
    ) -> Result<(), RepoError> {
        self.payment_command(tx, order, action, None).await
    }

    /// Asks payments to authorise the order's amount on the shopper's card token.
    async fn authorise<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        token: &str,
    ) -> Result<(), RepoError> {
        self.payment_command(tx, order, PaymentAction::Authorise, Some(token))
            .await
    }

    async fn payment_command<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        action: PaymentAction,
        token: Option<&str>,
    ) -> Result<(), RepoError> {
        let command = PaymentCommand {
            order_id: order.id,
            action,
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            payment_token: token.map(str::to_owned),
        };
        outbox::enqueue(
            tx,
            &self.topics.payment_commands,
            &CloudEvent::new(EVENT_SOURCE, order.id.to_string(), command),
        )
        .await?;
        Ok(())
    }

    /// Publishes the order's state (for notifications, analytics...).
    async fn announce<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        status: OrderStatus,
        reason: Option<&str>,
        version: i64,
    ) -> Result<(), RepoError> {
        let event = OrderChanged {
            order_id: order.id,
            customer_id: order.customer_id,
            status,
            reason: reason.map(str::to_owned),
            lines: order.lines.clone(),
            total_minor: order.total_minor,
            currency: order.currency.clone(),
            version,
        };
        outbox::enqueue(
            tx,
            &self.topics.order_events,
            &CloudEvent::new(EVENT_SOURCE, order.id.to_string(), event),
        )
        .await?;
        Ok(())
    }

    /// Moves the order. A token still on the order (one placed before the authorisation left
    /// with the reservation, see [`Self::on_stock`]) is kept only while the order is pending.
    async fn advance<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        status: OrderStatus,
        reason: Option<&str>,
    ) -> Result<i64, RepoError> {
        let deadline = match status {
            OrderStatus::Pending | OrderStatus::StockReserved | OrderStatus::PaymentAuthorised => {
                self.deadline()
            }
            _ => None,
        };
        let keep_token = status == OrderStatus::Pending;
        let moved = repo::move_order(tx, order.id, status, reason, deadline, keep_token).await?;
        // A saga finishes once: a refund's outcome (refunded, or confirmed again when it
        // failed) is not a second end of the checkout.
        if status.is_terminal() && order.status != OrderStatus::RefundRequested {
            metrics::counter!("orders_saga_finished_total", "status" => status.as_str(), "reason" => reason.unwrap_or("none").to_owned()).increment(1);
            metrics::histogram!("orders_saga_duration_seconds", "status" => status.as_str())
                .record(moved.age_secs);
        }
        // Revenue is counted at capture (stock-committed → confirmed) only: a failed refund
        // also puts an order back to confirmed.
        if status == OrderStatus::Confirmed && order.status == OrderStatus::StockCommitted {
            metrics::counter!("orders_revenue_minor_total", "currency" => order.currency.clone())
                .increment(u64::try_from(order.total_minor).unwrap_or(0));
        }
        if status == OrderStatus::Refunded {
            metrics::counter!("orders_refunded_minor_total", "currency" => order.currency.clone())
                .increment(u64::try_from(order.total_minor).unwrap_or(0));
        }
        tracing::info!(order_id = %order.id, from = order.status.as_str(), to = status.as_str(), reason, "Order moved");
        Ok(moved.version)
    }

    /// Starts the saga of a freshly written order: asks inventory for the stock and payments
    /// for the authorisation at once, and announces the order. The card token goes into the
    /// authorise command only, written in the order's own transaction: orders never stores it.
    pub async fn start<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order_id: Uuid,
        payment_token: &str,
    ) -> Result<(), RepoError> {
        let order = repo::lock_order(tx, order_id, None)
            .await?
            .ok_or(RepoError::NotFound)?;
        self.stock(tx, &order, StockAction::Reserve).await?;
        self.authorise(tx, &order, payment_token).await?;
        self.announce(tx, &order, OrderStatus::Pending, None, order.version)
            .await?;
        metrics::counter!("orders_checkouts_total").increment(1);
        Ok(())
    }

    /// Cancels an order that has not reached capture, and compensates what may be held.
    /// `WrongStatus` for an order past that point (or already over).
    pub async fn cancel<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        reason: &str,
    ) -> Result<(), RepoError> {
        match order.status {
            // The reserve and the authorise may be in flight (pending; in stock-reserved the
            // authorise only) or done (payment-authorised; the commit may be in flight: a release
            // after a commit puts the units back). A compensation overtakes or follows its
            // command, either way nothing stays held.
            OrderStatus::Pending | OrderStatus::StockReserved | OrderStatus::PaymentAuthorised => {
                self.stock(tx, order, StockAction::Release).await?;
                self.payment(tx, order, PaymentAction::Void).await?;
            }
            other => {
                return Err(RepoError::WrongStatus(
                    other.as_str().to_owned(),
                    "cancelled",
                ));
            }
        }
        self.finish_cancelled(tx, order, reason).await
    }

    async fn finish_cancelled<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
        reason: &str,
    ) -> Result<(), RepoError> {
        let version = self
            .advance(tx, order, OrderStatus::Cancelled, Some(reason))
            .await?;
        self.announce(tx, order, OrderStatus::Cancelled, Some(reason), version)
            .await
    }

    /// The stock is reserved: the order waits for the authorisation, or goes on when it
    /// answered first.
    async fn reserved<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: SagaOrder,
    ) -> Result<(), RepoError> {
        // An order placed before both legs left together still holds its card token: its
        // authorise leaves now, as it did then.
        if let Some(token) = &order.payment_token {
            self.authorise(tx, &order, token).await?;
        }
        self.advance(tx, &order, OrderStatus::StockReserved, None)
            .await?;
        if order.authorised {
            let reserved = SagaOrder {
                status: OrderStatus::StockReserved,
                ..order
            };
            self.both_held(tx, &reserved).await?;
        }
        Ok(())
    }

    /// The stock is reserved and the payment authorised: the reservation becomes a sale.
    async fn both_held<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
    ) -> Result<(), RepoError> {
        self.stock(tx, order, StockAction::Commit).await?;
        self.advance(tx, order, OrderStatus::PaymentAuthorised, None)
            .await?;
        Ok(())
    }

    /// Asks payments to give a confirmed order's money back.
    pub async fn request_refund<C: GenericClient + Sync>(
        &self,
        tx: &C,
        order: &SagaOrder,
    ) -> Result<(), RepoError> {
        if order.status != OrderStatus::Confirmed {
            return Err(RepoError::WrongStatus(
                order.status.as_str().to_owned(),
                "refunded",
            ));
        }
        self.payment(tx, order, PaymentAction::Refund).await?;
        self.advance(tx, order, OrderStatus::RefundRequested, None)
            .await?;
        Ok(())
    }

    /// Reacts to inventory's reply.
    pub async fn on_stock<C: GenericClient + Sync>(
        &self,
        tx: &C,
        outcome: &StockOutcome,
    ) -> Result<(), RepoError> {
        let Some(order) = repo::lock_order(tx, outcome.order_id, None).await? else {
            tracing::warn!(order_id = %outcome.order_id, "Stock outcome for an unknown order; ignored");
            return Ok(());
        };
        let reason = outcome.reason.as_deref();
        match (outcome.result, order.status) {
            (StockResult::Reserved, OrderStatus::Pending) => self.reserved(tx, order).await?,
            // Held for an order already given up: give it back.
            (StockResult::Reserved | StockResult::Committed, OrderStatus::Cancelled) => {
                self.stock(tx, &order, StockAction::Release).await?;
            }
            // The authorisation (in flight or done) is voided.
            (StockResult::Refused, OrderStatus::Pending) => {
                self.payment(tx, &order, PaymentAction::Void).await?;
                self.finish_cancelled(tx, &order, reason.unwrap_or("out-of-stock"))
                    .await?;
            }
            (StockResult::Committed, OrderStatus::PaymentAuthorised) => {
                self.payment(tx, &order, PaymentAction::Capture).await?;
                self.advance(tx, &order, OrderStatus::StockCommitted, None)
                    .await?;
            }
            // The reservation lapsed before it became a sale: nothing is held any more; the
            // authorisation (done or in flight) is voided.
            (
                StockResult::CommitRefused | StockResult::Expired,
                OrderStatus::StockReserved | OrderStatus::PaymentAuthorised,
            ) => {
                self.payment(tx, &order, PaymentAction::Void).await?;
                self.finish_cancelled(tx, &order, "reservation-expired")
                    .await?;
            }
            (result, status) => {
                // Duplicates, and acknowledgements of our own releases.
                tracing::debug!(order_id = %order.id, ?result, status = status.as_str(), "Stock outcome needs nothing");
            }
        }
        Ok(())
    }

    /// Reacts to payments' reply.
    pub async fn on_payment<C: GenericClient + Sync>(
        &self,
        tx: &C,
        outcome: &PaymentOutcome,
    ) -> Result<(), RepoError> {
        let Some(order) = repo::lock_order(tx, outcome.order_id, None).await? else {
            tracing::warn!(order_id = %outcome.order_id, "Payment outcome for an unknown order; ignored");
            return Ok(());
        };
        let reason = outcome.reason.as_deref();
        match (outcome.result, order.status) {
            // The stock is still awaited: remembered, the order stays pending.
            (PaymentResult::Authorised, OrderStatus::Pending) => {
                repo::mark_authorised(tx, order.id).await?;
            }
            (PaymentResult::Authorised, OrderStatus::StockReserved) => {
                self.both_held(tx, &order).await?;
            }
            (PaymentResult::Authorised, OrderStatus::Cancelled) => {
                self.payment(tx, &order, PaymentAction::Void).await?;
            }
            // The reservation (in flight or done) is released.
            (PaymentResult::Declined, OrderStatus::Pending | OrderStatus::StockReserved) => {
                self.stock(tx, &order, StockAction::Release).await?;
                self.finish_cancelled(tx, &order, reason.unwrap_or("payment-declined"))
                    .await?;
            }
            (PaymentResult::Captured, OrderStatus::StockCommitted) => {
                let version = self
                    .advance(tx, &order, OrderStatus::Confirmed, None)
                    .await?;
                self.announce(tx, &order, OrderStatus::Confirmed, None, version)
                    .await?;
            }
            (PaymentResult::CaptureFailed, OrderStatus::StockCommitted) => {
                // The committed units go back to the stock.
                self.stock(tx, &order, StockAction::Release).await?;
                self.finish_cancelled(tx, &order, reason.unwrap_or("capture-failed"))
                    .await?;
            }
            (PaymentResult::Refunded, OrderStatus::RefundRequested) => {
                let version = self
                    .advance(tx, &order, OrderStatus::Refunded, None)
                    .await?;
                self.announce(tx, &order, OrderStatus::Refunded, None, version)
                    .await?;
            }
            (PaymentResult::RefundFailed, OrderStatus::RefundRequested) => {
                self.advance(
                    tx,
                    &order,
                    OrderStatus::Confirmed,
                    Some(reason.unwrap_or("refund-failed")),
                )
                .await?;
            }
            (result, status) => {
                tracing::debug!(order_id = %order.id, ?result, status = status.as_str(), "Payment outcome needs nothing");
            }
        }
        Ok(())
    }

    /// Cancels orders whose step is past its deadline. Returns how many.
    pub async fn sweep(&self, pool: &deadpool_postgres::Pool) -> Result<usize, RepoError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let overdue = repo::overdue_orders(&tx, 50).await?;
        let mut cancelled = 0;
        for id in overdue {
            let Some(order) = repo::lock_order(&tx, id, None).await? else {
                continue;
            };
            match self.cancel(&tx, &order, REASON_TIMEOUT).await {
                Ok(()) => cancelled += 1,
                // A deadline on a status that cannot time out: clear it.
                Err(RepoError::WrongStatus(..)) => {
                    tx.execute(
                        "UPDATE orders SET step_deadline = NULL WHERE order_id = $1",
                        &[&id],
                    )
                    .await?;
                }
                Err(other) => return Err(other),
            }
        }
        tx.commit().await?;
        Ok(cancelled)
    }

    /// Runs [`Self::sweep`] every `interval` until `shutdown`.
    pub async fn run_sweeper(
        self,
        pool: deadpool_postgres::Pool,
        interval: Duration,
        wake: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.sweep(&pool).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(orders = n, "Cancelled orders whose saga step timed out");
                    wake.notify_one();
                }
                Err(error) => {
                    tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "Saga sweep failed; will retry");
                }
            }
        }
    }
}

fn boxed(error: RepoError) -> HandlerError {
    Box::new(error)
}

/// Applies inventory's replies.
#[derive(Debug, Clone)]
pub struct StockOutcomes(pub Saga);

impl Handler<StockOutcome> for StockOutcomes {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<StockOutcome>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.0.on_stock(tx, &event.data).await.map_err(boxed) })
    }
}

/// Applies payments' replies.
#[derive(Debug, Clone)]
pub struct PaymentOutcomes(pub Saga);

impl Handler<PaymentOutcome> for PaymentOutcomes {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<PaymentOutcome>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.0.on_payment(tx, &event.data).await.map_err(boxed) })
    }
}

/// Keeps the product projection current from catalog's events.
#[derive(Debug, Clone, Copy)]
pub struct ProductProjection;

impl Handler<comptoir_events::contracts::catalog::ProductChanged> for ProductProjection {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<comptoir_events::contracts::catalog::ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            repo::apply_product(tx, &event.data)
                .await
                .map(|_| ())
                .map_err(boxed)
        })
    }
}
