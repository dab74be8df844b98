#!/usr/bin/env python3
"""Judges a chaos run (dev/chaos.sh) from the databases and the broker, and prints its table.

    chaos_check.py --run DIR --admin-url URL --since EPOCH_SECONDS

DIR holds faults.tsv (fault, start, restored and recovered times in epoch milliseconds),
load/summary.json and load/requests.json (the load generator's: when goose started, and one
line per request with its `elapsed` milliseconds from then), dlq-before.txt and dlq-after.txt
(`comptoir-xtask dlq list`). The databases are read with psql as the administrator, each
service's own database (`/postgres` of the admin URL replaced by the service's name), after
waiting up to SETTLE_SECONDS for the sagas to end and the outboxes to drain.

Exit status 0 when every invariant holds, 1 otherwise (each failure says what and which).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SETTLE_SECONDS = 120
# A server error this long after a fault's recovery is no longer the fault's.
GRACE_MS = 10_000
TERMINAL = ("confirmed", "cancelled", "refunded")
OUTBOX_OWNERS = ("catalog", "identity", "orders", "inventory", "payments", "notifications", "analytics")


@dataclass
class Fault:
    name: str
    start_ms: int
    restored_ms: int
    recovered_ms: int
    failed: int = 0
    server_errors: int = 0


@dataclass
class Verdict:
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.problems


def read_faults(path: Path) -> list[Fault]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        Fault(r["fault"], int(r["start_ms"]), int(r["restored_ms"]), int(r["recovered_ms"]))
        for r in rows
    ]


def read_requests(summary: Path, log: Path) -> list[tuple[int, int, bool]]:
    """(epoch ms when it ended, status code, success) of every request; status 0 is no answer
    at all. The end, not the start: a request sent just before a kill fails because of it."""
    started = json.loads(summary.read_text(encoding="utf-8")).get("started_at")
    if not started:
        raise SystemExit(f"{summary}: no started_at (the load never started)")
    origin = int(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() * 1000)
    requests = []
    with log.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("update"):
                continue
            ended = origin + int(r["elapsed"]) + int(r.get("response_time", 0))
            requests.append((ended, int(r["status_code"]), bool(r["success"])))
    return requests


def attribute(faults: list[Fault], requests: list[tuple[int, int, bool]]) -> Verdict:
    """Counts each failed request against the latest fault begun before it, when it falls in
    that fault's window; a server error in no window breaks the invariant. `faults` are in the
    order they happened."""
    verdict = Verdict("no server error outside a fault's window (+10 s)")
    stray: list[tuple[int, int]] = []
    for at, status, success in requests:
        if success:
            continue
        server_error = status == 0 or status >= 500
        # The latest fault begun by then, if the request falls in its window.
        begun = [f for f in faults if f.start_ms <= at]
        window = begun[-1] if begun and at <= begun[-1].recovered_ms + GRACE_MS else None
        if window is not None:
            window.failed += 1
            window.server_errors += int(server_error)
        elif server_error:
            stray.append((at, status))
    if stray:
        first = datetime.fromtimestamp(stray[0][0] / 1000).isoformat(timespec="milliseconds")
        verdict.problems.append(
            f"{len(stray)} server errors outside every fault window (first at {first}, "
            f"status {stray[0][1]})"
        )
    return verdict


def dead_letters(text: str) -> dict[str, int]:
    """`comptoir-xtask dlq list` output: '<pending>  <topic>' lines after a header."""
    pending = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+)\s+(\S+)\s*$", line)
        if m:
            pending[m.group(2)] = int(m.group(1))
    return pending


def new_dead_letters(before: str, after: str) -> Verdict:
    verdict = Verdict("no dead letter appeared")
    was = dead_letters(before)
    for topic, count in sorted(dead_letters(after).items()):
        grown = count - was.get(topic, 0)
        if grown > 0:
            verdict.problems.append(
                f"{grown} new on {topic} (comptoir-xtask dlq inspect shows them)"
            )
    return verdict


class Databases:
    def __init__(self, admin_url: str):
        self.admin_url = admin_url

    def url(self, database: str) -> str:
        return re.sub(r"/postgres(\?|$)", f"/{database}\\1", self.admin_url)

    def rows(self, database: str, sql: str) -> list[dict[str, str]]:
        out = subprocess.run(
            ["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", self.url(database), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return list(csv.DictReader(io.StringIO(out)))


def outbox_counts(db: Databases) -> dict[str, int]:
    """Events not yet published, per service."""
    return {s: int(db.rows(s, "SELECT count(*) AS n FROM outbox")[0]["n"]) for s in OUTBOX_OWNERS}


def held_for_cancelled(db: Databases, since: int) -> int:
    """Cancelled orders of the run that something is still held for: a reservation not
    released, an authorisation not voided (their compensations may still be on the way)."""
    cancelled = {
        r["order_id"]
        for r in db.rows(
            "orders",
            f"SELECT order_id FROM orders WHERE created_at >= to_timestamp({since}) "
            "AND status = 'cancelled'",
        )
    }
    held = {r["order_id"] for r in db.rows("inventory", "SELECT order_id FROM reservations WHERE status = 'reserved'")}
    held |= {r["order_id"] for r in db.rows("payments", "SELECT order_id FROM payments WHERE status = 'authorised'")}
    return len(cancelled & held)


def settle(db: Databases, since: int, seconds: int = SETTLE_SECONDS) -> None:
    """Waits until no order of the run is in flight, every outbox is empty and nothing is held
    for a cancelled order any more."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        in_flight = db.rows(
            "orders",
            f"SELECT count(*) AS n FROM orders WHERE created_at >= to_timestamp({since}) "
            f"AND status NOT IN {TERMINAL!r}",
        )[0]["n"]
        if in_flight == "0" and not any(outbox_counts(db).values()) and not held_for_cancelled(db, since):
            return
        time.sleep(2)


