"""Payment reminders: which step is due when, never twice, never after paid or void, the
owner's switch and schedule, and what the client receives."""

import datetime
import re
import zoneinfo
from decimal import Decimal

import pytest
from celery.schedules import crontab
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from audit.tests.helpers import actions_after, last_entry_id, migrate_to_the_latest, only_entry
from emails import delivery, unsubscribe
from emails.models import EmailLog
from emails.services import deliver_email, render, resend_email
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import events, services, tasks
from invoicegen.billing.models import Invoice, InvoiceReminder, Payment
from invoicegen.billing.tests.factories import finalized_invoice, invoice_in_status
from notifications.models import Notification

pytestmark = pytest.mark.django_db

BASE_URL = "https://invoices.example"
LINK = re.compile(re.escape(BASE_URL) + r"/downloads/([A-Za-z0-9_-]+)/")
PROFILE = "/api/business-profile/"
SENT_ON = datetime.datetime.now(
    datetime.UTC
).date()  # the invoices below are sent on the day the tests run


@pytest.fixture(autouse=True)
def _links_to_the_app(settings):
    settings.APP_BASE_URL = BASE_URL


@pytest.fixture
def today_is(monkeypatch):
    """Make the owners' today that day (the invoices are sent on the real one)."""

    def set_day(day: datetime.date) -> None:
        monkeypatch.setattr(services, "owners_today", lambda user: day)

    return set_day


def sent_invoice(due_in_days: int = 10, **fields) -> Invoice:
    due_date = SENT_ON + datetime.timedelta(days=due_in_days)
    return invoice_in_status(Invoice.Status.SENT, due_date=due_date, **fields)


def day(invoice: Invoice, offset: int) -> datetime.date:
    return invoice.due_date + datetime.timedelta(days=offset)


def reminders(invoice: Invoice) -> list[tuple[int, str]]:
    return list(invoice.reminders.values_list("days", "outcome"))


def reminder_emails(invoice: Invoice):
    return EmailLog.objects.filter(template_name="invoice_reminder", resource_id=str(invoice.pk))


# Which step, when


def test_each_step_is_sent_on_its_day_and_not_before(today_is):
    invoice = sent_invoice(due_in_days=10)
    sent_on = {}

    for offset in range(-4, 16):
        today_is(day(invoice, offset))
        for _ in range(2):  # a second run the same day finds nothing due
            if reminder := services.remind_invoice(invoice):
                sent_on[reminder.days] = offset

    assert sent_on == {-3: -3, 1: 1, 7: 7, 14: 14}
    assert reminders(invoice) == [(-3, "sent"), (1, "sent"), (7, "sent"), (14, "sent")]
    assert reminder_emails(invoice).count() == 4


def test_the_beat_task_sends_what_is_due_once_however_often_it_runs(today_is):
    invoice, not_yet = sent_invoice(due_in_days=4), sent_invoice(due_in_days=5)
    today_is(day(invoice, -3))

    assert tasks.send_due_reminders.delay().get() == 1
    assert tasks.send_due_reminders.delay().get() == 0

    assert reminders(invoice) == [(-3, "sent")]
    assert reminders(not_yet) == []
    assert reminder_emails(invoice).count() == 1


def test_after_an_outage_only_the_latest_step_is_sent_and_earlier_ones_are_skipped(today_is):
    invoice = sent_invoice(due_in_days=5)
    today_is(day(invoice, 8))
    mark = last_entry_id()

    reminder = services.remind_invoice(invoice)

    assert reminder.days == 7
    assert reminders(invoice) == [(-3, "skipped"), (1, "skipped"), (7, "sent")]
    entry = only_entry(mark, "invoice.reminder_sent")
    assert (entry.metadata["step"], entry.metadata["skipped_steps"]) == (7, [-3, 1])
    [email] = reminder_emails(invoice)
    assert email.subject.endswith("is overdue by 8 days")


