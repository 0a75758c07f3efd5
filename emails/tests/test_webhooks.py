"""Delivery events posted to the running app in each provider's documented format and with its
authentication: applied once each, never backwards, forged ones refused and audited."""

import os
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.test import override_settings

from audit.models import AuditLog
from emails import delivery
from emails.models import DeliveryStatus, EmailEvent, EmailSuppression
from emails.tests import webhook_payloads as hooks
from emails.tests.factories import EmailLogFactory
from emails.tests.helpers import reload, unreachable_redis_caches

pytestmark = pytest.mark.django_db(transaction=True)  # the app runs in its own thread

TO = "ap@globex.test"


@pytest.fixture
def signer():
    return hooks.SendGridSigner()


@pytest.fixture(autouse=True)
def provider_settings(settings, signer):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": [":".join(hooks.WEBHOOK_USER)],
        "MAILGUN_WEBHOOK_SIGNING_KEY": hooks.MAILGUN_SIGNING_KEY,
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": signer.public_key,
    }


def sent(provider_message_id: str, to: str = TO):
    return EmailLogFactory(status="sent", provider_message_id=provider_message_id, to_email=to)


def refusals() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action="email.webhook_refused"))


def test_postmark_delivery_then_hard_bounce_moves_the_row_and_suppresses(live_server):
    email = sent("pm-1")
    delivered = hooks.post_json(live_server, "postmark", hooks.postmark("Delivery", "pm-1", TO))
    assert delivered.status_code == 200
    assert reload(email).delivery_status == DeliveryStatus.DELIVERED

    bounce = hooks.post_json(live_server, "postmark", hooks.postmark("Bounce", "pm-1", TO))
    assert bounce.status_code == 200
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED
    assert [e.event_type for e in EmailEvent.objects.order_by("id")] == ["delivered", "bounced"]
    assert EmailEvent.objects.filter(email=email).count() == 2
    suppression = EmailSuppression.objects.get()
    assert (suppression.address, suppression.reason, suppression.source) == (
        TO,
        "bounced",
        "postmark",
    )


@pytest.mark.parametrize("message_id", ["", "pm-unknown"])
def test_an_event_naming_no_email_of_ours_is_kept_and_moves_none(live_server, message_id):
    """Emails sent over SMTP have no provider's message id: an event with none (or one that
    names no email) must not be taken for one of theirs."""
    smtp_sent = [sent(""), sent("")]

    bounce = hooks.post_json(live_server, "postmark", hooks.postmark("Bounce", message_id, TO))

    assert bounce.status_code == 200
    assert [reload(email).delivery_status for email in smtp_sent] == ["", ""]
    assert EmailEvent.objects.get().email_id is None
    assert EmailSuppression.objects.get().address == TO


def test_the_same_event_posted_50_times_is_applied_once(live_server):
    email = sent("pm-2")
    bounce = hooks.postmark("Bounce", "pm-2", TO, ID=77)
    answers = {hooks.post_json(live_server, "postmark", bounce).status_code for _ in range(50)}
    assert answers == {200}
    assert EmailEvent.objects.count() == 1
    assert EmailSuppression.objects.count() == 1
    assert AuditLog.objects.filter(action="email.address_suppressed").count() == 1
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED
    # A Postmark delivery carries no id: its digest makes the repeat the same event.
    delivered = hooks.postmark("Delivery", "pm-2", TO)
    for _ in range(3):
        hooks.post_json(live_server, "postmark", delivered)
    assert EmailEvent.objects.count() == 2


def test_a_late_delivered_never_undoes_a_bounce_nor_a_deferred_a_delivery(live_server, signer):
    bounced, delivered = sent("pm-3"), sent("pm-4", "ok@globex.test")
    hooks.post_json(live_server, "postmark", hooks.postmark("Bounce", "pm-3", TO))
    hooks.post_json(live_server, "postmark", hooks.postmark("Delivery", "pm-3", TO))
    assert reload(bounced).delivery_status == DeliveryStatus.BOUNCED

    events = [
        hooks.sendgrid("delivered", "sg-4", "ok@globex.test"),
        hooks.sendgrid("deferred", "sg-4", "ok@globex.test"),
    ]
    delivered.provider_message_id = "sg-4"
    delivered.save()
    assert hooks.post_sendgrid(live_server, signer, events).status_code == 200
    assert reload(delivered).delivery_status == DeliveryStatus.DELIVERED
    assert EmailEvent.objects.filter(email=delivered).count() == 2


