"""The click-stream ingestion benchmark's driver (dev/bench-analytics.sh runs it).

1. wrk posts batches of CLICKS product views to POST /v1/events through the gateway, for
   SECONDS, over CONNECTIONS connections, rotating 64 anonymous sessions (so the batches
   spread over the topic's partitions), each batch with clicks of the current minute.
2. Meanwhile, one marker batch a second (a single view of a product id of its own) is posted
   and the product's KPI series polled every 10 ms until it counts it: the event-to-aggregate
   latency, p50 and p99 over the markers.
3. After wrk, the processor is waited for until everything accepted is counted (analytics'
   own `analytics_clicks_total{result="accepted"}` and the funnel's product views): the
   end-to-end rate is what was counted per second from the first request to the last count.

Prints one JSON object. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def request(url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def accepted_clicks(analytics: str) -> int:
    with urllib.request.urlopen(f"{analytics}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(r'^analytics_clicks_total\{result="accepted"\} (\d+)', text, re.M)
    return int(match.group(1)) if match else 0


def counted_views(gateway: str, token: str) -> int:
    return request(f"{gateway}/v1/admin/kpis/funnel?minutes=120", token=token)["product_views"]


def wrk_script(path: str, products: list[str], clicks: int) -> int:
    """A Lua script rotating 64 bodies; returns one body's size in bytes."""
    at = now_rfc3339()
    bodies = []
    for s in range(64):
        events = [
            {"type": "product-view", "at": at, "product_id": products[(s + i) % len(products)]}
            for i in range(clicks)
        ]
        bodies.append(json.dumps({"session": f"bench-session-{s:08d}", "events": events}))
    lua = ["bodies = {"]
    lua += [f"  [[{b}]]," for b in bodies]
    lua += [
        "}",
        "i = 0",
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "request = function()",
        "  i = i % #bodies + 1",
        "  return wrk.format(nil, nil, nil, bodies[i])",
        "end",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lua) + "\n")
    return len(bodies[0].encode())


def markers(gateway: str, token: str, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        product = str(uuid.uuid4())
        started = time.monotonic()
        body = {"session": "bench-marker-session", "events": [
            {"type": "product-view", "at": now_rfc3339(), "product_id": product}]}
        try:
            request(f"{gateway}/v1/events", body)
            while time.monotonic() - started < 30:
                series = request(f"{gateway}/v1/admin/kpis/products/{product}?minutes=5", token=token)
                if series["series"]:
                    latencies.append(time.monotonic() - started)
                    break
                time.sleep(0.01)
        except OSError as error:
            print(f"bench-analytics: marker failed: {error}", file=sys.stderr)
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> int:
    gateway, analytics, token_file, seconds, clicks, connections = sys.argv[1:7]
    token = open(token_file).read().strip()
    seconds, clicks, connections = int(seconds), int(clicks), int(connections)
    products = [p["id"] for p in request(f"{gateway}/v1/products?limit=50")["items"]]
    before_accepted = accepted_clicks(analytics)
    before_views = counted_views(gateway, token)
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "events.lua")
        body_bytes = wrk_script(script, products, clicks)
        latencies: list[float] = []
        stop = threading.Event()
        marker = threading.Thread(target=markers, args=(gateway, token, stop, latencies))
        started = time.monotonic()
        marker.start()
        wrk = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, f"{gateway}/v1/events"],
            capture_output=True, text=True, check=True)
        stop.set()
        marker.join()
    accepted = accepted_clicks(analytics) - before_accepted
    # Everything accepted (the markers included) counted: the processor has caught up.
    deadline = time.monotonic() + 600
    while counted_views(gateway, token) - before_views < accepted:
        if time.monotonic() > deadline:
            raise SystemExit("bench-analytics: the processor did not catch up within 10 minutes")
        time.sleep(0.2)
    drained = time.monotonic() - started
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk.stdout)
    print(json.dumps({
        "seconds": seconds,
        "clicks_per_batch": clicks,
        "connections": connections,
        "batch_bytes": body_bytes,
        "accepted_clicks": accepted,
        "ingested_per_s": accepted / seconds,
        "batches_per_s": accepted / clicks / seconds,
        "counted_per_s": accepted / drained,
        "drained_after_s": drained,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "markers": len(latencies),
        "event_to_aggregate_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "event_to_aggregate_p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "wrk": wrk.stdout,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
