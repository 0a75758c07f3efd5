"""Delivery events in: events/s that the providers' webhooks ingest through gunicorn (2 sync
workers, the product's gunicorn.conf.py) on PostgreSQL, posted by client threads in another
process, each request over its own connection, every event new (a unique provider event id).

- SendGrid's format: batches of BENCH_EMAIL_EVENTS_BATCH events a request (100; SendGrid
  posts its events in batches), signed (ECDSA) and with basic auth, as SendGrid sends them.
- Postmark's format: one event a request (Postmark posts each event alone), basic auth.
- The floor: a post to the same route for a provider that is not served, answered 404 at once
  (the same server, middleware and URL, no work): a bound on any one-event-a-request rate.

The events are a realistic mix for emails that exist: 85% delivered, 10% deferred, 4% hard
bounces (each suppresses its address and is audited) and 1% complaints. Min and median of
BENCH_ROUNDS (5) interleaved runs of BENCH_EMAIL_EVENTS_SECONDS (6) each. Target: 1,000
events/s.
"""

import base64
import json
import socket
import statistics
import threading
import time
import uuid

from django.db import connection
from django.db.models import Count

from bench.common import (
    env_int,
    gunicorn,
    print_table,
    run_clients,
    scratch_database,
    write_results,
)
from emails.models import EmailEvent, EmailLog
from emails.tests.webhook_payloads import SendGridSigner

ROUNDS = env_int("BENCH_ROUNDS", 5)
SECONDS = env_int("BENCH_EMAIL_EVENTS_SECONDS", 6)
BATCH = env_int("BENCH_EMAIL_EVENTS_BATCH", 100)
CLIENTS = env_int("BENCH_EMAIL_EVENTS_CLIENTS", 4)
EMAILS = env_int("BENCH_EMAIL_EVENTS_EMAILS", 20_000)
SECRET = "bench:webhook-secret"
AUTHORIZATION = "Basic " + base64.b64encode(SECRET.encode()).decode()

SENDGRID_KINDS = ["delivered"] * 85 + ["deferred"] * 10 + ["bounce"] * 4 + ["spamreport"]
POSTMARK_KINDS = ["Delivery"] * 85 + ["Transient"] * 10 + ["HardBounce"] * 4 + ["SpamComplaint"]


def setup() -> list[tuple[str, str]]:
    """Sent emails, each with its provider's message id: (message id, address)."""
    rows = [
        EmailLog(
            to_email=f"client{n}@example.com",
            from_email="noreply@invoicegen.local",
            subject="Invoice",
            template_name="admin_message",
            message_id=f"<bench.{n}@invoicegen.local>",
            provider_message_id=f"esp-{n}",
            status=EmailLog.Status.SENT,
        )
        for n in range(EMAILS)
    ]
    EmailLog.objects.bulk_create(rows, batch_size=2000)
    return [(row.provider_message_id, row.to_email) for row in rows]


def request(path: str, body: bytes, headers: dict) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"Authorization: {AUTHORIZATION}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sendgrid_requests(emails, signer: SendGridSigner, count: int) -> list[tuple[bytes, int]]:
    made, n = [], 0
    for _ in range(count):
        events = []
        for _ in range(BATCH):
            message_id, address = emails[n % len(emails)]
            kind = SENDGRID_KINDS[n % len(SENDGRID_KINDS)]
            events.append(
                {"email": address, "timestamp": int(time.time()), "event": kind,
                 "sg_event_id": uuid.uuid4().hex, "anymail_id": message_id,
                 "sg_message_id": f"{message_id}.filter0001"}
            )  # fmt: skip
            n += 1
        body = json.dumps(events).encode()
        headers = signer.headers(body)
        made.append((request("/webhooks/email/sendgrid/tracking/", body, headers), BATCH))
    return made