def test_sendgrid_signed_batch_soft_bounce_and_complaint(live_server, signer):
    soft, complained = sent("sg-1", "soft@globex.test"), sent("sg-2")
    events = [
        hooks.sendgrid("bounce", "sg-1", "soft@globex.test", type="blocked", reason="421 later"),
        hooks.sendgrid("spamreport", "sg-2", TO),
        hooks.sendgrid("open", "sg-2", TO),  # engagement: not a delivery outcome
    ]
    assert hooks.post_sendgrid(live_server, signer, events).status_code == 200
    assert reload(soft).delivery_status == DeliveryStatus.SOFT_BOUNCED
    assert reload(complained).delivery_status == DeliveryStatus.COMPLAINED
    assert list(EmailSuppression.objects.values_list("address", "reason")) == [(TO, "complained")]


def test_sendgrid_batch_with_a_forged_signature_is_refused_and_audited(live_server, signer):
    email = sent("sg-3")
    answer = hooks.post_sendgrid(
        live_server, hooks.SendGridSigner(), [hooks.sendgrid("bounce", "sg-3", TO)]
    )  # signed with another key
    assert answer.status_code == 400
    assert not EmailEvent.objects.exists()
    assert reload(email).delivery_status == DeliveryStatus.UNKNOWN
    [refusal] = refusals()
    assert refusal.metadata["provider"] == "sendgrid"
    assert refusal.success is False


def test_mailgun_signed_complaint_and_permanent_failure(live_server):
    complained, failed = sent("<mg-1@mg.example.com>"), sent("<mg-2@mg.example.com>", "x@g.test")
    complaint = hooks.mailgun("complained", "<mg-1@mg.example.com>", TO)
    failure = hooks.mailgun(
        "failed",
        "<mg-2@mg.example.com>",
        "x@g.test",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"description": "mailbox unavailable", "code": 550}},
    )
    for payload in (complaint, failure):
        assert hooks.post_json(live_server, "mailgun", payload).status_code == 200
    assert reload(complained).delivery_status == DeliveryStatus.COMPLAINED
    assert reload(failed).delivery_status == DeliveryStatus.BOUNCED
    assert EmailEvent.objects.get(email=failed).description == "mailbox unavailable"


def test_mailgun_event_signed_with_another_key_is_refused_and_audited(live_server):
    email = sent("<mg-3@mg.example.com>")
    forged = hooks.mailgun("failed", "<mg-3@mg.example.com>", TO, key="not-the-key")
    assert hooks.post_json(live_server, "mailgun", forged).status_code == 400
    assert reload(email).delivery_status == DeliveryStatus.UNKNOWN
    assert not EmailSuppression.objects.exists()
    assert len(refusals()) == 1


def test_brevo_hard_bounce_soft_bounce_and_unsubscribe(live_server):
    hard, soft = sent("<b1@brevo>"), sent("<b2@brevo>", "s@g.test")
    gone = sent("<b3@brevo>", "u@g.test")
    for payload in (
        hooks.brevo("hard_bounce", "<b1@brevo>", TO),
        hooks.brevo("soft_bounce", "<b2@brevo>", "s@g.test"),
        hooks.brevo("unsubscribe", "<b3@brevo>", "u@g.test"),
    ):
        assert hooks.post_json(live_server, "brevo", payload).status_code == 200
    assert reload(hard).delivery_status == DeliveryStatus.BOUNCED
    assert reload(soft).delivery_status == DeliveryStatus.SOFT_BOUNCED
    assert reload(gone).delivery_status == DeliveryStatus.UNSUBSCRIBED
    assert dict(EmailSuppression.objects.values_list("address", "reason")) == {
        TO: "bounced",
        "u@g.test": "unsubscribed",
    }


def test_wrong_basic_auth_is_refused_and_audited(live_server):
    email = sent("<b4@brevo>")
    payload = hooks.brevo("hard_bounce", "<b4@brevo>", TO)
    answer = hooks.post_json(live_server, "brevo", payload, auth=("esp", "guess"))
    assert answer.status_code == 400
    assert reload(email).delivery_status == DeliveryStatus.UNKNOWN
    assert refusals()[0].metadata["provider"] == "brevo"