@pytest.mark.parametrize("due_in_days", [2, 3])  # its -3 step was yesterday, or is today
def test_steps_up_to_the_day_the_invoice_was_sent_are_left_to_its_own_email(today_is, due_in_days):
    invoice = sent_invoice(due_in_days=due_in_days)
    today_is(SENT_ON)
    assert services.remind_invoice(invoice) is None

    today_is(day(invoice, 1))
    assert services.remind_invoice(invoice).days == 1
    assert reminders(invoice) == [(1, "sent")]


def test_a_step_added_behind_one_already_sent_is_not_sent(today_is):
    invoice = sent_invoice(due_in_days=5)
    today_is(day(invoice, 7))
    services.remind_invoice(invoice)
    services.update_business_profile(invoice.user, reminder_days=[-3, 1, 2, 7, 14])

    assert services.remind_invoice(invoice) is None


def test_the_owners_schedule_decides_the_steps(today_is):
    invoice = sent_invoice(due_in_days=5)
    services.update_business_profile(invoice.user, reminder_days=[2])
    today_is(day(invoice, 1))
    assert services.remind_invoice(invoice) is None

    today_is(day(invoice, 2))
    assert services.remind_invoice(invoice).days == 2


def test_an_empty_schedule_sends_nothing(today_is):
    invoice = sent_invoice(due_in_days=5)
    services.update_business_profile(invoice.user, reminder_days=[])
    today_is(day(invoice, 14))

    assert services.send_due_reminders() == 0


def paid(invoice):
    services.record_payment(invoice, amount=invoice.total, method=Payment.Method.CARD)


def disabled(invoice):
    services.update_invoice(invoice, reminders_enabled=False)


@pytest.mark.parametrize("change", [paid, services.void_invoice, disabled])
def test_no_reminder_after_paid_or_void_or_when_switched_off(today_is, change):
    invoice = sent_invoice(due_in_days=5)
    change(invoice)
    today_is(day(invoice, 1))

    assert services.send_due_reminders() == 0
    assert services.remind_invoice(invoice) is None
    assert reminders(invoice) == []
    assert not reminder_emails(invoice).exists()


@pytest.mark.parametrize("status", [Invoice.Status.DRAFT, Invoice.Status.FINALIZED])
def test_no_reminder_for_an_invoice_the_client_was_not_sent(today_is, status):
    invoice = invoice_in_status(status, due_date=SENT_ON)
    today_is(day(invoice, 1))

    assert services.send_due_reminders() == 0
    assert reminders(invoice) == []


def test_a_partly_paid_invoice_is_reminded_of_its_balance(today_is):
    invoice = sent_invoice(due_in_days=5)
    services.record_payment(invoice, amount=invoice.total - 100, method=Payment.Method.CARD)
    today_is(day(invoice, 1))

    services.remind_invoice(invoice)

    [email] = reminder_emails(invoice)
    assert email.context["balance_due"] == "$100.00"


@pytest.mark.parametrize(("price", "reminded"), [("0.00", False), ("0.50", True)])
def test_a_cent_due_is_reminded_of_and_nothing_due_is_not(today_is, price, reminded):
    item = {"description": "Advice", "quantity": Decimal(1), "unit_price": Decimal(price)}
    invoice = sent_invoice(due_in_days=5, items=[item])
    today_is(day(invoice, 1))

    assert (services.remind_invoice(invoice) is not None) is reminded
    assert reminder_emails(invoice).count() == reminded


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_each_step_once(race, today_is):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks; SQLite serialises every writer anyway")
    invoice = sent_invoice(due_in_days=5)
    today_is(day(invoice, 1))

    sent = race(services.send_due_reminders, 4)

    assert sum(sent) == 1
    assert reminders(invoice) == [(-3, "skipped"), (1, "sent")]
    assert reminder_emails(invoice).count() == 1


def test_a_step_another_run_took_is_not_sent_again(today_is, monkeypatch):
    """The unique row is the last guard: a run that read no row yet stops at the insert."""
    invoice = sent_invoice(due_in_days=5)
    today_is(day(invoice, 1))
    InvoiceReminder.objects.create(invoice=invoice, days=1, outcome="sent")
    monkeypatch.setattr(services, "_due_reminder_steps", lambda invoice, today: [1])
    mark = last_entry_id()

    assert services.remind_invoice(invoice) is None
    assert actions_after(mark) == []
    assert not reminder_emails(invoice).exists()


