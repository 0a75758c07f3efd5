"""/api/notifications/ as API.md describes it: the caller's own notifications only."""

import datetime
import json
import threading

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.throttling import SimpleRateThrottle

from audit.tests.helpers import last_entry_id, only_entry
from invoicegen.accounts.tests.factories import UserFactory
from notifications import services
from notifications.models import Notification
from notifications.tests.factories import NotificationFactory

pytestmark = pytest.mark.django_db

LIST = "/api/notifications/"
UNREAD_COUNT = f"{LIST}unread-count/"
MARK_ALL_READ = f"{LIST}mark-all-read/"
TEST = f"{LIST}test/"
FIELDS = {
    "id", "type", "title", "message", "resource_type", "resource_id", "metadata", "is_read",
    "read_at", "created_at",
}  # fmt: skip


def detail_url(notification) -> str:
    return f"{LIST}{notification.pk}/"


def read_url(notification) -> str:
    return f"{LIST}{notification.pk}/read/"


def ids(response) -> list[int]:
    return [item["id"] for item in response.json()["results"]]


def direct_unread_count(user) -> int:
    """The truth, counted in SQL without the service."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {Notification._meta.db_table} "  # noqa: S608 (a constant)
            "WHERE user_id = %s AND read_at IS NULL",
            [user.pk],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def test_rate_2_per_hour(monkeypatch):
    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {**SimpleRateThrottle.THROTTLE_RATES, "notification_test": "2/hour"},
    )


# List


def test_list_answers_a_page_of_notifications_with_every_field(api, user):
    """The title and message are rendered from the type and its parameters (`metadata`)."""
    params = {"invoice_number": "INV-2026-001", "client_name": "Acme", "total": "10.00 EUR"}
    notification = NotificationFactory(
        user=user, type="invoice_paid", params=params, resource_type="invoice", resource_id="42"
    )

    response = api.get(LIST)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert (body["count"], body["next"], body["previous"]) == (1, None, None)
    [item] = body["results"]
    assert set(item) == FIELDS
    assert item == {
        "id": notification.pk,
        "type": "invoice_paid",
        "title": "Invoice INV-2026-001 paid",
        "message": "Acme paid 10.00 EUR in full.",
        "resource_type": "invoice",
        "resource_id": "42",
        "metadata": params,
        "is_read": False,
        "read_at": None,
        "created_at": item["created_at"],
    }
    assert parse_datetime(item["created_at"]) is not None


def test_titles_speak_the_readers_language_as_it_is_when_read(api, user):
    params = {"invoice_number": "INV-2026-001", "client_name": "Acme", "total": "10,00 €"}
    NotificationFactory(user=user, type="invoice_paid", params=params)

    english = api.get(LIST).json()["results"][0]
    api.patch("/api/auth/me/", {"language": "de"}, format="json")
    german = api.get(LIST).json()["results"][0]

    assert english["title"] == "Invoice INV-2026-001 paid"
    assert german["title"] != english["title"] and "INV-2026-001" in german["title"]
    assert "Rechnung" in german["title"]
    assert german["message"] != english["message"] and "Acme" in german["message"]


def test_list_is_newest_first(api, user):
    now = timezone.now()
    first = NotificationFactory(user=user, created_at=now)
    same_moment_later_row = NotificationFactory(user=user, created_at=now)
    older_but_inserted_last = NotificationFactory(
        user=user, created_at=now - datetime.timedelta(days=1)
    )

    response = api.get(LIST)

    assert ids(response) == [same_moment_later_row.pk, first.pk, older_but_inserted_last.pk]


def test_list_holds_only_the_callers_notifications(api, user):
    own = NotificationFactory(user=user)
    NotificationFactory.create_batch(2)

    response = api.get(LIST)

    assert ids(response) == [own.pk]
    assert response.json()["count"] == 1


@pytest.mark.parametrize(("is_read", "expected"), [("true", "read"), ("false", "unread")])
def test_list_filters_by_is_read(api, user, is_read, expected):
    notifications = {
        "read": NotificationFactory(user=user, read=True),
        "unread": NotificationFactory(user=user),
    }

    response = api.get(LIST, {"is_read": is_read})

    assert response.status_code == 200
    assert ids(response) == [notifications[expected].pk]


def test_list_filters_by_type(api, user):
    paid = NotificationFactory(user=user, type="invoice_paid")
    NotificationFactory(user=user, type="invoice_sent")

    response = api.get(LIST, {"type": "invoice_paid"})

    assert response.status_code == 200
    assert ids(response) == [paid.pk]


def test_list_refuses_an_unknown_type_naming_the_field(api, user):
    NotificationFactory(user=user)

    response = api.get(LIST, {"type": "invoice_exploded"})

    assert response.status_code == 400
    assert set(response.json()) == {"type"}


@pytest.mark.parametrize("is_read", ["maybe", "yes-please"])
def test_list_refuses_a_bad_is_read_naming_the_field(api, user, is_read):
    NotificationFactory(user=user)

    response = api.get(LIST, {"is_read": is_read})

    assert response.status_code == 400
    assert set(response.json()) == {"is_read"}


def test_list_pages_by_page_size_and_page(api, user):
    created = NotificationFactory.create_batch(5, user=user)
    newest_first = [n.pk for n in reversed(created)]

    first = api.get(LIST, {"page_size": 2})
    second = api.get(LIST, {"page_size": 2, "page": 2})

    assert first.json()["count"] == 5
    assert ids(first) == newest_first[:2]
    assert first.json()["previous"] is None
    assert "page=2" in first.json()["next"]
    assert ids(second) == newest_first[2:4]
    assert second.json()["previous"] is not None


def test_list_page_size_defaults_to_50_and_stops_at_200(api, user):
    NotificationFactory.create_batch(201, user=user)

    default = api.get(LIST)
    too_big = api.get(LIST, {"page_size": 1000})

    assert len(default.json()["results"]) == 50
    assert too_big.status_code == 200
    assert len(too_big.json()["results"]) == 200
    assert too_big.json()["count"] == 201


def test_list_page_past_the_end_is_404(api, user):
    NotificationFactory(user=user)

    assert api.get(LIST, {"page": 5}).status_code == 404


# Unread count


def test_unread_count_answers_the_callers_unread_notifications(api, user):
    NotificationFactory.create_batch(3, user=user)
    NotificationFactory(user=user, read=True)
    NotificationFactory.create_batch(2)  # someone else's

    response = api.get(UNREAD_COUNT)

    assert response.status_code == 200
    assert response.json() == {"unread_count": 3}


def test_unread_count_stays_right_through_read_mark_all_read_and_delete(api, user):
    def unread():
        count = api.get(UNREAD_COUNT).json()["unread_count"]
        assert count == direct_unread_count(user)
        return count

    first, second, _third = NotificationFactory.create_batch(3, user=user)
    assert unread() == 3

    api.put(read_url(first))
    assert unread() == 2

    second.delete()
    assert unread() == 1

    assert api.post(TEST).status_code == 201
    assert unread() == 2

    api.put(MARK_ALL_READ)
    assert unread() == 0


@pytest.mark.django_db(transaction=True)
def test_unread_count_equals_a_direct_count_with_concurrent_writers(client_for):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers; SQLite serialises them")
    user = UserFactory()
    existing = NotificationFactory.create_batch(24, user=user)
    creators, readers, per_thread = 3, 3, 8
    start = threading.Barrier(creators + readers + 1)
    errors = []

    def in_thread(work):
        def run():
            try:
                start.wait()
                work()
            except Exception as error:  # reported by the assertion below
                errors.append(error)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def create_some():
        for n in range(per_thread):
            services.notify(user, "admin_message", params={"title": f"New {n}"})

    def read_some(chunk):
        for notification in chunk:
            services.mark_read(notification)

    threads = [in_thread(create_some) for _ in range(creators)]
    threads += [
        in_thread(lambda chunk=existing[n::readers]: read_some(chunk)) for n in range(readers)
    ]
    threads.append(in_thread(lambda: services.mark_all_read(user)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Notification.objects.filter(user=user).count() == 24 + creators * per_thread
    assert not Notification.objects.filter(pk__in=[n.pk for n in existing], read_at=None).exists()
    response = client_for(user).get(UNREAD_COUNT)
    assert response.json() == {"unread_count": direct_unread_count(user)}


# Detail and reading


def test_detail_answers_the_notification(api, user):
    notification = NotificationFactory(user=user, title="Hello")

    response = api.get(detail_url(notification))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == FIELDS
    assert (body["id"], body["title"], body["is_read"]) == (notification.pk, "Hello", False)


def test_put_read_answers_the_notification_read(api, user):
    notification = NotificationFactory(user=user)

    response = api.put(read_url(notification))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == notification.pk
    assert body["is_read"] is True
    assert parse_datetime(body["read_at"]) is not None
    notification.refresh_from_db()
    assert notification.is_read


def test_put_read_twice_keeps_the_first_read_moment(api, user):
    notification = NotificationFactory(user=user, read=True)

    response = api.put(read_url(notification))

    assert response.status_code == 200
    assert parse_datetime(response.json()["read_at"]) == notification.read_at


def test_mark_all_read_answers_how_many_it_marked(api, user):
    NotificationFactory.create_batch(3, user=user)
    NotificationFactory(user=user, read=True)
    someone_elses = NotificationFactory()

    first = api.put(MARK_ALL_READ)
    again = api.put(MARK_ALL_READ)

    assert (first.status_code, first.json()) == (200, {"marked": 3})
    assert again.json() == {"marked": 0}
    assert direct_unread_count(user) == 0
    assert direct_unread_count(someone_elses.user) == 1


# Test notification


def test_post_test_creates_an_admin_message_for_the_caller_audited_once(api, user):
    mark = last_entry_id()

    response = api.post(TEST)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == FIELDS
    assert (body["type"], body["is_read"]) == ("admin_message", False)
    notification = Notification.objects.get(pk=body["id"])
    assert notification.user == user
    entry = only_entry(mark, "notification.test")
    assert entry.user_id == user.pk
    assert (entry.resource_type, entry.resource_id) == ("notification", str(notification.pk))


def test_post_test_is_throttled_past_the_rate_with_retry_after(api, test_rate_2_per_hour):
    statuses = [api.post(TEST).status_code for _ in range(2)]
    throttled = api.post(TEST)

    assert statuses == [201, 201]
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert Notification.objects.count() == 2


def test_post_test_throttle_counts_each_user_apart(api, client_for, test_rate_2_per_hour):
    for _ in range(3):
        api.post(TEST)

    other = client_for(UserFactory())

    assert other.post(TEST).status_code == 201


# Strictly own notifications


@pytest.mark.parametrize("method", ["get", "put"])
def test_another_users_notification_is_404_and_stays_unread(api, method):
    theirs = NotificationFactory()
    url = detail_url(theirs) if method == "get" else read_url(theirs)

    response = getattr(api, method)(url)

    assert response.status_code == 404
    assert set(response.json()) == {"detail"}
    assert Notification.objects.get(pk=theirs.pk).read_at is None


@pytest.mark.parametrize(
    "url",
    [
        f"{LIST}999999/",
        f"{LIST}999999/read/",
        f"{LIST}abc/",
        f"{LIST}{10**20}/",
        f"{LIST}{10**20}/read/",
    ],
)
def test_unknown_notification_is_404(api, url):
    response = api.get(url) if not url.endswith("read/") else api.put(url)

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", LIST),
        ("get", UNREAD_COUNT),
        ("get", "{detail}"),
        ("put", "{read}"),
        ("put", MARK_ALL_READ),
        ("post", TEST),
    ],
)
def test_anonymous_gets_401_everywhere(anon_client, method, path):
    notification = NotificationFactory()
    url = path.format(detail=detail_url(notification), read=read_url(notification))

    response = getattr(anon_client, method)(url)

    assert response.status_code == 401
    assert Notification.objects.get(pk=notification.pk).read_at is None
    assert Notification.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/api/notifications", 200),
        ("get", "/api/notifications/unread-count", 200),
        ("get", "/api/notifications/{id}", 200),
        ("put", "/api/notifications/{id}/read", 200),
        ("put", "/api/notifications/mark-all-read", 200),
        ("post", "/api/notifications/test", 201),
    ],
)
def test_every_path_answers_without_its_trailing_slash(api, user, method, path, expected):
    notification = NotificationFactory(user=user)

    response = getattr(api, method)(path.format(id=notification.pk))

    assert response.status_code == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "{detail}"),
        ("patch", "{detail}"),
        ("put", "{detail}"),
        ("post", LIST),
        ("get", "{read}"),
        ("get", MARK_ALL_READ),
        ("get", TEST),
    ],
)
def test_methods_not_in_the_contract_are_405(api, user, method, path):
    notification = NotificationFactory(user=user)
    url = path.format(detail=detail_url(notification), read=read_url(notification))

    response = getattr(api, method)(url)

    assert response.status_code == 405
    assert Notification.objects.filter(pk=notification.pk, read_at=None).exists()


def test_a_notification_is_written_as_drfs_fields_would_write_it(user):
    from rest_framework.serializers import ModelSerializer

    from notifications.api.serializers import NotificationSerializer

    NotificationFactory(user=user)
    NotificationFactory(user=user, read=True, params={"title": "T", "n": [1, "2"]})
    for notification in Notification.objects.all():
        serializer = NotificationSerializer(notification)
        assert serializer.data == ModelSerializer.to_representation(serializer, notification)


def test_the_list_writes_each_notification_as_drfs_fields_would_write_it(api, user):
    """The list writes its page from rows of values, not instances: the same text and key
    order as the declared fields write of each notification."""
    from rest_framework.serializers import ModelSerializer

    from notifications.api.serializers import NotificationSerializer

    NotificationFactory(user=user)
    NotificationFactory(user=user, read=True, params={"title": "T", "n": [1, "2"]})
    NotificationFactory(
        user=user,
        type="invoice_paid",
        params={"invoice_number": "INV-2026-001", "client_name": "Ü", "total": "1.00 EUR"},
        resource_type="invoice",
        resource_id="7",
    )

    results = api.get(LIST).json()["results"]

    expected = [
        ModelSerializer.to_representation(NotificationSerializer(n), n)
        for n in Notification.objects.filter(user=user)
    ]
    assert len(results) == 3
    assert json.dumps(results) == json.dumps(expected)


def test_the_list_builds_no_model_instance(api, user, monkeypatch):
    """An instance per notification would cost a page more than the rest of its work."""
    NotificationFactory.create_batch(2, user=user)

    def refuse(cls, *args):
        raise AssertionError("a list built a Notification")

    monkeypatch.setattr(Notification, "from_db", classmethod(refuse))
    response = api.get(LIST)

    assert response.status_code == 200
    assert response.json()["count"] == 2


def test_a_list_without_filters_builds_no_filterset(api, user, monkeypatch):
    """Its form and deep-copied filters would change nothing, at a good part of the list's
    cost; any filter named in the query brings them back."""
    from notifications.api.filters import NotificationFilter

    NotificationFactory(user=user)
    built = []
    original_init = NotificationFilter.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(NotificationFilter, "__init__", counting_init)

    assert api.get(LIST, {"page_size": 10}).json()["count"] == 1
    assert built == []
    assert api.get(LIST, {"is_read": "true"}).json()["count"] == 0
    assert len(built) == 1