def test_amazon_ses_bounces_through_sns(live_server):
    hard, soft = sent("ses-1"), sent("ses-2", "s@g.test")
    for message_id, to, kind in (("ses-1", TO, "Permanent"), ("ses-2", "s@g.test", "Transient")):
        body, headers = hooks.sns(hooks.ses_bounce(message_id, to, bounce_type=kind))
        answer = hooks.post_json(live_server, "amazon_ses", body, headers=headers)
        assert answer.status_code == 200
    assert reload(hard).delivery_status == DeliveryStatus.BOUNCED
    assert reload(soft).delivery_status == DeliveryStatus.SOFT_BOUNCED
    assert list(EmailSuppression.objects.values_list("address", flat=True)) == [TO]


def test_amazon_ses_without_credentials_gets_the_challenge_and_a_forged_one_is_refused(
    live_server,
):
    body, headers = hooks.sns(hooks.ses_bounce("ses-3", TO))
    challenge = hooks.post_json(live_server, "amazon_ses", body, auth=None, headers=headers)
    assert challenge.status_code == 401  # SNS then retries with its credentials
    forged = hooks.post_json(live_server, "amazon_ses", body, auth=("x", "y"), headers=headers)
    assert forged.status_code == 400
    assert len(refusals()) == 1
    assert not EmailEvent.objects.exists()


def test_unknown_provider_and_malformed_body(live_server):
    assert hooks.post_json(live_server, "nobody", {}).status_code == 404
    answer = hooks.requests.post(
        hooks.url(live_server, "postmark"), data=b"{not json", auth=hooks.WEBHOOK_USER, timeout=5
    )
    assert answer.status_code == 400


def test_same_event_from_many_processes_at_once_is_one_change(race):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent inserts need PostgreSQL (SQLite serializes every writer)")
    email = sent("race-1")
    bounce = delivery.DeliveryEvent(
        provider="postmark", event_id="99", status=DeliveryStatus.BOUNCED, recipient=TO,
        message_id="race-1",
    )  # fmt: skip
    stored = race(lambda: delivery.record_delivery_event(bounce), 20)
    assert sum(1 for row in stored if row is not None) == 1
    assert EmailEvent.objects.count() == 1
    assert EmailSuppression.objects.count() == 1
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED


def test_events_racing_out_of_order_end_at_the_highest_rank(race):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent updates need PostgreSQL (SQLite serializes every writer)")
    email = sent("race-2")
    statuses = [DeliveryStatus.DEFERRED, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED] * 5
    events = [
        delivery.DeliveryEvent(
            provider="sendgrid", event_id=str(n), status=status, recipient=TO, message_id="race-2"
        )
        for n, status in enumerate(statuses)
    ]
    race(lambda: delivery.record_delivery_event(events.pop()), len(statuses))
    assert EmailEvent.objects.count() == len(statuses)
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("postmark", []),
        ("brevo", []),
        ("amazon_ses", []),
    ],
)
def test_a_body_in_no_provider_format_answers_400_and_records_nothing(live_server, provider, body):
    answer = hooks.post_json(live_server, provider, body)

    assert answer.status_code == 400
    assert not EmailEvent.objects.exists()


def test_without_a_webhook_secret_no_webhook_is_served(live_server, settings):
    """anymail's views let unsigned posts through when no basic auth is set: a forged bounce
    would put any address on the suppression list."""
    settings.ANYMAIL = {}
    email = sent("pm-9")

    answer = hooks.post_json(live_server, "postmark", hooks.postmark("Bounce", "pm-9", TO))

    assert answer.status_code == 404
    assert reload(email).delivery_status == DeliveryStatus.UNKNOWN
    assert not EmailSuppression.objects.exists()


