import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from audit.models import AuditLog
from webhooks import services
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

DELIVERIES = "/admin/webhooks/webhookdelivery/"


def test_staff_replay_selected_deliveries_and_each_replay_is_audited(admin, superuser, user):
    live, _ = services.create_endpoint(
        user, url="https://a.example/", event_types=["*"], actor=user
    )
    off, _ = services.create_endpoint(user, url="https://b.example/", event_types=["*"], actor=user)
    deliveries = services.send_event(user, "invoice.paid", {"id": 1})
    services.update_endpoint(off, enabled=False, actor=user)
    response = admin.post(
        DELIVERIES,
        {"action": "replay_selected", ACTION_CHECKBOX_NAME: [d.pk for d in deliveries]},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        "1 delivery(ies) queued again.",
        "1 not replayed: their endpoint is disabled.",
    ]
    [replay] = WebhookDelivery.objects.filter(replay_of__isnull=False)
    assert replay.endpoint == live
    [entry] = AuditLog.objects.filter(action="webhook_delivery.replayed")
    assert entry.user_id == superuser.pk


def test_the_pages_show_rows_and_attempts_but_never_a_secret(admin, user):
    endpoint, secret = services.create_endpoint(
        user, url="https://a.example/", event_types=["*"], actor=user
    )
    [delivery] = services.send_event(user, "invoice.paid", {"id": 1})
    delivery.attempt_log.create(status_code=502, response_body="bad gateway")
    pages = [
        admin.get("/admin/webhooks/webhookendpoint/"),
        admin.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/"),
        admin.get(DELIVERIES),
        admin.get(f"{DELIVERIES}{delivery.pk}/change/"),
    ]
    assert [page.status_code for page in pages] == [200] * 4
    assert b"bad gateway" in pages[3].content
    for page in pages:
        assert secret.encode() not in page.content
        assert endpoint.secret.encode() not in page.content
