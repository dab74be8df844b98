-- The orders whose saga has not finished, for the orders_in_flight gauge (src/kpis.rs): the
-- index holds the saga's backlog only, so reading it every few seconds stays cheap however
-- long the order history grows.
CREATE INDEX orders_in_flight ON orders (status)
    WHERE status NOT IN ('confirmed', 'cancelled', 'refunded');
