-- The checkout's first step runs in two legs at once (docs/adr/0027-saga-parallel-first-step.md):
-- inventory reserves the stock while payments authorises the card. An authorisation that
-- answers before the stock is remembered here; the order stays `pending` until the stock
-- answers too.
ALTER TABLE orders ADD COLUMN payment_authorised boolean NOT NULL DEFAULT false;

-- The card token now goes straight into the authorise command, written in the checkout's own
-- transaction: new orders never store it. The column stays for orders placed before this
-- version that still wait for their stock (their authorise leaves when it is reserved, and the
-- token is dropped then, as before).
COMMENT ON COLUMN orders.payment_token IS
    'Only on orders placed before V4 that still wait for their stock; NULL otherwise.';