# The event and the email


def test_a_reminder_is_one_audit_entry_on_the_invoice(today_is):
    invoice = sent_invoice(due_in_days=4)
    today_is(day(invoice, -3))
    mark = last_entry_id()

    services.remind_invoice(invoice)

    assert actions_after(mark) == ["invoice.reminder_sent"]
    entry = only_entry(mark, "invoice.reminder_sent")
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert entry.metadata["step"] == -3
    assert entry.metadata["to"] == invoice.client_email
    assert entry.description == f"Reminder of invoice {invoice.number} sent to " + (
        f"{invoice.client_email} (-3 days)"
    )


def test_the_client_gets_the_reminder_from_the_business_with_a_working_link(
    today_is, django_capture_on_commit_callbacks
):
    owner = UserFactory(email="jane@studio.example", email_verified=True)
    services.update_business_profile(owner, legal_name="Studio North")
    invoice = sent_invoice(due_in_days=4, user=owner, client_email="ap@acme.example")
    today_is(day(invoice, -3))
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.remind_invoice(invoice)

    [message] = mail.outbox
    assert message.to == ["ap@acme.example"]
    assert (
        message.subject == f"Reminder: invoice {invoice.number} from Studio North is due in 3 days"
    )
    assert message.from_email.startswith('"Studio North via ')
    assert message.extra_headers["Reply-To"] == "jane@studio.example"
    due = f"{invoice.due_date:%b} {invoice.due_date.day}, {invoice.due_date.year}"  # as in English
    assert f"invoice {invoice.number}, due {due}, is due in 3 days" in message.body
    [raw] = LINK.findall(message.body)
    landing = Client().get(f"/downloads/{raw}/")
    assert landing.status_code == 200
    assert invoice.number in landing.content.decode()


def test_a_reminder_still_queued_when_the_invoice_is_paid_is_not_sent(
    today_is, django_capture_on_commit_callbacks
):
    invoice = sent_invoice(due_in_days=5)
    today_is(day(invoice, 1))
    services.remind_invoice(invoice)  # its delivery not run: still in the outbox
    paid(invoice)
    mail.outbox.clear()

    [email] = reminder_emails(invoice)
    deliver_email(email.pk)

    email.refresh_from_db()
    assert email.status == EmailLog.Status.FAILED
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("days_left", "text"),
    [
        (3, "due in 3 days"),
        (1, "due in 1 day"),
        (0, "due today"),
        (-1, "overdue by 1 day"),
        (-7, "overdue by 7 days"),
    ],
)
def test_when_due_reads_as_a_sentence(days_left, text):
    today = datetime.date(2030, 1, 10)
    invoice = Invoice(due_date=today + datetime.timedelta(days=days_left))

    assert events.when_due(invoice, today) == text


def test_owners_today_is_the_date_in_their_time_zone():
    # Kiritimati is 14 hours ahead of UTC, Niue 11 behind: their dates differ at every hour
    # (by two days from 10:00 to 11:00 UTC).
    ahead, behind = UserFactory(timezone="Pacific/Kiritimati"), UserFactory(timezone="Pacific/Niue")
    assert services.owners_today(ahead) > services.owners_today(behind)
    for owner in (ahead, behind):
        here = zoneinfo.ZoneInfo(owner.timezone)
        assert services.owners_today(owner) == timezone.now().astimezone(here).date()


# Where it goes


def test_a_reminder_goes_to_the_address_the_invoice_was_last_sent_to(today_is):
    due_date = SENT_ON + datetime.timedelta(days=5)
    invoice = finalized_invoice(client_email="owner@x.test", due_date=due_date)
    services.send_invoice(invoice)
    services.send_invoice(invoice, to="ap@x.test")
    today_is(day(invoice, 1))
    mark = last_entry_id()

    services.remind_invoice(invoice)

    [email] = reminder_emails(invoice)
    assert email.to_email == "ap@x.test"
    assert only_entry(mark, "invoice.reminder_sent").metadata["to"] == "ap@x.test"


