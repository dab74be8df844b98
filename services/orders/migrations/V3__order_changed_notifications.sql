-- An order whose version moves (every status change: checkout's steps, the saga's replies,
-- a cancellation, a refund) notifies `order_changed` with its id, in its own transaction:
-- PostgreSQL delivers the notification at commit, never for a rollback. A shopper's request
-- waiting for its order to change (`GET /v1/orders/{id}` with `Prefer: wait`, src/changes.rs)
-- wakes on it, whichever replica or consumer made the change. The payload is an order id,
-- nothing personal.
CREATE FUNCTION notify_order_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_changed', NEW.order_id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_changed
    AFTER UPDATE OF version ON orders
    FOR EACH ROW EXECUTE FUNCTION notify_order_changed();
