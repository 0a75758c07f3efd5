"""Notification preferences: the type x channel matrix of frequencies at
/api/notifications/preferences/, its defaults and refusals, and notify() applying it."""

import json

import pytest
from django.db import connection

from audit.tests.helpers import entries_after, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from notifications import preferences, services, types
from notifications.models import Notification, NotificationPreference

pytestmark = pytest.mark.django_db

URL = "/api/notifications/preferences/"
CRITICAL = ["account_activity", "email_verification", "password_reset_requested"]
DEFAULTS = {"in_app": "immediate", "realtime": "immediate", "email": "immediate", "webhook": "off"}


def put(api, matrix):
    return api.put(URL, {"preferences": matrix}, format="json")


def test_the_matrix_covers_every_type_and_channel_with_the_types_defaults(api):
    answer = api.get(URL)

    assert answer.status_code == 200
    body = answer.json()
    assert set(body["preferences"]) == {kind.name for kind in types.registered()}
    assert all(set(row) == set(types.CHANNELS) for row in body["preferences"].values())
    on, off = "immediate", "off"
    # The live push goes where the feed does; webhooks wait for the user to turn them on.
    paid = {"in_app": on, "realtime": on, "email": on, "webhook": off}
    assert body["preferences"]["invoice_paid"] == paid
    viewed = {"in_app": on, "realtime": on, "email": off, "webhook": off}
    assert body["preferences"]["invoice_viewed"] == viewed
    assert body["critical_types"] == CRITICAL


def test_a_put_keeps_what_it_gives_and_sets_the_rest_back_to_its_defaults(api, user):
    chosen = {"invoice_paid": {"email": "daily"}, "invoice_viewed": {"in_app": "off"}}

    answer = put(api, chosen)

    assert answer.status_code == 200
    matrix = answer.json()["preferences"]
    assert matrix["invoice_paid"] == {**DEFAULTS, "email": "daily"}
    assert matrix["invoice_viewed"] == {**DEFAULTS, "in_app": "off", "email": "off"}
    assert api.get(URL).json() == answer.json()

    assert put(api, {"invoice_paid": {"email": "weekly"}}).status_code == 200
    matrix = api.get(URL).json()["preferences"]
    assert matrix["invoice_paid"]["email"] == "weekly"
    assert matrix["invoice_viewed"]["in_app"] == "immediate"
    assert NotificationPreference.objects.filter(user=user).count() == 1


def test_a_choice_stays_the_users_whatever_the_default(api, user):
    """The whole matrix sent back as it was read is stored: an `off` the user saw and kept
    holds even for a channel the type did not ask for."""
    matrix = api.get(URL).json()["preferences"]

    assert put(api, matrix).status_code == 200

    stored = NotificationPreference.objects.filter(user=user)
    assert stored.count() == len(types.registered()) * len(types.CHANNELS)
    assert stored.get(type="invoice_viewed", channel="email").frequency == "off"


@pytest.mark.parametrize("name", CRITICAL)
def test_a_critical_type_cannot_be_switched_off(api, user, name):
    put(api, {"invoice_paid": {"email": "off"}})
    mark = last_entry_id()

    answer = put(api, {name: {"in_app": "off"}, "invoice_paid": {"email": "immediate"}})

    assert answer.status_code == 400
    errors = answer.json()["preferences"]
    assert list(errors) == [name]
    assert "critical" in errors[name][0]
    # Nothing of the refused matrix was applied.
    assert preferences.matrix(user)["invoice_paid"]["email"] == "off"
    assert not entries_after(mark).exists()


def test_a_critical_type_may_be_asked_for_on_a_channel_it_is_not_sent_on(api):
    answer = put(api, {"password_reset_requested": {"email": "immediate"}})

    assert answer.status_code == 200


@pytest.mark.parametrize("channel", ["in_app", "realtime", "webhook"])
def test_digests_are_emails_only(api, channel):
    answer = put(api, {"invoice_paid": {channel: "daily"}})

    assert answer.status_code == 400
    assert "digests are emails" in answer.json()["preferences"]["invoice_paid"][0]