def postmark_requests(emails, count: int, offset: int) -> list[tuple[bytes, int]]:
    made = []
    for n in range(offset, offset + count):
        message_id, address = emails[n % len(emails)]
        kind = POSTMARK_KINDS[n % len(POSTMARK_KINDS)]
        record_type = kind if kind in ("Delivery", "SpamComplaint") else "Bounce"
        event = {"RecordType": record_type, "MessageID": message_id, "ServerID": 1, "Metadata": {}}
        if kind == "Delivery":
            event |= {"Recipient": address, "DeliveredAt": "2026-11-30T10:00:00Z"}
            event["Details"] = f"delivery {uuid.uuid4().hex}"  # its digest is its id
        else:  # a deferral (Transient) is a bounce record to Postmark
            event |= {"ID": n, "Type": kind}
            event |= {"Email": address, "BouncedAt": "2026-11-30T10:00:00Z"}
            event["Description"] = "mailbox unavailable"
        body = json.dumps(event).encode()
        made.append((request("/webhooks/email/postmark/tracking/", body, {}), 1))
    return made


def floor_requests(count: int) -> list[tuple[bytes, int]]:
    return [(request("/webhooks/email/unserved/tracking/", b"{}", {}), 1)] * count


def post(port: int, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(raw)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    status = b"".join(chunks)[:12]
    expected = b"404" if b"/unserved/" in raw[:60] else b"200"
    if not status.endswith(expected):
        raise RuntimeError(f"answer {status!r}")


def blast(port: int, prepared: list[tuple[bytes, int]], seconds: float) -> tuple[float, int]:
    """Events/s (requests/s for the floor) of CLIENTS threads posting prepared requests for
    `seconds` (or until none is left); and how many went in."""
    lock, done = threading.Lock(), [0]
    stop = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < stop:
            with lock:
                if not prepared:
                    return
                raw, events = prepared.pop()
            post(port, raw)
            with lock:
                done[0] += events

    elapsed = run_clients(client, CLIENTS)
    return done[0] / elapsed, done[0]


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_email_events needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    results = {"rounds": ROUNDS, "seconds": SECONDS, "batch": BATCH, "clients": CLIENTS}
    rates = {"sendgrid_batches": [], "postmark_single": [], "floor_no_work": []}
    with scratch_database():
        emails = setup()
        signer = SendGridSigner()
        env = {
            "ANYMAIL_WEBHOOK_SECRET": SECRET,
            "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": signer.public_key,
        }
        # More requests than a run can post: each run takes fresh ones (every event new).
        capacity = SECONDS * 5000 // BATCH
        with gunicorn(**env) as port:
            blast(port, sendgrid_requests(emails, signer, 20), 30)  # warm-up
            for index in range(ROUNDS):
                variants = [
                    ("sendgrid_batches", lambda: sendgrid_requests(emails, signer, capacity)),
                    ("postmark_single", lambda i=index: postmark_requests(emails, 5000, i * 5000)),
                    ("floor_no_work", lambda: floor_requests(SECONDS * 5000)),
                ]
                for name, make in variants[index % 3 :] + variants[: index % 3]:
                    rate, _ = blast(port, make(), SECONDS)
                    rates[name].append(rate)
                    print(f"  run {index + 1} {name}: {rate:,.0f} events/s")
        results["events_stored"] = EmailEvent.objects.count()
        counts = EmailLog.objects.values_list("delivery_status").annotate(Count("id"))
        results["emails_by_delivery_status"] = dict(counts.order_by())
    for name, values in rates.items():
        results[name] = {
            "events_per_s_min": round(min(values)),
            "events_per_s_median": round(statistics.median(values)),
            "per_run": [round(value) for value in values],
        }
    print_table(
        f"Delivery events through gunicorn (2 workers), {CLIENTS} clients, {ROUNDS} runs",
        ["format", "events (floor: requests)/s min", "median"],
        [[n, v["events_per_s_min"], v["events_per_s_median"]] for n, v in results.items()
         if isinstance(v, dict) and "per_run" in v],
    )  # fmt: skip
    write_results("email_events", results)
