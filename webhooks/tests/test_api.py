import json

import pytest
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from audit.models import AuditLog
from invoicegen.accounts.tests.factories import UserFactory
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/webhooks/endpoints/"
URL = "https://hooks.example.com/in"


def create(api, **fields):
    body = {"url": URL, "event_types": ["invoice.paid"], **fields}
    return api.post(ENDPOINTS, body, format="json")


def test_an_account_past_its_endpoints_is_a_409(api, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 1
    assert create(api).status_code == 201
    response = create(api)
    assert response.status_code == 409
    assert response.json() == {"detail": "An account has at most 1 endpoints."}


def test_an_endpoint_is_created_with_its_secret_shown_once(api, user):
    response = create(api, description="Accounting sync", event_types=["invoice.*"])
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["url"] == URL and body["event_types"] == ["invoice.*"] and body["enabled"]
    assert body["secret_rotation_ends_at"] is None
    listed = api.get(ENDPOINTS).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]
    assert "secret" not in api.get(f"{ENDPOINTS}{body['id']}/").json()
    assert AuditLog.objects.filter(action="webhook_endpoint.created", user=user).count() == 1


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"url": "http://hooks.example.com/"}, "url"),
        ({"url": "https://10.0.0.1/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://hooks.example.com/a\u2028b"}, "url"),
        ({"url": "https://x.example/" + "a" * 2000}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["invoice.exploded"]}, "event_types"),
        ({"event_types": "invoice.paid"}, "event_types"),
        ({"event_types": [5]}, "event_types"),
        ({"description": 5}, "description"),
        ({"description": "x" * 501}, "description"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, fields, field, settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    response = create(api, **fields)
    assert response.status_code == 400
    assert field in response.json()
    assert not WebhookEndpoint.objects.exists()


def test_hostile_bodies_are_refused_cleanly(api):
    deep = '{"url": "https://a.example/", "description": ' + '{"x": ' * 5000 + "1" + "}" * 5001
    assert api.post(ENDPOINTS, deep, content_type="application/json").status_code == 400
    lone = '{"url": "https://a.example/", "event_types": ["\\ud800"]}'
    assert api.post(ENDPOINTS, lone, content_type="application/json").status_code == 400
    assert api.put(f"{ENDPOINTS}1/", {}, format="json").status_code in (404, 405)
    assert not WebhookEndpoint.objects.exists()


def test_someone_elses_endpoint_is_not_found(api, client_for):
    other = client_for(UserFactory())
    theirs = create(other).json()["id"]
    for method, path in [
        ("get", f"{ENDPOINTS}{theirs}/"),
        ("patch", f"{ENDPOINTS}{theirs}/"),
        ("delete", f"{ENDPOINTS}{theirs}/"),
        ("post", f"{ENDPOINTS}{theirs}/rotate-secret/"),
        ("get", f"{ENDPOINTS}{theirs}/deliveries/"),
        ("post", f"{ENDPOINTS}{theirs}/deliveries/1/replay/"),
        ("post", f"{ENDPOINTS}{theirs}/test/"),
        ("post", f"{ENDPOINTS}{theirs}/recover/"),
    ]:
        assert getattr(api, method)(path, {}, format="json").status_code == 404, path
    assert api.get(ENDPOINTS).json()["results"] == []


def test_patch_changes_and_delete_removes(api):
    endpoint = create(api).json()
    path = f"{ENDPOINTS}{endpoint['id']}/"
    response = api.patch(path, {"enabled": False, "description": "paused"}, format="json")
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert response.json()["disabled_reason"] == "Disabled by its owner."
    assert api.patch(path, {"enabled": True}, format="json").json()["disabled_reason"] == ""
    assert api.put(path, {"url": URL}, format="json").status_code == 405
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


def test_rotating_the_secret_keeps_the_old_one_signing_for_a_day(api):
    endpoint = create(api).json()
    response = api.post(f"{ENDPOINTS}{endpoint['id']}/rotate-secret/")
    assert response.status_code == 200
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != endpoint["secret"]
    ends = timezone.datetime.fromisoformat(body["secret_rotation_ends_at"])
    assert abs((ends - timezone.now()).total_seconds() - 24 * 3600) < 60
    stored = WebhookEndpoint.objects.get()
    assert services.secrets_in_use(stored) == [body["secret"], endpoint["secret"]]


def test_changes_are_throttled_together(api, monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "webhook_action": "2/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    endpoint = create(api).json()
    rotations = [api.post(f"{ENDPOINTS}{endpoint['id']}/rotate-secret/").status_code for _ in "ab"]
    assert rotations == [200, 429]  # the creation counted
    assert AuditLog.objects.filter(action="webhook_endpoint.secret_rotated").count() == 1
    assert api.delete(f"{ENDPOINTS}{endpoint['id']}/").status_code == 429
    assert api.get(ENDPOINTS).status_code == 200  # reading is not a change


def test_deliveries_are_listed_newest_first_with_their_attempts(api, user):
    endpoint = WebhookEndpoint.objects.get(pk=create(api, event_types=["*"]).json()["id"])
    first, second = (services.send_event(user, "invoice.paid", {"n": n})[0] for n in (1, 2))
    first.attempt_log.create(status_code=500, response_body="down", duration_ms=12)
    response = api.get(f"{ENDPOINTS}{endpoint.pk}/deliveries/")
    assert response.status_code == 200
    page = response.json()
    assert [d["id"] for d in page["results"]] == [second.pk, first.pk]
    assert page["results"][1]["payload"]["data"] == {"n": 1}
    assert page["results"][1]["message_id"] == first.message_id
    assert page["results"][1]["attempt_log"] == [
        {
            "attempted_at": page["results"][1]["attempt_log"][0]["attempted_at"],
            "status_code": 500,
            "response_body": "down",
            "error": "",
            "duration_ms": 12,
        }
    ]
    assert "next" in page


def test_a_delivery_is_replayed_and_a_disabled_endpoints_is_a_409(api, user):
    endpoint = create(api).json()
    [delivery] = services.send_event(user, "invoice.paid", {})
    path = f"{ENDPOINTS}{endpoint['id']}/deliveries/{delivery.pk}/replay/"
    response = api.post(path)
    assert response.status_code == 201
    assert response.json()["message_id"] == delivery.message_id
    assert response.json()["replay_of"] == delivery.pk
    assert api.post(f"{ENDPOINTS}{endpoint['id']}/deliveries/999999/replay/").status_code == 404
    api.patch(f"{ENDPOINTS}{endpoint['id']}/", {"enabled": False}, format="json")
    assert api.post(path).status_code == 409
    assert WebhookDelivery.objects.count() == 2


def test_a_test_event_goes_to_that_endpoint_alone_whatever_it_subscribes_to(api, user):
    mine = create(api).json()
    create(api, event_types=["*"])

    response = api.post(f"{ENDPOINTS}{mine['id']}/test/")

    assert response.status_code == 201
    body = response.json()
    assert body["event_type"] == "webhook.test" and body["status"] == "queued"
    assert body["payload"]["data"]["endpoint_id"] == mine["id"]
    # Not to the other endpoint, which takes every event.
    assert [d.endpoint_id for d in WebhookDelivery.objects.all()] == [mine["id"]]
    api.patch(f"{ENDPOINTS}{mine['id']}/", {"enabled": False}, format="json")
    assert api.post(f"{ENDPOINTS}{mine['id']}/test/").status_code == 409


def failed_deliveries(user, count: int, *, days_ago: float = 1) -> list[WebhookDelivery]:
    made = timezone.now() - timezone.timedelta(days=days_ago)
    rows = [services.send_event(user, "invoice.paid", {"n": n})[0] for n in range(count)]
    WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=WebhookDelivery.Status.FAILED, created_at=made
    )
    return rows


def test_recover_sends_again_what_failed_since_then_once_and_audits_it(api, user):
    endpoint = create(api).json()
    path = f"{ENDPOINTS}{endpoint['id']}/recover/"
    old = failed_deliveries(user, 1, days_ago=3)
    lost = failed_deliveries(user, 2)
    sent = services.send_event(user, "invoice.paid", {})[0]
    WebhookDelivery.objects.filter(pk=sent.pk).update(status=WebhookDelivery.Status.SENT)
    since = (timezone.now() - timezone.timedelta(days=2)).isoformat()

    response = api.post(path, {"since": since}, format="json")

    assert response.status_code == 200
    assert response.json() == {"replayed": 2, "more": False}
    replays = WebhookDelivery.objects.filter(replay_of__isnull=False)
    assert sorted(r.replay_of_id for r in replays) == [row.pk for row in lost]
    assert {r.message_id for r in replays} == {row.message_id for row in lost}
    assert not WebhookDelivery.objects.filter(replay_of=old[0]).exists()
    entry = AuditLog.objects.get(action="webhook_endpoint.recovered")
    assert entry.metadata["count"] == 2 and entry.user_id == user.pk
    # Sent again once: a second call finds nothing new.
    assert api.post(path, {"since": since}, format="json").json() == {"replayed": 0, "more": False}
    assert AuditLog.objects.filter(action="webhook_endpoint.recovered").count() == 1


def test_recover_leaves_out_test_events_and_what_is_past_retention(api, user, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    endpoint = create(api).json()
    test_event = services.send_test_event(WebhookEndpoint.objects.get())
    WebhookDelivery.objects.filter(pk=test_event.pk).update(status=WebhookDelivery.Status.FAILED)
    failed_deliveries(user, 1, days_ago=31)  # a purge may take it any moment
    [lost] = failed_deliveries(user, 1)

    path = f"{ENDPOINTS}{endpoint['id']}/recover/"
    response = api.post(path, {"since": "2000-01-01T00:00:00Z"}, format="json")

    assert response.json() == {"replayed": 1, "more": False}
    assert [r.replay_of_id for r in WebhookDelivery.objects.filter(replay_of__isnull=False)] == [
        lost.pk
    ]


def test_recover_goes_a_batch_at_a_time(api, user, monkeypatch):
    monkeypatch.setattr(services, "RECOVER_LIMIT", 2)
    endpoint = create(api).json()
    failed_deliveries(user, 4)
    path, since = f"{ENDPOINTS}{endpoint['id']}/recover/", "2000-01-01T00:00:00Z"

    assert api.post(path, {"since": since}, format="json").json() == {"replayed": 2, "more": True}
    assert api.post(path, {"since": since}, format="json").json() == {"replayed": 2, "more": False}


@pytest.mark.parametrize(
    "body",
    ['{}', '{"since": "yesterday"}', '{"since": 12}', '{"since": {"a": 1}}',
     '{"since": "\\ud800"}', '{"since": "2999-01-01T00:00:00Z"}', '{"since": null}', '[]'],
)  # fmt: skip
def test_recover_without_a_past_since_is_a_400_naming_it(api, body):
    endpoint = create(api).json()

    path = f"{ENDPOINTS}{endpoint['id']}/recover/"
    response = api.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert "since" in json.dumps(response.json()) or body == "[]"  # a field, or the parse


def test_recover_on_a_disabled_endpoint_is_a_409(api, user):
    endpoint = create(api).json()
    failed_deliveries(user, 1)
    api.patch(f"{ENDPOINTS}{endpoint['id']}/", {"enabled": False}, format="json")

    response = api.post(
        f"{ENDPOINTS}{endpoint['id']}/recover/", {"since": "2000-01-01T00:00:00Z"}, format="json"
    )

    assert response.status_code == 409
    assert not WebhookDelivery.objects.filter(replay_of__isnull=False).exists()


def test_event_types_are_listed(api):
    response = api.get("/api/webhooks/event-types/")
    assert response.status_code == 200
    names = [row["name"] for row in response.json()]
    assert {"invoice.paid", "payment.received", "email.bounced", "subscription.renewed"} <= set(
        names
    )
    assert all(row["description"] for row in response.json())


def test_anonymous_callers_are_refused(anon_client):
    assert anon_client.get(ENDPOINTS).status_code == 401
    assert anon_client.get("/api/webhooks/event-types/").status_code == 401
