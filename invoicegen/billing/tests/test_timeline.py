"""GET /api/invoices/{id}/timeline/: what happened to an invoice and its emails, oldest first,
in cursor pages; and the invoice's `delivery_status` with its list filter."""

import base64
import datetime

import pytest
from django.test import Client
from django.utils import timezone

from downloads import services as downloads
from emails import delivery
from emails.models import DeliveryStatus, EmailLog
from invoicegen.billing import services
from invoicegen.billing.tests.factories import InvoiceFactory, invoice_in_status

pytestmark = pytest.mark.django_db

CLIENT = "ap@globex.test"


def timeline_url(invoice) -> str:
    return f"/api/invoices/{invoice.pk}/timeline/"


def client_emails(invoice):
    return EmailLog.objects.filter(
        resource_type="invoice", resource_id=str(invoice.pk), on_behalf_of__isnull=False
    )


def provider_says(invoice, status, *, event_id="1", description="", when=None, email=None):
    """The invoice's (latest) client email's provider reports `status` for it."""
    email = email or client_emails(invoice).first()
    EmailLog.objects.filter(pk=email.pk).update(provider_message_id=f"pm-{email.pk}")
    delivery.record_delivery_events(
        [
            delivery.DeliveryEvent(
                provider="postmark",
                event_id=event_id,
                status=status,
                recipient=email.to_email,
                description=description,
                occurred_at=when or timezone.now(),
                message_id=f"pm-{email.pk}",
            )
        ]
    )


def types(api, invoice, **query) -> list[str]:
    return [item["type"] for item in api.get(timeline_url(invoice), query).json()["results"]]


