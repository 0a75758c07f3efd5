"""Sending invoices makes the platform email someone else: only verified accounts may, and no
more than their plan's daily quota (free 50, pro 1,000, business 10,000); refusals are audited."""

import datetime

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.billing.models import Invoice, Subscription
from invoicegen.billing.tests.factories import SubscriptionFactory, finalized_invoice

pytestmark = pytest.mark.django_db

CLIENT_EMAIL = "invoice_notification_client"


def send(api, invoice):
    return api.post(f"/api/invoices/{invoice.pk}/send/")


def already_sent_today(user, count: int, *, days_ago: int = 0) -> None:
    """Emails to clients queued earlier for the account (today, or `days_ago` days back)."""
    moment = timezone.now() - datetime.timedelta(days=days_ago)
    EmailLog.objects.bulk_create(
        EmailLog(
            to_email=f"client{n}@example.com",
            subject="Invoice",
            template_name=CLIENT_EMAIL,
            message_id=f"<earlier-{user.pk}-{days_ago}-{n}@invoicegen.local>",
            status=EmailLog.Status.SENT,
            on_behalf_of=user,
            created_at=moment,
        )
        for n in range(count)
    )


def client_emails(user) -> int:
    return EmailLog.objects.filter(on_behalf_of=user, template_name=CLIENT_EMAIL).count()


def test_an_unverified_account_cannot_email_its_client_and_the_refusal_is_audited(api, user):
    invoice = finalized_invoice(user=user)
    user.email_verified = False
    user.save(update_fields=["email_verified"])
    mark = last_entry_id()

    response = send(api, invoice)

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Verify your email address before sending invoices by email."
    }
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.FINALIZED
    assert client_emails(user) == 0
    assert actions_after(mark) == ["invoice.send_refused"]


def test_the_fiftieth_email_of_a_free_account_goes_and_the_fifty_first_is_refused(api, user):
    invoice = finalized_invoice(user=user)
    already_sent_today(user, 49)
    already_sent_today(user, 50, days_ago=1)  # yesterday's do not count

    assert send(api, invoice).status_code == 202
    mark = last_entry_id()
    response = send(api, invoice)

    assert response.status_code == 429
    body = response.json()
    tomorrow = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow += datetime.timedelta(days=1)
    assert body["limit"] == 50
    assert parse_datetime(body["resets_at"]) == tomorrow
    assert "at most 50 emails to clients a day" in body["detail"]
    seconds_left = (tomorrow - timezone.now()).total_seconds()
    assert abs(int(response["Retry-After"]) - seconds_left) <= 2
    assert client_emails(user) == 50 + 50
    refusal = only_entry(mark, "invoice.send_refused")
    assert actions_after(mark) == ["invoice.send_refused"]
    assert "at most 50" in refusal.metadata["reason"]
    assert refusal.metadata["to"] == invoice.client_email  # no other address was asked for
    assert refusal.success is False


@pytest.mark.parametrize(
    "plan, status, quota",
    [
        (Subscription.Plan.PRO, Subscription.Status.ACTIVE, 1_000),
        (Subscription.Plan.BUSINESS, Subscription.Status.CANCELLED, 10_000),  # paid till its end
        (Subscription.Plan.BUSINESS, Subscription.Status.EXPIRED, 50),
    ],
)
def test_the_quota_is_the_plan_of_the_subscription_still_in_its_period(
    api, user, plan, status, quota
):
    SubscriptionFactory(user=user, plan=plan, status=status)
    invoice = finalized_invoice(user=user)
    already_sent_today(user, quota - 1)

    assert send(api, invoice).status_code == 202
    response = send(api, invoice)
    assert response.status_code == 429
    assert response.json()["limit"] == quota


def test_a_cancelled_plan_whose_period_ended_is_the_free_plan_before_expiry_runs(api, user):
    period_start = timezone.now() - datetime.timedelta(days=40)
    SubscriptionFactory(
        user=user,
        plan=Subscription.Plan.BUSINESS,
        status=Subscription.Status.CANCELLED,
        current_period_start=period_start,
        current_period_end=period_start + datetime.timedelta(days=30),
    )
    invoice = finalized_invoice(user=user)
    already_sent_today(user, 50)

    response = send(api, invoice)

    assert response.status_code == 429
    assert response.json()["limit"] == 50
