"""Tests of dev/chaos_check.py: each invariant fails on the state it must catch and holds on
a consistent one; failed requests are counted against the fault whose window holds them.

Run: python3 -m unittest dev/tests/test_chaos_check.py   (dev/test runs it)
"""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

chaos = load("chaos_check")

ORDERS = [
    {"order_id": "a", "status": "confirmed", "total_minor": "1200"},
    {"order_id": "b", "status": "cancelled", "total_minor": "800"},
]
COUNTERS = [{"reserved": "0", "held": "0", "oversold": "0"}]


class Windows(unittest.TestCase):
    def faults(self):
        return [chaos.Fault("kill -9 orders", 10_000, 12_000, 15_000)]

    def test_failures_inside_a_window_are_the_faults(self):
        faults = self.faults()
        verdict = chaos.attribute(
            faults, [(11_000, 502, False), (24_000, 0, False), (13_000, 200, True), (14_000, 422, False)]
        )
        self.assertTrue(verdict.holds, verdict.problems)
        self.assertEqual((faults[0].failed, faults[0].server_errors), (3, 2))

    def test_a_server_error_outside_every_window_breaks_the_invariant(self):
        verdict = chaos.attribute(self.faults(), [(26_000, 503, False), (5_000, 200, True)])
        self.assertFalse(verdict.holds)
        self.assertIn("1 server errors outside", verdict.problems[0])

    def test_a_failure_belongs_to_the_latest_fault_begun(self):
        faults = [chaos.Fault("first", 0, 1_000, 2_000), chaos.Fault("second", 5_000, 6_000, 7_000)]
        chaos.attribute(faults, [(5_500, 502, False)])
        self.assertEqual((faults[0].failed, faults[1].failed), (0, 1))

    def test_a_client_error_outside_a_window_is_not_a_server_error(self):
        self.assertTrue(chaos.attribute(self.faults(), [(40_000, 422, False)]).holds)


class Files(unittest.TestCase):
    def test_requests_are_placed_in_time_by_their_end_from_goose_start(self):
        with tempfile.TemporaryDirectory() as d:
            summary, log = Path(d, "summary.json"), Path(d, "requests.json")
            summary.write_text(json.dumps({"started_at": "2026-12-02T18:00:00.500000123Z"}))
            log.write_text(
                json.dumps({"elapsed": 1470, "response_time": 30, "status_code": 200, "success": True, "update": False})
                + "\n"
                + json.dumps({"elapsed": 1500, "status_code": 200, "success": False, "update": True})
                + "\n"
            )
            (at, status, ok), = chaos.read_requests(summary, log)
            self.assertEqual(at, 1_796_234_402_000)
            self.assertEqual((status, ok), (200, True))

    def test_faults_are_read_from_the_table(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d, "faults.tsv")
            path.write_text("fault\tstart_ms\trestored_ms\trecovered_ms\nkill -9 gateway\t1\t2\t3\n")
            self.assertEqual(chaos.read_faults(path), [chaos.Fault("kill -9 gateway", 1, 2, 3)])


class DeadLetters(unittest.TestCase):
    BEFORE = " pending  topic\n       2  persistent://comptoir/orders/x-DLQ\n"

    def test_only_new_dead_letters_count(self):
        self.assertTrue(chaos.new_dead_letters(self.BEFORE, self.BEFORE).holds)
        after = self.BEFORE.replace("2  ", "3  ") + "       1  persistent://comptoir/payments/y-DLQ\n"
        verdict = chaos.new_dead_letters(self.BEFORE, after)
        self.assertEqual(len(verdict.problems), 2, verdict.problems)


class Databases(unittest.TestCase):
    def test_every_order_must_end(self):
        self.assertTrue(chaos.orders_end(ORDERS).holds)
        stuck = ORDERS + [{"order_id": "c", "status": "payment-authorised", "total_minor": "1"}]
        self.assertIn("1 still in flight", chaos.orders_end(stuck).problems[0])

    def test_stock_must_follow_the_orders(self):
        good = [{"order_id": "a", "status": "committed"}, {"order_id": "b", "status": "released"}]
        self.assertTrue(chaos.stock_agrees(ORDERS, good, COUNTERS).holds)
        sold_for_nothing = [{"order_id": "a", "status": "committed"}, {"order_id": "b", "status": "committed"}]
        self.assertFalse(chaos.stock_agrees(ORDERS, sold_for_nothing, COUNTERS).holds)
        never_sold = [{"order_id": "b", "status": "released"}]
        self.assertFalse(chaos.stock_agrees(ORDERS, never_sold, COUNTERS).holds)
        drift = [{"reserved": "3", "held": "1", "oversold": "0"}]
        self.assertIn("3 reserved", chaos.stock_agrees(ORDERS, good, drift).problems[0])

    def test_payments_must_follow_the_orders(self):
        good = [
            {"order_id": "a", "status": "captured", "amount_minor": "1200"},
            {"order_id": "b", "status": "voided", "amount_minor": "800"},
        ]
        self.assertTrue(chaos.payments_agree(ORDERS, good, []).holds)
        charged_cancelled = [good[0], {"order_id": "b", "status": "captured", "amount_minor": "800"}]
        self.assertFalse(chaos.payments_agree(ORDERS, charged_cancelled, []).holds)
        # The reservation and the authorisation are asked for at once: a cancelled order's
        # authorisation must end voided (or declined), never left holding the money.
        held = [good[0], {"order_id": "b", "status": "authorised", "amount_minor": "800"}]
        self.assertIn("never voided", chaos.payments_agree(ORDERS, held, []).problems[0])
        declined = [good[0], {"order_id": "b", "status": "declined", "amount_minor": "800"}]
        self.assertTrue(chaos.payments_agree(ORDERS, declined, []).holds)
        wrong_amount = [{"order_id": "a", "status": "captured", "amount_minor": "1"}, good[1]]
        self.assertFalse(chaos.payments_agree(ORDERS, wrong_amount, []).holds)
        unpaid = [good[1]]
        self.assertFalse(chaos.payments_agree(ORDERS, unpaid, []).holds)
        twice = chaos.payments_agree(ORDERS, good, [{"order_id": "a", "n": "2"}])
        self.assertIn("captured 2 times", twice.problems[0])

    def test_outboxes_must_be_empty(self):
        self.assertTrue(chaos.outboxes_empty({"orders": 0, "payments": 0}).holds)
        self.assertIn("payments: 4", chaos.outboxes_empty({"orders": 0, "payments": 4}).problems[0])

    def test_the_admin_url_names_each_database(self):
        db = chaos.Databases("postgres://admin:pw@127.0.0.1:55432/postgres?sslmode=require")
        self.assertEqual(db.url("orders"), "postgres://admin:pw@127.0.0.1:55432/orders?sslmode=require")


class Table(unittest.TestCase):
    def test_the_table_shows_each_fault_and_invariant(self):
        fault = chaos.Fault("kill -9 orders", 0, 2_000, 3_500, failed=4, server_errors=1)
        text = chaos.table([fault], [chaos.Verdict("x"), chaos.Verdict("y", ["broken"])], ORDERS)
        self.assertIn("| kill -9 orders | 2.0 | 3.5 | 4 | 1 |", text)
        self.assertIn("1 cancelled, 1 confirmed", text)
        self.assertIn("| y | NO: broken |", text)


if __name__ == "__main__":
    unittest.main()