def suppress(address: str) -> None:
    delivery.suppress_address(address, reason="bounced", source="postmark")


def test_a_suppressed_address_gets_no_reminder_and_its_step_is_done_once(today_is):
    invoice = sent_invoice(due_in_days=5, client_email="gone@x.test")
    suppress("Gone@x.test")
    today_is(day(invoice, 1))
    emails, notifications = EmailLog.objects.count(), Notification.objects.count()
    mark = last_entry_id()

    reminder = services.remind_invoice(invoice)
    today_is(day(invoice, 2))
    again = services.send_due_reminders()

    assert reminder.outcome == InvoiceReminder.Outcome.SUPPRESSED
    assert again == 0
    assert reminders(invoice) == [(-3, "skipped"), (1, "suppressed")]
    assert actions_after(mark) == ["invoice.reminder_suppressed"]
    entry = only_entry(mark, "invoice.reminder_suppressed")
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert (entry.metadata["to"], entry.metadata["step"]) == ("gone@x.test", 1)
    assert entry.description == (
        f"Reminder of invoice {invoice.number} not sent: gone@x.test is suppressed (+1 days)"
    )
    assert EmailLog.objects.count() == emails
    assert Notification.objects.count() == notifications


def test_a_suppressed_step_is_not_counted_as_sent(today_is):
    invoice = sent_invoice(due_in_days=5, client_email="gone@x.test")
    suppress("gone@x.test")
    today_is(day(invoice, 1))

    assert services.send_due_reminders() == 0
    assert reminders(invoice) == [(-3, "skipped"), (1, "suppressed")]


def test_a_suppressed_client_email_does_not_stop_a_reminder_sent_elsewhere(today_is):
    due_date = SENT_ON + datetime.timedelta(days=5)
    invoice = finalized_invoice(client_email="owner@x.test", due_date=due_date)
    services.send_invoice(invoice, to="ap@x.test")
    suppress("owner@x.test")
    today_is(day(invoice, 1))

    assert services.send_due_reminders() == 1
    assert reminders(invoice) == [(-3, "skipped"), (1, "sent")]
    assert reminder_emails(invoice).get().to_email == "ap@x.test"


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_sent_invoice_the_address_its_latest_send_went_to():
    before, after = ("billing", "0004_reminders"), ("billing", "0005_invoice_sent_to")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old_apps = executor.loader.project_state([before, ("audit", "0006_resource_label")]).apps
    old_invoice = old_apps.get_model("billing", "Invoice")
    entries = old_apps.get_model("audit", "AuditLog").objects
    owner = old_apps.get_model("accounts", "User").objects.create(email="owner@example.com")
    fields = {"user_id": owner.pk, "year": 2030, "due_date": SENT_ON, "status": "sent"}
    sent_twice, pruned, draft = (
        old_invoice.objects.create(
            **fields, sequence=n, number=f"INV-2030-{n:03d}", client_email="client@x.test"
        )
        for n in (1, 2, 3)
    )
    old_invoice.objects.filter(pk__in=[sent_twice.pk, pruned.pk]).update(sent_at=timezone.now())
    old_invoice.objects.filter(pk=draft.pk).update(status="draft")
    for to in ("client@x.test", "ap@x.test"):
        entries.create(
            action="invoice.sent",
            category="invoice",
            resource_type="invoice",
            resource_id=str(sent_twice.pk),
            metadata={"to": to},
            digest="0" * 64,
        )

    executor.loader.build_graph()
    executor.migrate([after])

    addresses = dict(Invoice.objects.values_list("number", "sent_to"))
    assert addresses == {
        "INV-2030-001": "ap@x.test",
        "INV-2030-002": "client@x.test",
        "INV-2030-003": "",
    }
    migrate_to_the_latest(executor)


# API: the invoice's switch


def test_an_invoice_has_reminders_on_by_default(api, user):
    invoice = sent_invoice(user=user)

    response = api.get(f"/api/invoices/{invoice.pk}/")

    assert response.json()["reminders_enabled"] is True