def orders_end(orders: list[dict[str, str]]) -> Verdict:
    verdict = Verdict("every order accepted during the run ended (confirmed or cancelled)")
    stuck = [o for o in orders if o["status"] not in TERMINAL]
    if stuck:
        verdict.problems.append(
            f"{len(stuck)} still in flight, e.g. {stuck[0]['order_id']} {stuck[0]['status']}"
        )
    return verdict


def stock_agrees(orders, reservations, counters) -> Verdict:
    verdict = Verdict("inventory agrees with orders (no stock sold for an order not confirmed)")
    held = {r["order_id"]: r["status"] for r in reservations}
    for o in orders:
        status = held.get(o["order_id"])
        if o["status"] == "confirmed" and status != "committed":
            verdict.problems.append(f"confirmed order {o['order_id']}: reservation {status}")
        if o["status"] == "cancelled" and status in ("committed", "reserved"):
            verdict.problems.append(f"cancelled order {o['order_id']}: reservation {status}")
    c = counters[0]
    if c["reserved"] != c["held"]:
        verdict.problems.append(
            f"stock counts {c['reserved']} reserved, the live reservations hold {c['held']}"
        )
    if c["oversold"] != "0":
        verdict.problems.append(f"{c['oversold']} products reserved beyond what is on hand")
    return verdict


def payments_agree(orders, payments, double_captures) -> Verdict:
    verdict = Verdict(
        "payments agree with orders (captured once, for confirmed orders only; nothing held for a cancelled one)"
    )
    paid = {p["order_id"]: p for p in payments}
    for o in orders:
        p = paid.get(o["order_id"])
        if o["status"] == "confirmed":
            if p is None or p["status"] != "captured":
                verdict.problems.append(
                    f"confirmed order {o['order_id']}: payment {p and p['status']}"
                )
            elif p["amount_minor"] != o["total_minor"]:
                verdict.problems.append(
                    f"order {o['order_id']}: captured {p['amount_minor']}, total {o['total_minor']}"
                )
        elif o["status"] == "cancelled" and p is not None and p["status"] in ("captured", "refunded"):
            verdict.problems.append(f"cancelled order {o['order_id']}: payment {p['status']}")
        elif o["status"] == "cancelled" and p is not None and p["status"] == "authorised":
            verdict.problems.append(
                f"cancelled order {o['order_id']}: its authorisation was never voided (money held)"
            )
    for d in double_captures:
        verdict.problems.append(f"order {d['order_id']} captured {d['n']} times")
    return verdict


def outboxes_empty(counts: dict[str, int]) -> Verdict:
    verdict = Verdict("every outbox is empty")
    for service, n in counts.items():
        if n:
            verdict.problems.append(f"{service}: {n} events not published")
    return verdict


def table(faults: list[Fault], verdicts: list[Verdict], orders: list[dict[str, str]]) -> str:
    lines = [
        "| fault | down (s) | recovered after (s) | requests failed | of which server errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in faults:
        lines.append(
            f"| {f.name} | {(f.restored_ms - f.start_ms) / 1000:.1f} | "
            f"{(f.recovered_ms - f.start_ms) / 1000:.1f} | {f.failed} | {f.server_errors} |"
        )
    by_status: dict[str, int] = {}
    for o in orders:
        by_status[o["status"]] = by_status.get(o["status"], 0) + 1
    lines += [
        "",
        "Orders of the run: "
        + (", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"),
        "",
        "| invariant | holds |",
        "|---|---|",
    ]
    for v in verdicts:
        lines.append(f"| {v.name} | {'yes' if v.holds else 'NO: ' + '; '.join(v.problems[:5])} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--admin-url", required=True)
    parser.add_argument("--since", type=int, required=True, help="epoch seconds")
    args = parser.parse_args(argv)
    run: Path = args.run

    faults = read_faults(run / "faults.tsv")
    requests = read_requests(run / "load" / "summary.json", run / "load" / "requests.json")
    windows = attribute(faults, requests)
    letters = new_dead_letters(
        (run / "dlq-before.txt").read_text(encoding="utf-8"),
        (run / "dlq-after.txt").read_text(encoding="utf-8"),
    )

    db = Databases(args.admin_url)
    settle(db, args.since)
    orders = db.rows(
        "orders",
        f"SELECT order_id, status, total_minor FROM orders WHERE created_at >= to_timestamp({args.since})",
    )
    reservations = db.rows("inventory", "SELECT order_id, status FROM reservations")
    counters = db.rows(
        "inventory",
        "SELECT (SELECT coalesce(sum(reserved), 0) FROM stock) AS reserved, "
        "(SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l JOIN reservations r "
        "USING (order_id) WHERE r.status = 'reserved') AS held, "
        "(SELECT count(*) FROM stock WHERE reserved > on_hand OR on_hand < 0) AS oversold",
    )
    payments = db.rows("payments", "SELECT order_id, status, amount_minor FROM payments")
    double = db.rows(
        "payments",
        "SELECT order_id, count(*) AS n FROM payment_operations "
        "WHERE action = 'capture' AND result = 'captured' GROUP BY order_id HAVING count(*) > 1",
    )
    outbox = outbox_counts(db)

    verdicts = [
        orders_end(orders),
        stock_agrees(orders, reservations, counters),
        payments_agree(orders, payments, double),
        outboxes_empty(outbox),
        letters,
        windows,
    ]
    confirmed = sum(o["status"] == "confirmed" for o in orders)
    if confirmed == 0:
        verdicts.append(Verdict("some order was confirmed", ["no order confirmed: the load did not buy"]))
    print(table(faults, verdicts, orders))
    return 0 if all(v.holds for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