def test_a_provider_whose_keys_are_not_set_answers_404(live_server, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": [":".join(hooks.WEBHOOK_USER)]}  # no Mailgun key

    assert hooks.post_json(live_server, "mailgun", {"signature": {}}).status_code == 404


def test_lone_surrogates_in_an_event_are_stored_replaced(live_server):
    email = sent("pm-10", to="odd@g.test")
    payload = hooks.postmark("Bounce", "pm-10", "odd@g.test", Description="mailbox \ud800 gone")

    answer = hooks.post_json(live_server, "postmark", payload)

    assert answer.status_code == 200
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED
    assert "\ud800" not in EmailEvent.objects.get().description


def test_a_flood_of_forged_posts_is_audited_once_a_minute(live_server):
    payload = hooks.brevo("hard_bounce", "<b5@brevo>", TO)
    for _ in range(5):
        answer = hooks.post_json(live_server, "brevo", payload, auth=("esp", "guess"))
        assert answer.status_code == 400

    assert len(refusals()) == 1


FLOOD, OTHER = "198.51.100.7", "203.0.113.9"


@pytest.fixture
def refused_rate(settings):
    """Three refused posts a minute per client address, told apart by the proxy's header."""
    settings.WEBHOOK_REFUSED_THROTTLE_RATE = "3/min"
    settings.TRUSTED_PROXY_COUNT = 1


def post_from(live_server, ip: str, payload, **kwargs):
    return hooks.post_json(live_server, "brevo", payload, headers={"X-Forwarded-For": ip}, **kwargs)


def test_an_address_past_its_refused_posts_is_answered_429_unchecked_until_the_window_ends(
    live_server, refused_rate
):
    email = sent("<b6@brevo>")
    payload = hooks.brevo("hard_bounce", "<b6@brevo>", TO)
    forged = [post_from(live_server, FLOOD, payload, auth=("esp", "guess")) for _ in range(3)]
    assert [answer.status_code for answer in forged] == [400, 400, 400]

    throttled = post_from(live_server, FLOOD, payload, auth=("esp", "guess"))
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # Unchecked, a valid post from that address waits too: the provider posts it again later.
    assert post_from(live_server, FLOOD, payload).status_code == 429
    assert reload(email).delivery_status == DeliveryStatus.UNKNOWN

    assert post_from(live_server, OTHER, payload).status_code == 200
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED
    assert post_from(live_server, OTHER, payload, auth=("esp", "guess")).status_code == 400


def test_authenticated_posts_are_never_counted(live_server, refused_rate):
    emails = [sent(f"<b{n}@burst>", to=f"r{n}@g.test") for n in range(10)]
    for email in emails:
        payload = hooks.brevo("delivered", email.provider_message_id, email.to_email)
        assert post_from(live_server, FLOOD, payload).status_code == 200

    payload = hooks.brevo("hard_bounce", "<b0@burst>", "r0@g.test")
    forged = [post_from(live_server, FLOOD, payload, auth=("esp", "guess")) for _ in range(3)]
    assert [answer.status_code for answer in forged] == [400, 400, 400]
    assert all(reload(email).delivery_status == DeliveryStatus.DELIVERED for email in emails)


def test_a_refused_post_while_the_cache_is_down_is_refused_and_audited(live_server):
    """Neither the throttle's counter nor the once-a-minute audit filter may turn a refusal
    into a 500 when Redis is unreachable: the post is refused, and recorded."""
    payload = hooks.brevo("hard_bounce", "<b8@brevo>", TO)
    with override_settings(CACHES=unreachable_redis_caches()):
        answers = [
            post_from(live_server, FLOOD, payload, auth=("esp", "guess")).status_code
            for _ in range(2)
        ]
    assert answers == [400, 400]
    assert len(refusals()) == 2


@pytest.mark.parametrize("rate", ["30", "0/min", "30/fortnight", "many/min"])
def test_a_rate_that_is_not_one_stops_the_start(rate):
    env = {**os.environ, "WEBHOOK_REFUSED_THROTTLE_RATE": rate}
    env["DJANGO_SETTINGS_MODULE"] = "invoicegen.settings"
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert f"WEBHOOK_REFUSED_THROTTLE_RATE={rate!r} is not a rate" in run.stderr


def test_the_throttle_ends_with_its_window(live_server, settings, refused_rate):
    settings.WEBHOOK_REFUSED_THROTTLE_RATE = "1/s"
    email = sent("<b7@brevo>")
    payload = hooks.brevo("hard_bounce", "<b7@brevo>", TO)
    time.sleep(1 - time.time() % 1)  # at the start of a window
    assert post_from(live_server, FLOOD, payload, auth=("esp", "guess")).status_code == 400
    throttled = post_from(live_server, FLOOD, payload)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")

    time.sleep(1)
    assert post_from(live_server, FLOOD, payload).status_code == 200
    assert reload(email).delivery_status == DeliveryStatus.BOUNCED
