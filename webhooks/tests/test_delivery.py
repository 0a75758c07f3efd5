"""Deliveries to real receivers on loopback: signatures checked with the standardwebhooks
library, answers that are not a 2xx, redirects, a server that trickles, TLS."""

import datetime
import gc
import json
import socket
import ssl
import time
import warnings
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit.models import AuditLog
from emails.tests.helpers import TricklingProviderAPI
from invoicegen.billing import services as billing
from invoicegen.billing.models import Payment
from invoicegen.billing.tests.factories import finalized_invoice
from notifications.models import Notification
from webhooks import receiver as receiver_module
from webhooks import sending, services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db


def pay(invoice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        billing.record_payment(invoice, amount=invoice.total, method=Payment.Method.CARD)


def test_a_paid_invoice_reaches_the_endpoint_signed_as_standard_webhooks_say(
    user, endpoint, receiver, django_capture_on_commit_callbacks
):
    invoice = finalized_invoice(user=user)  # before the endpoint's events: one paid, one payment
    WebhookDelivery.objects.all().delete()
    pay(invoice, django_capture_on_commit_callbacks)

    assert [r.payload["type"] for r in receiver.received] == ["payment.received", "invoice.paid"]
    assert all(r.verified for r in receiver.received)
    paid = receiver.received[1]
    assert Webhook(receiver.secret).verify(paid.body, paid.headers)["data"]["status"] == "paid"
    assert paid.payload["data"]["number"] == invoice.number
    assert paid.payload["data"]["balance_due"] == "0.00"
    assert paid.headers["content-type"] == "application/json"
    assert abs(int(paid.headers["webhook-timestamp"]) - time.time()) < 5
    delivery = WebhookDelivery.objects.get(event_type="invoice.paid")
    assert paid.webhook_id == delivery.message_id and delivery.message_id.startswith("msg_")
    assert delivery.status == WebhookDelivery.Status.SENT and delivery.attempts == 1
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code == 204 and attempt.error == ""


def test_a_failed_attempt_is_retried_on_the_schedule_with_the_same_id_and_body(
    user, endpoint_for, settings, django_capture_on_commit_callbacks
):
    answers = iter([500, 503, 200])
    with Receiver(answer=lambda received: next(answers)) as receiver:
        _, receiver.secret = endpoint_for(receiver.url, ["invoice.finalized"])
        with django_capture_on_commit_callbacks(execute=True):
            finalized_invoice(user=user)
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == WebhookDelivery.Status.QUEUED
        due_in = (delivery.next_attempt_at - timezone.now()).total_seconds()
        assert 5 * 0.75 - 1 < due_in <= 5 * 1.25  # the schedule's first step, 5 s, jittered
        for _ in range(2):
            WebhookDelivery.objects.update(next_attempt_at=timezone.now())
            services.deliver_webhook(delivery.pk)
        delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SENT and delivery.attempts == 3
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 503, 200]
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.verified for r in receiver.received)


def test_the_retry_schedule_is_the_standard_webhooks_one_with_jitter():
    steps = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000]
    for attempts, step in enumerate(steps, start=1):
        assert step * 0.75 <= services.outbox.retry_delay(attempts) <= step * 1.25


def test_the_last_attempt_fails_the_delivery(user, endpoint_for, settings):
    with Receiver(answer=lambda received: 400) as receiver:
        endpoint_for(receiver.url)
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        WebhookDelivery.objects.update(attempts=settings.WEBHOOK_MAX_ATTEMPTS - 1)
        assert services.deliver_webhook(delivery.pk).status == WebhookDelivery.Status.FAILED
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_error == "EndpointRefused: HTTP 400"


@pytest.mark.parametrize("status, sent", [(299, True), (300, False)])
def test_only_a_2xx_is_a_success_and_each_attempt_logs_how_long_it_took(
    user, endpoint_for, status, sent
):
    def answer(received):
        time.sleep(0.2)
        return status

    with Receiver(answer=answer) as receiver:
        endpoint_for(receiver.url)
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status == WebhookDelivery.Status.SENT) is sent
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code == status and 200 <= attempt.duration_ms < 2000