@pytest.mark.parametrize("name", CRITICAL)
def test_a_critical_types_live_push_goes_with_its_feed(api, name):
    answer = put(api, {name: {"realtime": "off"}})

    assert answer.status_code == 400
    assert "critical" in answer.json()["preferences"][name][0]


@pytest.mark.parametrize(
    "body, named",
    [
        ({"preferences": {"no_such_type": {"email": "off"}}}, "no_such_type"),
        ({"preferences": {"invoice_paid": {"sms": "off"}}}, "invoice_paid"),
        ({"preferences": {"invoice_paid": {"email": "hourly"}}}, "invoice_paid"),
        ({"preferences": {"invoice_paid": "off"}}, "invoice_paid"),
        ({"preferences": {"invoice_paid": {"email": None}}}, "invoice_paid"),
        ({"preferences": {"\ud800": {"email": "off"}}}, "lone surrogate"),
        ({"preferences": "all off"}, None),
        ({"preferences": [["invoice_paid", "email", "off"]]}, None),
        ({}, None),
    ],
)
def test_a_matrix_that_is_not_one_is_refused_naming_what_is_wrong(api, user, body, named):
    answer = api.put(URL, json.dumps(body), content_type="application/json")

    assert answer.status_code == 400
    assert named is None or named in json.dumps(answer.json())
    assert not NotificationPreference.objects.filter(user=user).exists()


def test_a_deeply_nested_body_is_refused_not_crashed_on(api):
    body = '{"preferences": ' + '{"a": ' * 5000 + "{}" + "}" * 5000 + "}"

    answer = api.put(URL, body, content_type="application/json")

    assert answer.status_code == 400


def test_changes_are_audited_once_with_what_changed_and_no_change_is_not(api, user):
    mark = last_entry_id()

    put(api, {"invoice_paid": {"email": "daily"}})

    entry = only_entry(mark, "notification.preferences_updated")
    assert entry.user_id == user.pk
    assert entry.metadata["changed"] == {"invoice_paid.email": ["immediate", "daily"]}
    mark = last_entry_id()
    put(api, {"invoice_paid": {"email": "daily"}})
    assert not entries_after(mark).exists()


def test_a_choice_put_again_is_not_rewritten(user):
    preferences.set_matrix(user, {"invoice_paid": {"email": "daily", "in_app": "off"}})
    stored = NotificationPreference.objects.get(user=user, type="invoice_paid", channel="email")

    preferences.set_matrix(user, {"invoice_paid": {"email": "daily", "in_app": "immediate"}})

    again = NotificationPreference.objects.get(pk=stored.pk)
    assert again.updated_at == stored.updated_at
    assert preferences.matrix(user)["invoice_paid"] == {**DEFAULTS, "email": "daily"}


def test_preferences_are_the_callers_own(api, user, client_for):
    other = UserFactory()
    put(client_for(other), {"invoice_paid": {"email": "off"}})

    assert api.get(URL).json()["preferences"]["invoice_paid"]["email"] == "immediate"


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_other_methods_are_not_allowed(api, method):
    assert getattr(api, method)(URL).status_code == 405


def test_anonymous_callers_are_refused(anon_client):
    assert anon_client.get(URL).status_code == 401
    assert anon_client.put(URL, {"preferences": {}}, format="json").status_code == 401


# notify() applies them


def emails_to(user) -> list[EmailLog]:
    return list(EmailLog.objects.filter(to_email=user.email))


def paid(user) -> Notification:
    params = {"invoice_number": "INV-1", "client_name": "Globex", "total": "10.00"}
    return services.notify(user, "invoice_paid", params=params)


def test_a_type_switched_off_by_email_is_still_in_the_feed(user):
    preferences.set_matrix(user, {"invoice_paid": {"email": "off"}})

    notification = paid(user)

    assert emails_to(user) == []
    assert (notification.in_app, notification.digest) == (True, "")
    assert services.unread_count(user) == 1


