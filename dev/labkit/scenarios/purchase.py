"""Purchase: one shopper's whole path through the shop's entry (port 80 of an app host, from the
operators' station), on the settings as generated. A product is created (catalog's admin token)
and stocked (inventory's), a customer registers and signs in (identity), puts the product in the
cart and checks out (orders, inventory and payments over Pulsar) until the order is confirmed;
then the confirmation mail must be in the relay's mailbox.

Besides the saga, this is the path of the services' TLS to identity and to the relay: the
gateway and orders verify the access token with identity's JWKS, fetched over HTTPS from
identity's own TLS port and verified with the platform CA; notifications reads the customer's
address from identity's /internal over HTTPS and hands the mail to the relay with STARTTLS and
its account. Mailpit takes mail from nobody else (checked first: plaintext refused, a certificate
for its address from the platform CA) and keeps with each mail the account that handed it over.
Then the traces: the checkout carries a W3C `traceparent` chosen here, and that trace must be ONE
trace in the environment's Jaeger (nixos/lib/jaeger.nix, on the monitoring host) with spans of
every service the purchase crossed, exported by each over OTLP/HTTP through the firewalls, and
the lab's Prometheus must scrape Jaeger's own metrics (spans accepted, none dropped).
Measured: from the checkout to `confirmed`, to the mail in the mailbox, and to the whole trace."""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import urllib.parse
import uuid

import monitoring_check

from .. import credentials, spec
from ..proc import log
from ..roles import apps, monitoring, smtp

TIMEOUT = 10.0
DEADLINE = 60.0
PASSWORD = "correct horse battery staple"
# Every service a purchase crosses (identity: the customer's address for the mail).
TRACED = ["gateway", "orders", "inventory", "payments", "notifications", "identity"]


class _Shop:
    """JSON requests to the shop's entry from the operators' station."""

    def __init__(self, address: str):
        self.address, self.port = address, apps.cluster()["ports"]["ingressHttp"]

    def call(self, method: str, path: str, token: str | None = None, body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, object]:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = apps.http_request(spec.admin_name(), self.address, self.port, method, path, TIMEOUT,
                                        payload, headers)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def until(self, what: str, method: str, path: str, done=None, **kwargs) -> object:
        """Repeats the request until `done(status, body)` (default: a 2xx), for DEADLINE seconds
        at most; returns the body."""
        done = done or (lambda status, _: 200 <= status < 300)
        deadline = time.monotonic() + DEADLINE
        while True:
            status, body = self.call(method, path, **kwargs)
            if done(status, body):
                return body
            assert time.monotonic() < deadline, f"{what}: not within {DEADLINE:.0f} s (last: HTTP {status} {body})"
            time.sleep(0.5)


class _LabSMTP(smtplib.SMTP):
    """An SMTP client whose connection is made from the operators' station."""

    def _get_socket(self, host, port, timeout):
        sock = apps.ns_socket(spec.admin_name())
        sock.settimeout(timeout)
        sock.connect((host, port))
        return sock