def test_an_endpoint_that_takes_no_connection_starts_a_run_of_failures(user, endpoint_for):
    with socket.socket() as probe:  # a port no one listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint, _ = endpoint_for(f"http://127.0.0.1:{port}/in")
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})

    services.deliver_webhook(delivery.pk)

    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error.startswith("ConnectionError")


def deliver_under_a_second(url, user, endpoint_for, settings) -> tuple[WebhookDelivery, float]:
    """An event sent to `url` with WEBHOOK_TIMEOUT=1: its delivery, and the seconds it took."""
    endpoint_for(url)
    settings.WEBHOOK_TIMEOUT = 1
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
    started = time.monotonic()
    services.deliver_webhook(delivery.pk)
    return delivery, time.monotonic() - started


def test_a_connection_never_taken_is_given_up_at_the_deadline(user, endpoint_for, settings):
    with socket.socket() as full, socket.socket() as waiting:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # one connection waits to be accepted, never is; the next gets no answer
        waiting.connect(full.getsockname())
        url = f"http://127.0.0.1:{full.getsockname()[1]}/in"
        delivery, elapsed = deliver_under_a_second(url, user, endpoint_for, settings)
    assert elapsed < 5  # not the system's own minutes of retrying
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error.startswith("ConnectionError")


@contextmanager
def no_socket_left_open():
    """Fails the test (pytest reports what a finaliser raised) if a socket opened inside is
    left for the garbage collector to close. What earlier tests left is collected first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield
        gc.collect()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_delivery_leaves_no_socket_open_whatever_the_outcome(user, endpoint_for):
    """A worker sends for days: a socket left for the collector is a descriptor held meanwhile."""
    with socket.socket() as probe:  # a port no one listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with Receiver() as receiver:
        for url in (receiver.url, f"http://127.0.0.1:{closed}/in"):
            endpoint_for(url)
        with no_socket_left_open():
            for delivery in services.send_event(user, "invoice.paid", {"id": 1}):
                services.deliver_webhook(delivery.pk)
    assert len(receiver.received) == 1


def test_the_answer_kept_is_its_first_kilobyte(user, endpoint_for):
    with Receiver() as receiver:
        endpoint_for(receiver.url)
        original = receiver._handler()

        class LongAnswer(original):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                body = b"x" * 5000
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        receiver._server.RequestHandlerClass = LongAnswer
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(delivery.pk)
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code == 200 and attempt.response_body == "x" * 1024


def test_a_redirect_is_not_followed(user, endpoint_for):
    with Receiver() as receiver:
        endpoint_for(receiver.url)
        original = receiver._handler()
        followed = []

        class Redirecting(original):
            def do_POST(self):
                if self.path != "/webhooks":
                    followed.append(self.path)
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(307)
                self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("content-length", "0")
                self.end_headers()

        receiver._server.RequestHandlerClass = Redirecting
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.QUEUED  # a failure, retried later
    assert [a.status_code for a in delivery.attempt_log.all()] == [307]
    assert followed == []


@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_trickling_endpoint_is_cut_at_the_deadline(user, endpoint_for, settings, stage):
    server = TricklingProviderAPI(trickle=stage, interval=0.3)
    try:
        url = f"http://127.0.0.1:{server.port}/"
        _, elapsed = deliver_under_a_second(url, user, endpoint_for, settings)
    finally:
        server.stop()
    [attempt] = WebhookDelivery.objects.get().attempt_log.all()
    assert attempt.error == "DeadlineExceeded: no answer within 1 s"
    assert elapsed < 2.5


def test_a_private_address_is_refused_at_send_time_and_never_contacted(
    user, endpoint_for, settings
):
    with Receiver() as receiver:
        endpoint_for(receiver.url.replace("127.0.0.1", "localhost"))
        settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False  # since the URL was saved
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        assert services.deliver_webhook(delivery.pk).status == WebhookDelivery.Status.FAILED
        assert receiver.received == []
    delivery.refresh_from_db()
    assert delivery.last_error == (
        "AddressRefused: localhost resolves to a private or reserved address"
    )


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one(
    user, endpoint, receiver
):
    old = receiver.secret
    new = services.rotate_secret(endpoint, actor=user)
    for _ in range(2):
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(delivery.pk)
        WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now())
    during, after = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(old).verify(after.body, after.headers)


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_owner_told_once(
    user, endpoint_for, django_capture_on_commit_callbacks
):
    with Receiver(answer=lambda received: 500) as receiver:
        endpoint, _ = endpoint_for(receiver.url)
        [first] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(first.pk)
        endpoint.refresh_from_db()
        assert endpoint.failing_since is not None and endpoint.enabled
        four_days = timezone.now() - datetime.timedelta(days=4, hours=23)
        WebhookEndpoint.objects.update(failing_since=four_days)
        [second] = services.send_event(user, "invoice.paid", {"id": 2})
        services.deliver_webhook(second.pk)
        assert WebhookEndpoint.objects.get().enabled
        WebhookEndpoint.objects.update(failing_since=four_days - datetime.timedelta(hours=2))
        queued = [services.send_event(user, "invoice.paid", {"id": n})[0] for n in (3, 4)]
        with django_capture_on_commit_callbacks(execute=True):
            services.deliver_webhook(queued[0].pk)
            services.deliver_webhook(queued[1].pk)  # never sent: its endpoint is disabled
        assert len(receiver.received) == 3
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_reason == "Every attempt failed for 5 days."
    assert WebhookDelivery.objects.get(pk=queued[1].pk).last_error.startswith("EndpointDisabled")
    [told] = Notification.objects.filter(user=user, type=services.DISABLED_NOTIFICATION)
    assert told.params["url"] == receiver.url.replace("/webhooks", "/…")  # no path: tokens
    assert AuditLog.objects.filter(action="webhook_endpoint.disabled").count() == 1
    assert services.send_event(user, "invoice.paid", {"id": 5}) == []


def test_a_failure_at_the_very_end_of_the_days_allowed_disables_the_endpoint(
    user, endpoint_for, settings, monkeypatch
):
    with Receiver(answer=lambda received: 500) as receiver:
        endpoint_for(receiver.url)
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        since = timezone.now() - datetime.timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
        WebhookEndpoint.objects.update(failing_since=since)
        instant = since + datetime.timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
        monkeypatch.setattr(services.timezone, "now", lambda: instant)
        services.deliver_webhook(delivery.pk)
    assert not WebhookEndpoint.objects.get().enabled


def test_a_success_ends_the_run_of_failures(user, endpoint, receiver):
    WebhookEndpoint.objects.update(failing_since=timezone.now() - datetime.timedelta(days=4))
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
    services.deliver_webhook(delivery.pk)
    assert WebhookEndpoint.objects.get().failing_since is None


def test_a_replay_is_a_new_delivery_of_the_same_message(user, endpoint, receiver):
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
    services.deliver_webhook(delivery.pk)
    replay = services.replay_delivery(delivery, actor=user)
    services.deliver_webhook(replay.pk)
    first, again = receiver.received
    assert again.webhook_id == first.webhook_id and again.body == first.body and again.duplicate
    assert again.verified
    assert replay.replay_of == delivery and replay.status == WebhookDelivery.Status.QUEUED
    assert WebhookDelivery.objects.get(pk=replay.pk).status == WebhookDelivery.Status.SENT


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_an_https_endpoint_is_reached_over_verified_tls(
    user, endpoint_for, localhost_certificate, monkeypatch
):
    cert, key = localhost_certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Receiver() as receiver:
        receiver._server.socket = context.wrap_socket(receiver._server.socket, server_side=True)
        url = receiver.url.replace("http://127.0.0.1", "https://localhost")
        _, receiver.secret = endpoint_for(url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        sending._tls.cache_clear()
        try:
            [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
            with no_socket_left_open():  # the TLS socket too, closed with the connection
                services.deliver_webhook(delivery.pk)
        finally:
            sending._tls.cache_clear()
    [received] = receiver.received
    assert received.verified
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.SENT


def test_a_rolled_back_change_sends_nothing(
    user, endpoint, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.send_event(user, "invoice.paid", {"id": 1})
            raise RuntimeError
        services.send_event(user, "invoice.paid", {"id": 2})
    assert len(callbacks) == 1
    assert [r.payload["data"] for r in receiver.received] == [{"id": 2}]


def test_a_body_that_is_not_json_serializable_raises_where_it_is_made(user, endpoint):
    with pytest.raises(TypeError):
        services.send_event(user, "invoice.paid", {"when": object()})


def test_the_receiver_logs_payloads_as_sent(user, endpoint, receiver):
    [delivery] = services.send_event(user, "invoice.paid", {"name": "Zoë ✓"})
    services.deliver_webhook(delivery.pk)
    assert receiver.received[0].payload["data"] == {"name": "Zoë ✓"}
    assert json.loads(WebhookDelivery.objects.get().payload)["data"]["name"] == "Zoë ✓"


def test_a_test_event_reaches_the_endpoint_signed(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.send_test_event(endpoint)

    [received] = receiver.received
    assert received.verified and received.webhook_id == delivery.message_id
    assert received.payload["type"] == "webhook.test"
    assert received.payload["data"]["endpoint_id"] == endpoint.pk


def test_a_long_running_receiver_keeps_a_bounded_memory(loopback, monkeypatch):
    """As `python -m webhooks.receiver` runs: it forgets what it printed, and remembers the
    newest SEEN_LIMIT webhook-ids to tell duplicates."""
    monkeypatch.setattr(receiver_module, "SEEN_LIMIT", 2)
    heard = []
    with Receiver(keep=False, on_receive=heard.append) as receiver:
        for webhook_id in ["msg_1", "msg_2", "msg_2", "msg_3", "msg_1"]:
            sending.post(receiver.url, body=b"{}", headers={"webhook-id": webhook_id})

    assert receiver.received == []
    assert [(r.webhook_id, r.duplicate) for r in heard] == [
        ("msg_1", False), ("msg_2", False), ("msg_2", True), ("msg_3", False), ("msg_1", False)
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_an_attempt_is_logged_in_one_statement_and_no_callers_commit_is_hurried(
    user, endpoint, django_assert_num_queries
):
    if connection.vendor != "postgresql":
        pytest.skip("the asynchronous commit is PostgreSQL's")
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})  # sent: one attempt

    with django_assert_num_queries(1):  # as a worker logs it, in autocommit
        services._log_attempt(WebhookAttempt(delivery=delivery), endpoint, succeeded=True)
    with transaction.atomic(), connection.cursor() as cursor:
        services._log_attempt(WebhookAttempt(delivery=delivery), endpoint, succeeded=True)
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)  # the caller's commit waits for the disk

    assert delivery.attempt_log.count() == 3


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_log_and_the_end_of_failures_are_one_statement(
    user, endpoint_for
):
    """As a worker runs it (autocommit): on PostgreSQL one asynchronous-commit statement."""
    answers = iter([502, 204])
    with Receiver(answer=lambda received: next(answers)) as receiver:
        endpoint_for(receiver.url)
        [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
        services.deliver_webhook(delivery.pk)
        assert WebhookEndpoint.objects.get().failing_since is not None
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        services.deliver_webhook(delivery.pk)
    assert WebhookEndpoint.objects.get().failing_since is None
    attempts = delivery.attempt_log.values_list("status_code", "error", "delivery_id")
    assert list(attempts) == [(502, "", delivery.pk), (204, "", delivery.pk)]
    assert all(a.attempted_at and a.duration_ms >= 0 for a in delivery.attempt_log.all())