def test_a_type_switched_off_in_the_app_is_emailed_and_out_of_the_feed(api, user):
    preferences.set_matrix(user, {"invoice_paid": {"in_app": "off"}})

    notification = paid(user)

    assert len(emails_to(user)) == 1
    assert notification.in_app is False
    assert services.unread_count(user) == 0
    assert api.get("/api/notifications/").json()["count"] == 0
    assert api.get(f"/api/notifications/{notification.pk}/").status_code == 404
    assert api.put("/api/notifications/mark-all-read/").json() == {"marked": 0}


@pytest.mark.parametrize("frequency", ["daily", "weekly"])
def test_a_digested_type_waits_for_its_digest_and_is_in_the_feed_at_once(user, frequency):
    preferences.set_matrix(user, {"invoice_paid": {"email": frequency}})

    notification = paid(user)

    assert emails_to(user) == []
    assert (notification.in_app, notification.digest) == (True, frequency)


def test_a_type_switched_off_everywhere_is_still_recorded(user):
    preferences.set_matrix(user, {"invoice_paid": {"in_app": "off", "email": "off"}})

    notification = paid(user)

    assert Notification.objects.filter(pk=notification.pk, in_app=False, digest="").exists()
    assert emails_to(user) == []


def test_a_staff_message_by_email_is_not_emailed_to_who_switched_those_off(user):
    preferences.set_matrix(user, {"admin_message": {"email": "off"}})
    other = UserFactory()

    services.send_admin_message(
        [user, other], title="Downtime", message="At noon.", send_email=True
    )

    assert emails_to(user) == []
    assert len(emails_to(other)) == 1


def test_one_users_choice_changes_nothing_for_another(user):
    preferences.set_matrix(user, {"invoice_paid": {"email": "off"}})
    other = UserFactory()

    paid(other)

    assert len(emails_to(other)) == 1


def test_a_channel_a_type_is_not_sent_on_goes_only_once_the_user_asks_for_it(user):
    """As the matrix shows it: off until chosen, even when a caller asks for the channel."""
    both = (types.IN_APP, types.EMAIL)
    params = {"invoice_number": "INV-1", "client_name": "Globex"}

    services.notify(user, "invoice_viewed", params=params, channels=both)
    assert emails_to(user) == []

    preferences.set_matrix(user, {"invoice_viewed": {"email": "immediate"}})
    services.notify(user, "invoice_viewed", params=params, channels=both)
    assert len(emails_to(user)) == 1


def test_a_critical_type_goes_at_once_on_every_channel_asked_whatever_was_stored(user):
    # Allowed (account_activity is not sent by email on its own), or stored before it was
    # critical: neither holds back a critical notification a caller sends by email.
    preferences.set_matrix(user, {"account_activity": {"email": "off"}})
    NotificationPreference.objects.create(
        user=user, type="account_activity", channel="in_app", frequency="off"
    )

    notification = services.notify(
        user,
        "account_activity",
        params={"title": "New sign-in", "message": "From a new device."},
        channels=(types.IN_APP, types.EMAIL),
    )

    assert notification.in_app is True
    assert len(emails_to(user)) == 1


def test_the_test_notification_shows_whatever_was_chosen_for_staff_messages(api, user):
    preferences.set_matrix(user, {"admin_message": {"in_app": "off"}})

    created = api.post("/api/notifications/test/")

    assert created.status_code == 201
    assert api.get(f"/api/notifications/{created.json()['id']}/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_changes_made_at_once_leave_one_of_them_whole(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers; SQLite serialises them")
    user = UserFactory()
    matrices = [
        {name: {"email": frequency} for name in ("invoice_paid", "invoice_sent")}
        for frequency in ("daily", "weekly", "off", "immediate")
    ]

    waiting = list(matrices)  # each thread takes one (list.pop is atomic)
    race(lambda: preferences.set_matrix(user, waiting.pop()), len(matrices))

    final = preferences.matrix(user)
    chosen = {name: final[name]["email"] for name in ("invoice_paid", "invoice_sent")}
    assert len(set(chosen.values())) == 1
    assert NotificationPreference.objects.filter(user=user).count() == 2