def _check_relay(relay: dict) -> None:
    """The relay refuses mail before STARTTLS, presents a certificate of the platform CA for the
    name notifications connects to (smtpRelay.host: the lab's is an address, no name to resolve),
    and offers authentication only then."""
    with _LabSMTP(relay["host"], relay["port"], timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls"), "the relay does not offer STARTTLS"
        code, answer = client.mail("probe@lab.comptoir.test")
        assert code == 530, f"the relay takes mail without TLS: {code} {answer!r}"
        try:
            client.starttls(context=ssl.create_default_context(cafile=str(credentials.platform_ca())))
        except ssl.SSLCertVerificationError as error:
            raise AssertionError(f"the relay's certificate: {error.verify_message}") from None
        client.ehlo()
        assert client.has_extn("auth"), "the relay offers no authentication after STARTTLS"


def _admin_token(service: str) -> str:
    return apps.secret_file(service, "admin-token").read_text().strip()


def _mails_to(relay: dict, email: str) -> list[dict]:
    """The mails to `email` in the relay's mailbox (Mailpit's API), newest first."""
    query = urllib.parse.quote(f"to:{email}")
    status, body = apps.http_get(spec.admin_name(), relay["address"], smtp.UI_PORT, f"/api/v1/search?query={query}",
                                 TIMEOUT)
    assert status == 200, f"Mailpit's API: HTTP {status}"
    return json.loads(body)["messages"]


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    relay = lab.smtp_relay
    _check_relay(relay)
    entry = apps.k3s_hosts(lab)[0]
    shop = _Shop(entry.address)

    run_id = uuid.uuid4().hex[:10].upper()
    product = shop.until("the product created", "POST", "/v1/admin/products", token=_admin_token("catalog"), body={
        "sku": f"LAB-{run_id}", "name": "Lab purchase", "description": "dev/lab purchase scenario",
        "price_cents": 1250, "currency": "EUR", "active": True,
    })["id"]
    # Inventory learns of the product from catalog's event: 404 until then.
    shop.until("the product stocked", "POST", f"/v1/admin/stock/{product}/adjustments", token=_admin_token("inventory"),
               body={"delta": 5, "reason": "dev/lab purchase scenario"})

    email = f"lab.{run_id.lower()}@example.org"
    shop.until("registration", "POST", "/v1/customers", body={"email": email, "password": PASSWORD,
                                                               "name": "Lab Shopper"})
    token = shop.until("sign-in", "POST", "/v1/sessions", body={"email": email, "password": PASSWORD})["access_token"]
    # Signed-in requests: the gateway and orders verify the token with identity's JWKS (HTTPS).
    # Orders learns of the product from catalog's event: 422 until then.
    shop.until("the product in the cart", "PUT", f"/v1/cart/lines/{product}", token=token, body={"quantity": 2})

    checkout = time.monotonic()
    trace_id = uuid.uuid4().hex
    status, order = shop.call("POST", "/v1/orders", token=token, body={"payment_token": "tok_success"},
                              headers={"Idempotency-Key": str(uuid.uuid4()),
                                       "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    assert status == 202, f"checkout: HTTP {status} {order}"
    order_id = order["id"]
    shop.until(f"order {order_id} confirmed", "GET", f"/v1/orders/{order_id}", token=token,
               done=lambda s, body: s == 200 and body["status"] == "confirmed")
    confirmed = time.monotonic() - checkout
    log(f"purchase: order {order_id} confirmed {confirmed:.1f} s after the checkout")

    deadline = time.monotonic() + DEADLINE
    while not (mails := [m for m in _mails_to(relay, email) if "confirmed" in m["Subject"]]):
        assert time.monotonic() < deadline, (
            f"no confirmation to {email} in the relay's mailbox {DEADLINE:.0f} s after the order "
            f"(mails to it: {[m['Subject'] for m in _mails_to(relay, email)]})"
        )
        time.sleep(0.5)
    delivered = time.monotonic() - checkout
    mail = mails[-1]
    # Stored with the mail in one transaction (Mailpit's tags come after it: a reader may see none).
    assert mail.get("Username") == relay["username"], (
        f"the mail was not handed over by {relay['username']}: account {mail.get('Username')!r}"
    )
    log(f"purchase: the mail {mail['Subject']!r} in the relay's mailbox {delivered:.1f} s after the checkout")

    spans, traced = _whole_trace(lab, trace_id)
    traced_after = time.monotonic() - checkout
    _jaeger_scraped(monitoring.monitoring_host(lab))
    log(f"purchase: trace {trace_id} whole in Jaeger ({spans} spans of {', '.join(TRACED)}) "
        f"{traced_after:.1f} s after the checkout")
    return [
        ("relay", f"plaintext refused, STARTTLS with the platform CA's certificate for {relay['host']}"),
        ("order", f"confirmed {confirmed:.1f} s after the checkout (through {entry.name})"),
        ("mail", f"in the mailbox {delivered:.1f} s after the checkout, handed over by {relay['username']}"),
        ("trace", f"one trace of {spans} spans across {', '.join(traced)} in the environment's Jaeger "
                  f"{traced_after:.1f} s after the checkout"),
    ]


def _whole_trace(lab: spec.Lab, trace_id: str) -> tuple[int, list[str]]:
    """Waits for the trace in the monitoring host's Jaeger (its query API, from the operators'
    station) to hold spans of every TRACED service: the last ones come after the mail, and
    each service's exporter batches for a few seconds."""
    mon = monitoring.monitoring_host(lab)
    deadline = time.monotonic() + DEADLINE
    while True:
        status, raw = apps.http_get(spec.admin_name(), mon.address, monitoring.JAEGER_PORT,
                                    f"/api/traces/{trace_id}", TIMEOUT)
        body = json.loads(raw) if status == 200 else {}
        problems = (monitoring_check.trace_body_problems(body, trace_id, TRACED) if status == 200
                    else [f"Jaeger has no trace {trace_id} yet (HTTP {status})"])
        if not problems:
            trace = body["data"][0]
            names = sorted({trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]})
            return len(trace["spans"]), names
        assert time.monotonic() < deadline, f"the purchase's trace in the lab's Jaeger: {problems}"
        time.sleep(1)


def _jaeger_scraped(mon: spec.Host) -> None:
    """The lab's Prometheus scrapes Jaeger's own metrics (job `jaeger`, what TracesDropped
    reads): the spans it accepted are there, and none refused or left unstored."""
    def value(metric: str) -> float | None:
        query = urllib.parse.quote(f'sum({metric}{{job="jaeger"}})')
        status, raw = apps.http_get(spec.admin_name(), mon.address, monitoring.PROMETHEUS_PORT,
                                    f"/api/v1/query?query={query}", TIMEOUT)
        result = json.loads(raw)["data"]["result"] if status == 200 else []
        return float(result[0]["value"][1]) if result else None

    deadline = time.monotonic() + DEADLINE
    # Scraped every 30 s (the generated global interval): the first scrape may still be ahead.
    while not (value("otelcol_receiver_accepted_spans_total") or 0) > 0:
        assert time.monotonic() < deadline, "no accepted spans of job jaeger in the lab's Prometheus"
        time.sleep(1)
    for metric in ("otelcol_receiver_refused_spans_total", "otelcol_exporter_send_failed_spans_total"):
        dropped = value(metric) or 0
        assert dropped == 0, f"the lab's Jaeger dropped spans: {metric} = {dropped}"