@pytest.mark.django_db(transaction=True)
def test_the_timeline_tells_the_invoices_story_oldest_first(api, user, settings):
    """Each step its own request and transaction, as in production: sent, delivered (the
    provider's event), viewed and downloaded by the client, paid."""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": []}
    invoice = api.post(
        "/api/invoices/",
        {"client_name": "Globex", "client_email": CLIENT, "due_date": "2030-01-31",
         "items": [{"description": "Audit", "quantity": "1", "unit_price": "120.00"}]},
        format="json",
    ).json()  # fmt: skip
    invoice = services.Invoice.objects.get(pk=invoice["id"])
    api.post(f"/api/invoices/{invoice.pk}/finalize/")
    api.post(f"/api/invoices/{invoice.pk}/send/", {}, format="json")
    provider_says(invoice, DeliveryStatus.DELIVERED)
    _, raw = downloads.issue_download_token("invoice", invoice.pk, created_by=user)
    visitor = Client(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Mozilla/5.0 (client)")
    assert visitor.get(downloads.link_url(raw)).status_code == 200
    assert visitor.post(downloads.link_url(raw)).status_code == 200
    api.post(
        f"/api/invoices/{invoice.pk}/payments/",
        {"amount": "120.00", "method": "bank_transfer"},
        format="json",
    )

    body = api.get(timeline_url(invoice)).json()

    assert set(body) == {"next", "previous", "results"}
    items = body["results"]
    assert [item["type"] for item in items] == [
        "created", "finalized", "sent", "delivered", "viewed", "downloaded", "payment", "paid",
    ]  # fmt: skip
    by_type = {item["type"]: item for item in items}
    assert by_type["sent"]["to"] == CLIENT
    assert by_type["sent"]["actor"] == user.email
    assert by_type["delivered"]["to"] == CLIENT
    viewed = by_type["viewed"]
    assert (viewed["ip_address"], viewed["user_agent"]) == ("203.0.113.9", "Mozilla/5.0 (client)")
    assert viewed["actor"] is None
    assert viewed["description"] == "Viewed through a link"
    assert by_type["downloaded"]["description"] == "Downloaded through a link"
    assert (
        by_type["sent"]["description"] == f"{user.email} sent invoice {invoice.number} to {CLIENT}"
    )
    assert by_type["downloaded"]["ip_address"] == "203.0.113.9"
    assert (by_type["payment"]["amount"], by_type["payment"]["method"]) == (
        "120.00",
        "bank_transfer",
    )
    times = [item["occurred_at"] for item in items]
    assert times == sorted(times)
    assert len({item["id"] for item in items}) == len(items)
    assert api.get(f"/api/invoices/{invoice.pk}/").json()["delivery_status"] == "delivered"


def test_a_bounce_and_a_refused_send_show_with_their_reasons(api, user):
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    provider_says(invoice, DeliveryStatus.BOUNCED, description="550 mailbox unavailable")
    email = client_emails(invoice).get()
    EmailLog.objects.filter(pk=email.pk).update(
        status=EmailLog.Status.FAILED, last_error="ap@globex.test is on the suppression list"
    )
    EmailLog.objects.filter(pk=email.pk).update(delivery_status=DeliveryStatus.SUPPRESSED)

    items = api.get(timeline_url(invoice)).json()["results"]

    bounced = next(item for item in items if item["type"] == "bounced")
    assert bounced["reason"] == "550 mailbox unavailable"
    assert "550 mailbox unavailable" in bounced["description"]
    not_sent = next(item for item in items if item["type"] == "not_sent")
    assert not_sent["to"] == CLIENT
    assert not_sent["reason"] == "ap@globex.test is on the suppression list"


def test_a_failure_explained_by_its_bounce_is_not_shown_twice(api, user):
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    provider_says(invoice, DeliveryStatus.BOUNCED, description="550 no such user")
    EmailLog.objects.filter(resource_id=str(invoice.pk)).update(status=EmailLog.Status.FAILED)

    assert types(api, invoice).count("bounced") == 1
    assert "not_sent" not in types(api, invoice)


def test_both_sends_each_with_its_delivery(api, user):
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    first = client_emails(invoice).get()
    later = timezone.now() + datetime.timedelta(minutes=1)
    services.send_invoice(invoice, to="boss@globex.test", actor=user)
    second = client_emails(invoice).exclude(pk=first.pk).get()
    provider_says(invoice, DeliveryStatus.DELIVERED, email=first, event_id="a", when=later)
    provider_says(
        invoice,
        DeliveryStatus.DELIVERED,
        email=second,
        event_id="b",
        when=later + datetime.timedelta(seconds=1),
    )

    items = api.get(timeline_url(invoice)).json()["results"]

    sends = [(i["type"], i["to"]) for i in items if i["type"] in ("sent", "delivered")]
    assert sends[-2:] == [("delivered", CLIENT), ("delivered", "boss@globex.test")]
    assert [to for kind, to in sends if kind == "sent"][-2:] == [CLIENT, "boss@globex.test"]


def test_cursor_pages_walk_forward_and_back_without_gaps_or_repeats(api, user):
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    base = timezone.now()
    for n in range(7):  # delivery events interleaved in time with nothing else
        provider_says(
            invoice,
            DeliveryStatus.DEFERRED,
            event_id=str(n),
            when=base + datetime.timedelta(seconds=n),
        )
    everything = api.get(timeline_url(invoice), {"page_size": 200}).json()["results"]

    seen, url = [], timeline_url(invoice) + "?page_size=3"
    pages = []
    while url:
        body = api.get(url).json()
        pages.append(body)
        seen += body["results"]
        url = body["next"]
    assert [item["id"] for item in seen] == [item["id"] for item in everything]
    assert pages[0]["previous"] is None
    # Back from the last page: the same pages, in reverse.
    back, url = [], pages[-1]["previous"]
    while url:
        body = api.get(url).json()
        back = body["results"] + back
        url = body["previous"]
    assert [i["id"] for i in back + pages[-1]["results"]] == [i["id"] for i in everything]


def test_equal_times_across_sources_page_without_loss(api, user):
    """Entries and delivery events at one instant: the position's source breaks the tie."""
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    entries = api.get(timeline_url(invoice), {"page_size": 200}).json()["results"]
    instant = datetime.datetime.fromisoformat(entries[-1]["occurred_at"].replace("Z", "+00:00"))
    for n in range(3):
        provider_says(invoice, DeliveryStatus.DEFERRED, event_id=str(n), when=instant)
    everything = api.get(timeline_url(invoice), {"page_size": 200}).json()["results"]

    seen, url = [], timeline_url(invoice) + "?page_size=1"
    while url:
        body = api.get(url).json()
        seen += body["results"]
        url = body["next"]

    assert [item["id"] for item in seen] == [item["id"] for item in everything]
    assert len(everything) == len(entries) + 3


def test_only_the_owner_sees_a_timeline(api, user):
    someone_elses = invoice_in_status("sent")
    assert api.get(timeline_url(someone_elses)).status_code == 404


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"p=nonsense").decode(),
        base64.b64encode(b"p=2030-01-01T00:00:00|0").decode(),
        base64.b64encode(b"p=2030-01-01T00:00:00|0|1").decode(),  # no time zone
        base64.b64encode(b"p=2030-01-01T00:00:00%2B00:00|x|1").decode(),
        base64.b64encode("p=\udcff".encode(errors="surrogateescape")).decode(),
    ],
)
def test_a_cursor_this_api_did_not_make_is_a_404(api, user, cursor):
    invoice = invoice_in_status("sent", user=user)
    response = api.get(timeline_url(invoice), {"cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


def test_a_bad_page_size_is_a_400_naming_it(api, user):
    invoice = invoice_in_status("sent", user=user)
    response = api.get(timeline_url(invoice), {"page_size": "0"})
    assert response.status_code == 400
    assert "page_size" in response.json()


# delivery_status


def test_delivery_status_follows_the_latest_client_email(api, user):
    draft = InvoiceFactory(user=user)
    invoice = invoice_in_status("sent", user=user, client_email=CLIENT)
    email = client_emails(invoice).get()

    def status_of(inv):
        return api.get(f"/api/invoices/{inv.pk}/").json()["delivery_status"]

    assert status_of(draft) is None
    EmailLog.objects.filter(pk=email.pk).update(status=EmailLog.Status.QUEUED)
    assert status_of(invoice) == "queued"
    EmailLog.objects.filter(pk=email.pk).update(status=EmailLog.Status.SENT)
    assert status_of(invoice) == "sent"
    provider_says(invoice, DeliveryStatus.DELIVERED)
    assert status_of(invoice) == "delivered"
    services.send_invoice(invoice, to="boss@globex.test", actor=user)  # a newer email
    assert status_of(invoice) in ("queued", "sent")
    other = client_emails(invoice).exclude(pk=email.pk).get()
    EmailLog.objects.filter(pk=other.pk).update(status=EmailLog.Status.FAILED)
    assert status_of(invoice) == "failed"


def test_the_list_filters_by_delivery_status(api, user):
    never = InvoiceFactory(user=user)
    delivered = invoice_in_status("sent", user=user, client_email=CLIENT)
    provider_says(delivered, DeliveryStatus.DELIVERED)
    bounced = invoice_in_status("sent", user=user, client_email="gone@globex.test")
    provider_says(bounced, DeliveryStatus.BOUNCED, event_id="2")

    def listed(value):
        body = api.get("/api/invoices/", {"delivery_status": value}).json()
        return {row["id"]: row["delivery_status"] for row in body["results"]}

    assert listed("delivered") == {delivered.pk: "delivered"}
    assert listed("bounced") == {bounced.pk: "bounced"}
    assert listed("none") == {never.pk: None}
    response = api.get("/api/invoices/", {"delivery_status": "lost"})
    assert response.status_code == 400
    assert "delivery_status" in response.json()
