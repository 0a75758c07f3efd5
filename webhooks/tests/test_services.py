import datetime
import ipaddress

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audit.models import AuditLog
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.core.exceptions import ConflictError
from webhooks import sending, services, signing, types
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/in"


def make(user, event_types=("*",), url=URL):
    return services.create_endpoint(user, url=url, event_types=list(event_types), actor=user)


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fc00::1", "fd00:ec2::254",  # noqa: S104
        "fe80::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::", "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1", "2002:a9fe:a9fe::", "::7f00:1", "::ffff:0:7f00:1",
    ],
)  # fmt: skip
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address):
    assert not sending.allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:84e5", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert sending.allowed(ipaddress.ip_address(address))


def test_private_networks_are_allowed_when_the_setting_says_so(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert sending.allowed(ipaddress.ip_address("10.0.0.1"))


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://hooks.example.com/", "must be https"),
        ("ftp://hooks.example.com/", "must be https"),
        ("http://127.0.0.1:9000/", "must be https"),
        ("https://user:pass@hooks.example.com/", "may not hold credentials"),
        ("https://token@hooks.example.com/", "may not hold credentials"),
        ("https://10.0.0.5/hook", "private or reserved"),
        ("https://[::1]/hook", "private or reserved"),
        ("https://169.254.169.254/latest", "private or reserved"),
        ("https://hooks.example.com:99999/", "is not valid"),
        ("https://[::1/", "is not valid"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("https://hooks.example.com/\x00", "spaces or control characters"),
        ("https://faß.de/hook", "must be ASCII"),
        ("https://example.com/ü", "must be ASCII"),
        ("https:///nohost", "has no host"),
    ],
)
def test_urls_an_endpoint_may_not_have(url, why, settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    with pytest.raises(ValueError, match=why):
        sending.check_url(url)


def test_http_reaches_only_this_machine_and_only_where_allowed(settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    sending.check_url("http://localhost:8787/hook")
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    sending.check_url("http://[::1]:8787/hook")
    sending.check_url("http://127.0.0.1:8787/hook")
    with pytest.raises(ValueError, match="must be https"):
        sending.check_url("http://hooks.example.com/")


def test_an_endpoint_receives_the_events_it_names_its_groups_or_all(user):
    named, _ = make(user, ["invoice.paid"])
    group, _ = make(user, ["invoice.*"])
    every, _ = make(user, ["*"])
    make(user, ["subscription.*"])
    off, _ = make(user, ["invoice.paid"])
    services.update_endpoint(off, enabled=False, actor=user)
    make(UserFactory(), ["*"])  # someone else's
    deliveries = services.send_event(user, "invoice.paid", {"id": 1})
    assert {d.endpoint_id for d in deliveries} == {named.pk, group.pk, every.pk}
    assert len({d.message_id for d in deliveries}) == 1
    assert {d.endpoint_id for d in services.send_event(user, "invoice.sent", {})} == {
        group.pk,
        every.pk,
    }


def test_an_unregistered_event_type_is_a_bug():
    with pytest.raises(ValueError, match="not registered"):
        services.send_event(UserFactory(), "invoice.exploded", {})


def test_event_types_must_be_known():
    with pytest.raises(ValidationError) as refused:
        make(UserFactory(), ["invoice.paid", "invoice.exploded", "nothing.*"])
    assert refused.value.message_dict == {
        "event_types": ["Unknown event types: invoice.exploded, nothing.*."]
    }
    assert types.is_known("invoice.*") and types.is_known("*")


def test_a_payload_over_the_bound_is_refused_where_it_is_made(user, settings):
    make(user)
    settings.WEBHOOK_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(ValueError, match="exceeds WEBHOOK_MAX_PAYLOAD_BYTES"):
        services.send_event(user, "invoice.paid", {"notes": "x" * 1000})


def test_a_payload_is_compact_utf_8_and_may_fill_the_bound_exactly(user, settings, monkeypatch):
    make(user)
    instant = datetime.datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=datetime.UTC)
    monkeypatch.setattr(services.timezone, "now", lambda: instant)  # a body of one length
    [delivery] = services.send_event(user, "invoice.paid", {"name": "Zoë ✓"})
    assert delivery.payload == (
        '{"type":"invoice.paid","timestamp":"2026-05-04T03:02:01.123Z","data":{"name":"Zoë ✓"}}'
    )
    settings.WEBHOOK_MAX_PAYLOAD_BYTES = len(delivery.payload.encode())
    assert services.send_event(user, "invoice.paid", {"name": "Zoë ✓"})
    settings.WEBHOOK_MAX_PAYLOAD_BYTES -= 1
    with pytest.raises(ValueError, match="exceeds WEBHOOK_MAX_PAYLOAD_BYTES"):
        services.send_event(user, "invoice.paid", {"name": "Zoë ✓"})


def test_an_account_has_a_bounded_number_of_endpoints(user, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    make(user), make(user)
    with pytest.raises(ConflictError, match="at most 2 endpoints"):
        make(user)


@pytest.mark.django_db(transaction=True)
def test_endpoints_created_at_once_keep_to_the_bound(settings, race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks; SQLite serialises every writer anyway")
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    user = UserFactory()

    def create():
        try:
            return make(user)
        except ConflictError:
            return "refused"

    outcomes = race(create, 6)

    assert outcomes.count("refused") == 4
    assert WebhookEndpoint.objects.filter(user=user).count() == 2


def test_the_secret_is_stored_encrypted_and_signs_whole(user):
    endpoint, secret = make(user)
    assert secret.startswith("whsec_") and len(secret) == 6 + 44
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhookendpoint")
        [(stored,)] = cursor.fetchall()
    assert secret not in stored and secret[6:] not in stored
    assert signing.unseal(stored) == secret
    assert services.secrets_in_use(endpoint) == [secret]


def test_the_previous_secret_signs_until_its_overlap_ends_and_not_at_that_instant(
    user, monkeypatch
):
    endpoint, first = make(user)
    second = services.rotate_secret(endpoint, actor=user)
    endpoint.refresh_from_db()
    assert services.secrets_in_use(endpoint) == [second, first]
    monkeypatch.setattr(services.timezone, "now", lambda: endpoint.previous_secret_expires_at)
    assert services.secrets_in_use(endpoint) == [second]


def test_the_secret_survives_a_rotation_of_secret_key(user, settings):
    _, secret = make(user)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert services.secrets_in_use(WebhookEndpoint.objects.get()) == [secret]


@pytest.mark.parametrize(
    "act, action",
    [
        (lambda e, u: services.update_endpoint(e, description="CRM", actor=u), "updated"),
        (lambda e, u: services.rotate_secret(e, actor=u), "secret_rotated"),
        (lambda e, u: services.delete_endpoint(e, actor=u), "deleted"),
        (lambda e, u: services.disable_endpoint(e, reason="failing"), "disabled"),
    ],
)
def test_each_change_of_an_endpoint_is_audited_once(user, act, action):
    endpoint, secret = make(user, url=URL + "?token=abc")
    endpoint_id = endpoint.pk
    act(endpoint, user)
    [entry] = AuditLog.objects.filter(action=f"webhook_endpoint.{action}")
    assert entry.resource_id == str(endpoint_id)
    assert entry.metadata["url"] == "https://hooks.example.com/…"
    assert secret not in str(entry.metadata) and "abc" not in str(entry.metadata)
    assert AuditLog.objects.filter(action="webhook_endpoint.created").count() == 1


def test_an_update_records_what_changed_and_nothing_when_nothing_did(user):
    endpoint, _ = make(user)
    services.update_endpoint(endpoint, description="", event_types=["*"], actor=user)
    assert not AuditLog.objects.filter(action="webhook_endpoint.updated").exists()
    services.update_endpoint(endpoint, event_types=["invoice.paid"], actor=user)
    [entry] = AuditLog.objects.filter(action="webhook_endpoint.updated")
    assert entry.metadata["changes"] == {"event_types": ["invoice.paid"]}


def test_an_update_is_checked_as_a_creation_is(user):
    endpoint, _ = make(user)
    with pytest.raises(ValidationError) as refused:
        services.update_endpoint(
            endpoint, url="http://10.0.0.1/in", event_types=["nothing.*"], actor=user
        )
    assert set(refused.value.message_dict) == {"url", "event_types"}
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types) == (URL, ["*"])


def test_an_endpoint_disabled_by_its_owner_says_so(user):
    endpoint, _ = make(user)
    services.update_endpoint(endpoint, enabled=False, actor=user)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "Disabled by its owner."


def test_a_disabling_reason_is_kept_to_its_column(user):
    endpoint, _ = make(user)
    reason = "The receiver answered 410 Gone. " * 20
    assert services.disable_endpoint(endpoint, reason=reason) is True
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == reason[:500]
    [entry] = AuditLog.objects.filter(action="webhook_endpoint.disabled")
    assert entry.metadata["reason"] == reason


def test_enabling_again_forgets_the_failures(user):
    endpoint, _ = make(user)
    services.disable_endpoint(endpoint, reason="Every attempt failed for 5 days.")
    endpoint.refresh_from_db()
    assert not services.disable_endpoint(endpoint, reason="again")  # already disabled
    services.update_endpoint(endpoint, enabled=True, actor=user)
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None and endpoint.disabled_reason == ""


def test_a_replay_of_a_disabled_endpoints_delivery_is_refused(user):
    endpoint, _ = make(user)
    [delivery] = services.send_event(user, "invoice.paid", {})
    services.update_endpoint(endpoint, enabled=False, actor=user)
    delivery.refresh_from_db()
    with pytest.raises(ConflictError, match="disabled"):
        services.replay_delivery(delivery, actor=user)
    assert WebhookDelivery.objects.count() == 1
    assert not AuditLog.objects.filter(action="webhook_delivery.replayed").exists()


def test_a_replay_is_audited_once(user):
    make(user)
    [delivery] = services.send_event(user, "invoice.paid", {})
    replay = services.replay_delivery(delivery, actor=user)
    [entry] = AuditLog.objects.filter(action="webhook_delivery.replayed")
    assert entry.metadata["replay_id"] == replay.pk and entry.user_id == user.pk


# Retention


def made_delivery(endpoint, days_ago, status, replay_of=None) -> WebhookDelivery:
    """A delivery made `days_ago`, with one attempt."""
    row = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_type="invoice.paid",
        message_id=services.new_message_id(),
        payload="{}",
        status=status,
        replay_of=replay_of,
    )
    made = timezone.now() - datetime.timedelta(days=days_ago)
    WebhookDelivery.objects.filter(pk=row.pk).update(created_at=made)
    WebhookAttempt.objects.create(delivery=row, status_code=204)
    return row


def test_old_sent_and_failed_deliveries_go_with_their_attempts_and_the_rest_stays(
    user, settings, monkeypatch
):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    monkeypatch.setattr(services, "PURGE_BATCH", 2)  # several batches
    endpoint, _ = make(user)
    sent, failed, queued = WebhookDelivery.Status.SENT, WebhookDelivery.Status.FAILED, "queued"

    def delivery(days_ago, status, replay_of=None):
        return made_delivery(endpoint, days_ago, status, replay_of)

    old = [delivery(31, sent), delivery(40, failed), delivery(31, sent)]
    kept = [delivery(31, queued), delivery(29, sent), delivery(1, sent, replay_of=old[0])]

    assert services.purge_old_deliveries() == 3

    remaining = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert remaining == {row.pk for row in kept}
    assert set(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == remaining
    kept[2].refresh_from_db()
    assert kept[2].replay_of is None  # the replay stays, unlinked
    assert services.purge_old_deliveries() == 0


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_with_no_recent_delivery_the_purge_takes_every_old_one_from_the_first_id(settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    endpoint, _ = make(UserFactory())
    old = [made_delivery(endpoint, 31, WebhookDelivery.Status.SENT) for _ in range(2)]
    assert old[0].pk == 1

    assert services.purge_old_deliveries() == 2
    assert not WebhookDelivery.objects.exists()


def test_the_purge_runs_daily_from_beat(settings):
    from webhooks.tasks import purge_old_webhook_deliveries

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert purge_old_webhook_deliveries.name in tasks
