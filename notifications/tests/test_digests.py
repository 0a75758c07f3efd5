"""Digest emails: what a user chose to get daily or weekly, gathered at 08:00 in their time zone
(weekly: Monday), once a window, never empty, the feed untouched."""

import datetime
import zoneinfo

import pytest
from django.conf import settings
from django.db import connection

from emails.models import EmailLog
from emails.services import render
from invoicegen.accounts.tests.factories import UserFactory
from notifications import digests, preferences, services, tasks
from notifications.models import Notification, NotificationDigest

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def at(text: str) -> datetime.datetime:
    """A moment in Paris."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=PARIS)


@pytest.mark.parametrize(
    "frequency, now, start",
    [
        ("daily", "2026-12-02 07:59", "2026-12-01 08:00"),
        ("daily", "2026-12-02 08:00", "2026-12-02 08:00"),
        ("daily", "2026-12-02 23:30", "2026-12-02 08:00"),
        ("weekly", "2026-12-02 12:00", "2026-11-30 08:00"),  # a Wednesday: that Monday
        ("weekly", "2026-11-30 07:00", "2026-11-23 08:00"),  # Monday before 08:00: last week
        ("weekly", "2026-11-30 08:15", "2026-11-30 08:00"),
        ("daily", "2027-03-28 09:00", "2027-03-28 08:00"),  # the day clocks go forward
        ("weekly", "2027-03-30 09:00", "2027-03-29 08:00"),  # the week they went forward
    ],
)
def test_a_window_ends_at_08_00_on_the_users_wall_clock(frequency, now, start):
    assert digests.window_start(frequency, at(now), PARIS) == at(start)


@pytest.fixture
def french_owner():
    owner = UserFactory(name="Marie", timezone="Europe/Paris")
    preferences.set_matrix(owner, {"invoice_paid": {"email": "daily"}})
    return owner


def paid(user, number: str, created: str) -> Notification:
    params = {"invoice_number": number, "client_name": "Globex", "total": "10.00 EUR"}
    notification = services.notify(user, "invoice_paid", params=params)
    Notification.objects.filter(pk=notification.pk).update(created_at=at(created))
    return notification


def digests_to(user) -> list[EmailLog]:
    return list(EmailLog.objects.filter(to_email=user.email, template_name="notification_digest"))


def run(frequency: str, now: str) -> int:
    due = digests.due_users(frequency, at(now))
    return digests.send_due_digests(due, frequency, at(now))


def test_a_daily_digest_gathers_what_waited_before_08_00_once(french_owner):
    paid(french_owner, "INV-1", "2026-12-01 10:00")
    paid(french_owner, "INV-2", "2026-12-02 07:30")
    later = paid(french_owner, "INV-3", "2026-12-02 09:00")

    assert run("daily", "2026-12-02 07:45") == 0  # not yet 08:00 in Paris
    assert run("daily", "2026-12-02 08:00") == 1
    assert run("daily", "2026-12-02 08:15") == 0  # that window's digest went

    [email] = digests_to(french_owner)
    digest = NotificationDigest.objects.get()
    assert (digest.frequency, digest.window_start, digest.notification_count) == (
        "daily",
        at("2026-12-02 08:00"),
        2,
    )
    assert email.context["groups"] == [
        {
            "label": "Invoice paid",
            "count": 2,
            "items": ["Invoice INV-1 paid", "Invoice INV-2 paid"],
        }
    ]
    later.refresh_from_db()
    assert later.digested_in is None  # tomorrow's
    assert services.unread_count(french_owner) == 3  # the feed is not touched

    assert run("daily", "2026-12-03 08:00") == 1
    next_one = NotificationDigest.objects.get(window_start=at("2026-12-03 08:00"))
    assert next_one.notifications.get() == later


def test_the_digest_email_reads_well(french_owner):
    paid(french_owner, "INV-1", "2026-12-01 10:00")
    paid(french_owner, "INV-2", "2026-12-01 11:00")
    run("daily", "2026-12-02 08:00")

    message = render(digests_to(french_owner)[0], with_secrets=False)
    subject, plain, html = message.subject, message.body, message.alternatives[0][0]

    assert subject == "Your daily digest: 2 notifications"
    assert "Invoice paid (2)\n- Invoice INV-1 paid\n- Invoice INV-2 paid" in plain
    assert f"{settings.APP_BASE_URL}/notifications" in plain
    assert f'href="{settings.APP_BASE_URL}/notifications"' in html


def test_a_french_owners_digest_arrives_at_08_00_paris_time_once_and_in_french():
    owner = UserFactory(name="Marie", timezone="Europe/Paris", language="fr")
    preferences.set_matrix(owner, {"invoice_paid": {"email": "daily"}})
    paid(owner, "INV-1", "2026-12-01 10:00")

    sent = [run("daily", at) for at in ("2026-12-02 07:45", "2026-12-02 08:00", "2026-12-02 08:15")]

    assert sent == [0, 1, 0]
    [email] = digests_to(owner)
    message = render(email, with_secrets=False)
    assert email.language == "fr"
    assert "quotidien" in message.subject.lower()
    assert "Facture INV-1" in message.body  # the titles too


def test_the_digest_email_can_be_unsubscribed_from_in_one_click(french_owner):
    paid(french_owner, "INV-1", "2026-12-01 10:00")
    run("daily", "2026-12-02 08:00")

    [email] = digests_to(french_owner)
    headers = render(email, with_secrets=True).extra_headers

    assert email.topic == "digest.daily"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith(f"<{settings.APP_BASE_URL}/unsubscribe/")


def test_a_new_email_frequency_moves_what_waits_for_a_digest(french_owner):
    waiting = paid(french_owner, "INV-1", "2026-12-01 10:00")

    preferences.set_matrix(french_owner, {"invoice_paid": {"email": "weekly"}})
    waiting.refresh_from_db()
    assert waiting.digest == "weekly"  # the weekly digest carries it

    preferences.set_matrix(french_owner, {"invoice_paid": {"email": "immediate"}})
    waiting.refresh_from_db()
    assert waiting.digest == ""  # no digest will: it stays in the feed
    assert run("weekly", "2026-12-07 08:00") == 0


def test_a_window_with_nothing_waiting_sends_nothing_and_keeps_no_digest(french_owner):
    paid(french_owner, "INV-1", "2026-12-02 09:00")  # after the window's end

    digest = digests.send_digest(french_owner, "daily", at("2026-12-02 08:00"))

    assert digest is None
    assert not NotificationDigest.objects.exists()
    assert digests_to(french_owner) == []


def test_sending_a_windows_digest_again_sends_nothing(french_owner):
    paid(french_owner, "INV-1", "2026-12-01 10:00")
    start = at("2026-12-02 08:00")

    assert digests.send_digest(french_owner, "daily", start) is not None
    paid(french_owner, "INV-2", "2026-12-01 11:00")  # arrived late: it waits for the next one
    assert digests.send_digest(french_owner, "daily", start) is None

    assert len(digests_to(french_owner)) == 1


def test_a_weekly_digest_goes_on_monday_morning_in_the_users_zone():
    tokyo = UserFactory(timezone="Asia/Tokyo")
    preferences.set_matrix(tokyo, {"invoice_paid": {"email": "weekly"}})
    paid(tokyo, "INV-1", "2026-11-25 10:00")

    # Monday 08:00 in Tokyo is Monday 00:00 in Paris.
    assert run("weekly", "2026-11-29 23:59") == 0
    assert run("weekly", "2026-11-30 00:00") == 1
    assert run("daily", "2026-11-30 00:00") == 0  # a weekly choice is not in the daily ones


def test_the_beat_task_fans_out_the_due_users(french_owner):
    preferences.set_matrix(UserFactory(), {"invoice_paid": {"email": "weekly"}})
    paid(french_owner, "INV-1", "2020-01-01 10:00")  # long due

    assert tasks.send_notification_digests() == 1

    assert len(digests_to(french_owner)) == 1
    assert "send-notification-digests" in settings.CELERY_BEAT_SCHEDULE


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_send_one_digest(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers; SQLite serialises them")
    owner = UserFactory(timezone="Europe/Paris")
    preferences.set_matrix(owner, {"invoice_paid": {"email": "daily"}})
    for n in range(5):
        paid(owner, f"INV-{n}", "2026-12-01 10:00")

    sent = race(lambda: digests.send_digest(owner, "daily", at("2026-12-02 08:00")), 4)

    assert len([digest for digest in sent if digest is not None]) == 1
    assert NotificationDigest.objects.get().notification_count == 5
    assert len(digests_to(owner)) == 1