def test_an_invoice_may_be_created_with_reminders_off(api, user):
    payload = {
        "client_name": "Acme",
        "client_email": "ap@acme.example",
        "due_date": "2030-01-31",
        "items": [{"description": "Work", "quantity": "1.00", "unit_price": "10.00"}],
        "reminders_enabled": False,
    }

    response = api.post("/api/invoices/", payload, format="json")

    assert response.status_code == 201
    assert response.json()["reminders_enabled"] is False
    assert Invoice.objects.get(pk=response.json()["id"]).reminders_enabled is False


@pytest.mark.parametrize("status", [Invoice.Status.FINALIZED, Invoice.Status.SENT])
def test_patch_switches_reminders_off_on_an_issued_invoice(api, user, status):
    invoice = invoice_in_status(status, user=user)
    mark = last_entry_id()

    response = api.patch(
        f"/api/invoices/{invoice.pk}/", {"reminders_enabled": False}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["reminders_enabled"] is False
    assert response.json()["status"] == status
    entry = only_entry(mark, "invoice.updated")
    assert entry.metadata["changes"]["reminders_enabled"] == [True, False]


@pytest.mark.parametrize("status", [Invoice.Status.PAID, Invoice.Status.VOID])
def test_patch_of_reminders_on_a_paid_or_void_invoice_answers_409(api, user, status):
    invoice = invoice_in_status(status, user=user)

    response = api.patch(
        f"/api/invoices/{invoice.pk}/", {"reminders_enabled": False}, format="json"
    )

    assert response.status_code == 409
    invoice.refresh_from_db()
    assert invoice.reminders_enabled is True


def test_patch_of_reminders_with_other_fields_on_a_sent_invoice_answers_409(api, user):
    invoice = sent_invoice(user=user)

    response = api.patch(
        f"/api/invoices/{invoice.pk}/",
        {"reminders_enabled": False, "client_name": "Changed"},
        format="json",
    )

    assert response.status_code == 409
    invoice.refresh_from_db()
    assert (invoice.reminders_enabled, invoice.client_name) != (False, "Changed")


@pytest.mark.parametrize("value", ["false", 0, None])
def test_patch_of_reminders_takes_a_boolean_only(api, user, value):
    invoice = sent_invoice(user=user)

    response = api.patch(
        f"/api/invoices/{invoice.pk}/", {"reminders_enabled": value}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"reminders_enabled"}


# API: the owner's schedule


def test_the_profile_takes_a_schedule_and_answers_it_in_order(api, user):
    response = api.patch(PROFILE, {"reminder_days": [7, -5, 0]}, format="json")

    assert response.status_code == 200
    assert response.json()["reminder_days"] == [-5, 0, 7]
    assert services.reminder_days_of(user) == [-5, 0, 7]


def test_an_empty_schedule_is_allowed(api, user):
    response = api.patch(PROFILE, {"reminder_days": []}, format="json")

    assert response.status_code == 200
    assert response.json()["reminder_days"] == []


@pytest.mark.parametrize(
    "days",
    [[-31], [91], [1, 1], [1, 2, 3, 4, 5, 6, 7], [1.5], ["1"], [True], "1", None, [None]],
)
def test_the_profile_refuses_a_bad_schedule_with_400_naming_it(api, user, days):
    response = api.patch(PROFILE, {"reminder_days": days}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"reminder_days"}
    assert services.reminder_days_of(user) == [-3, 1, 7, 14]


def test_the_beat_runs_the_reminders_at_nine_utc(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["send-invoice-reminders"]
    assert entry["task"] == tasks.send_due_reminders.name
    assert entry["schedule"] == crontab(hour=9, minute=0)
    assert settings.CELERY_TIMEZONE == "UTC"


def test_the_timeline_shows_each_reminder_sent_or_suppressed(today_is, api, user):
    invoice = sent_invoice(due_in_days=5, user=user, client_email="ap@x.test")
    today_is(day(invoice, 1))
    services.remind_invoice(invoice)
    suppress("ap@x.test")
    today_is(day(invoice, 7))
    services.remind_invoice(invoice)

    items = api.get(f"/api/invoices/{invoice.pk}/timeline/").json()["results"]

    reminded = [(i["type"], i["step"], i["to"]) for i in items if "reminder" in i["type"]]
    assert reminded == [
        ("reminder_sent", 1, "ap@x.test"),
        ("reminder_suppressed", 7, "ap@x.test"),
    ]


# A client unsubscribing from an issuer's reminders


def unsubscribe_path(email: EmailLog) -> str:
    """The one-click URL of the email as it is sent (its List-Unsubscribe header)."""
    header = render(email, with_secrets=True).extra_headers["List-Unsubscribe"]
    return re.match(r"<https://[^/]+(/unsubscribe/[^>]+)>, <mailto:", header).group(1)


def test_a_client_stops_one_issuers_reminders_and_still_gets_its_invoices(today_is):
    invoice = sent_invoice(due_in_days=5, client_email="ap@client.test")
    today_is(day(invoice, 1))
    services.remind_invoice(invoice)
    [reminder] = reminder_emails(invoice)
    mark = last_entry_id()
    issuer = invoice.issuer.get("name") or invoice.user.get_full_name()

    page = Client().get(unsubscribe_path(reminder)).content.decode()
    answer = Client(enforce_csrf_checks=True).post(
        unsubscribe_path(reminder),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert answer.status_code == 200
    assert "payment reminders" in answer.content.decode()
    assert f"Stop receiving payment reminders from {escape(issuer)} at ap@client.test?" in page
    entry = only_entry(mark, "email.unsubscribed")
    assert entry.metadata == {
        "address": "ap@client.test",
        "topic": "invoice_reminder",
        "sender_id": invoice.user_id,
    }
    # The issuer's next step is done without an email.
    today_is(day(invoice, 7))
    assert services.remind_invoice(invoice).outcome == InvoiceReminder.Outcome.SUPPRESSED
    assert reminder_emails(invoice).count() == 1
    # The issuer's invoices still reach the client, without an unsubscribe link.
    other = finalized_invoice(user=invoice.user, client_email="ap@client.test")
    services.send_invoice(other)
    email = EmailLog.objects.get(template_name="invoice_notification_client", resource_id=other.pk)
    assert "List-Unsubscribe" not in render(email, with_secrets=True).extra_headers
    assert deliver_email(email.pk).status == EmailLog.Status.SENT
    # Another issuer's reminders still reach the same address.
    elsewhere = sent_invoice(due_in_days=5, client_email="AP@client.test")
    today_is(day(elsewhere, 1))
    assert services.remind_invoice(elsewhere).outcome == InvoiceReminder.Outcome.SENT


def test_a_reminder_queued_before_its_client_unsubscribed_is_not_sent(today_is):
    invoice = sent_invoice(due_in_days=5, client_email="ap@client.test")
    today_is(day(invoice, 1))
    services.remind_invoice(invoice)
    [reminder] = reminder_emails(invoice)
    request = unsubscribe.read_token(unsubscribe_path(reminder).split("/")[2])
    unsubscribe.unsubscribe(request)

    deliver_email(reminder.pk)

    reminder.refresh_from_db()
    assert reminder.status == EmailLog.Status.FAILED
    assert reminder.delivery_status == "unsubscribed"
    assert reminder.last_error.startswith("Unsubscribed:")
    assert not [message for message in mail.outbox if "ap@client.test" in message.to]


def test_a_resent_reminder_is_still_the_issuers_and_still_stopped_by_the_opt_out(today_is):
    invoice = sent_invoice(due_in_days=5, client_email="ap@client.test")
    today_is(day(invoice, 1))
    services.remind_invoice(invoice)
    [reminder] = reminder_emails(invoice)
    unsubscribe.unsubscribe(unsubscribe.read_token(unsubscribe_path(reminder).split("/")[2]))

    copy = resend_email(reminder)
    deliver_email(copy.pk)

    copy.refresh_from_db()
    assert (copy.from_email, copy.reply_to) == (reminder.from_email, reminder.reply_to)
    assert copy.on_behalf_of_id == invoice.user_id
    assert (copy.status, copy.delivery_status) == (EmailLog.Status.FAILED, "unsubscribed")
