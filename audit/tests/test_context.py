"""The request context entries are stamped with: middleware, cleaning, and Celery headers."""

import datetime
import json
import os
import pwd
import re
import sys

import pytest
from celery import signals
from celery.app.trace import build_tracer
from django.test import RequestFactory
from django.utils import timezone

from audit import context as audit_context
from audit import receivers, services
from audit import tasks as audit_tasks
from audit.tests.factories import request_context
from audit.tests.helpers import last_entry_id, only_entry
from invoicegen import celery_app
from invoicegen.billing import tasks as billing_tasks
from invoicegen.billing.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def failed_login(client, path=LOGIN, **extra):
    """A request that writes one entry (user.login_failed) and returns it with the response."""
    mark = last_entry_id()
    response = client.post(path, {"email": "who@example.com", "password": "nope"}, **extra)
    assert response.status_code == 400
    return response, only_entry(mark, "user.login_failed")


def test_the_middleware_stamps_client_agent_method_path_and_request_id(anon_client):
    response, entry = failed_login(
        anon_client,
        REMOTE_ADDR="198.51.100.20",
        HTTP_USER_AGENT="Mozilla/5.0 (X11)",
        HTTP_X_REQUEST_ID="abc-123",
    )

    assert entry.ip_address == "198.51.100.20"
    assert entry.user_agent == "Mozilla/5.0 (X11)"
    assert (entry.method, entry.path) == ("POST", LOGIN)
    assert entry.request_id == "abc-123"
    assert response["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize(
    "request_id", ["req_1.2:3-x", "0f8fad5b-d9cb-469f-a165-70867728950e", "r" * 64]
)
def test_a_well_formed_request_id_is_kept_and_echoed(anon_client, request_id):
    response, entry = failed_login(anon_client, HTTP_X_REQUEST_ID=request_id)

    assert entry.request_id == request_id
    assert response["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id", ["has space", "r" * 65, "evil\r\nX-Admin: 1", "<script>", "é"]
)
def test_a_malformed_request_id_is_replaced_by_a_generated_one(anon_client, request_id):
    response, entry = failed_login(anon_client, HTTP_X_REQUEST_ID=request_id)

    assert re.fullmatch(r"[0-9a-f]{32}", entry.request_id)
    assert response["X-Request-ID"] == entry.request_id


def test_each_request_without_an_id_gets_its_own_and_sees_it_echoed(anon_client):
    first, first_entry = failed_login(anon_client)
    second, second_entry = failed_login(anon_client)

    assert first["X-Request-ID"] == first_entry.request_id
    assert second["X-Request-ID"] == second_entry.request_id
    assert first_entry.request_id != second_entry.request_id


def test_every_response_echoes_the_request_id(anon_client):
    response = anon_client.get("/api/invoices/", HTTP_X_REQUEST_ID="trace-401")

    assert response.status_code == 401
    assert response["X-Request-ID"] == "trace-401"


def test_a_forged_forwarded_for_changes_nothing_without_trusted_proxies(anon_client, settings):
    settings.TRUSTED_PROXY_COUNT = 0

    _, entry = failed_login(
        anon_client, REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 7.7.7.7"
    )

    assert entry.ip_address == "192.0.2.1"


def test_through_one_trusted_proxy_the_right_most_forwarded_entry_is_the_client(
    anon_client, settings
):
    settings.TRUSTED_PROXY_COUNT = 1

    _, entry = failed_login(
        anon_client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.23"
    )

    assert entry.ip_address == "198.51.100.23"


def test_through_one_trusted_proxy_without_the_header_the_peer_is_the_client(anon_client, settings):
    settings.TRUSTED_PROXY_COUNT = 1

    _, entry = failed_login(anon_client, REMOTE_ADDR="198.51.100.30")

    assert entry.ip_address == "198.51.100.30"


def test_cr_lf_cannot_forge_lines_in_stored_values(anon_client):
    _, entry = failed_login(
        anon_client,
        HTTP_USER_AGENT="curl\r\n2026-01-01 admin@example.com logged in\x00\u2028",
        QUERY_STRING="next=/x\r\nforged: line\x1b[31m",
    )

    for value in (entry.user_agent, entry.path, entry.description):
        assert not CONTROL_CHARACTERS.search(value)
        assert "\u2028" not in value
    assert entry.user_agent.startswith("curl  2026-01-01 admin@example.com logged in")


def test_a_crlf_in_the_attempted_username_cannot_forge_lines(client):
    """The admin's login form takes any text as the username (no email validation)."""
    mark = last_entry_id()

    client.post("/admin/login/", {"username": "a@b.c\r\nuser.login ok", "password": "x"})

    entry = only_entry(mark, "user.login_failed")
    assert entry.metadata["attempted_email"] == "a@b.c  user.login ok"
    assert not CONTROL_CHARACTERS.search(entry.description + entry.resource_id)


def test_user_agent_and_path_are_bounded(anon_client):
    _, entry = failed_login(anon_client, HTTP_USER_AGENT="A" * 5000, QUERY_STRING="q=" + "p" * 5000)

    assert entry.user_agent == "A" * 512
    assert entry.path.startswith(f"{LOGIN}?q=ppp")
    assert len(entry.path) == 512


def test_credentials_in_the_query_string_are_redacted(anon_client):
    _, entry = failed_login(
        anon_client, path=f"{LOGIN}?token=s3cr3t-T0KEN&page=2&uid=MTIz&password=hunter2"
    )

    assert entry.path == (f"{LOGIN}?token=[redacted]&page=2&uid=[redacted]&password=[redacted]")


def test_download_tokens_in_paths_are_redacted():
    request = RequestFactory().get("/downloads/Zm9vYmFyLXNlY3JldC10b2tlbg/?token=abc")

    entry = services.log(
        "download.succeeded", context=audit_context.from_request(request, origin="web")
    )

    assert entry.path == "/downloads/[redacted]/?token=[redacted]"


def test_the_request_context_ends_with_the_request(anon_client):
    failed_login(anon_client, REMOTE_ADDR="198.51.100.20", HTTP_X_REQUEST_ID="over-now")

    assert audit_context.current() == audit_context.AuditContext()
    entry = services.log("invoice.sent", target=("invoice", 1))
    assert (entry.ip_address, entry.request_id, entry.path) == (None, "", "")


def test_the_context_names_the_user_authenticated_after_the_middleware_ran(user):
    """The middleware runs before DRF authenticates a token: the actor is read from the live
    request afterwards."""
    request = RequestFactory().get("/api/invoices/")
    context = audit_context.from_request(request, origin="api")
    request.user = user

    assert context.actor() == (user.pk, user.email)
    assert context.to_headers()["user_id"] == user.pk


# Celery: the context travels in the task headers.


def test_publishing_a_task_puts_the_current_context_in_its_headers(user):
    published = []

    def keep(headers=None, **kwargs):  # connected after the trail's: sees what it added
        published.append(headers)

    celery_app.conf.task_always_eager = False  # published, not run (autouse turns it back)
    signals.before_task_publish.connect(keep, weak=False)
    try:
        with (
            celery_app.connection_for_write("memory://") as connection,
            audit_context.bind(request_context(user_id=user.pk, user_email=user.email)),
        ):
            audit_tasks.seal_audit_log.apply_async(connection=connection)
    finally:
        signals.before_task_publish.disconnect(keep)

    [headers] = published
    carried = json.loads(json.dumps(headers["audit_context"]))  # the broker's serializer
    assert carried["user_id"] == user.pk
    assert carried["user_email"] == user.email
    assert carried["ip_address"] == "203.0.113.10"
    assert carried["request_id"] == "req-factory"
    assert carried["path"] == "/api/invoices/"
    assert "request" not in carried


def test_a_task_run_binds_the_context_from_its_headers_and_unbinds_it_after(user):
    headers = {}
    with audit_context.bind(request_context(user_id=user.pk, user_email=user.email)):
        receivers.add_context_header(headers=headers)
    task = audit_tasks.seal_audit_log
    task.push_request(id="task-2", **headers)
    try:
        receivers.bind_task_context(task_id="task-2", task=task)
        during = audit_context.current()
        receivers.unbind_task_context(task_id="task-2")
    finally:
        task.pop_request()

    assert during.origin == "task"
    assert during.actor() == (user.pk, user.email)
    assert (during.ip_address, during.request_id) == ("203.0.113.10", "req-factory")
    assert audit_context.current() == audit_context.AuditContext()


def test_a_worker_records_entries_with_the_context_of_whoever_queued_the_task(user):
    """Runs the task through Celery's own tracer, as a worker does (prerun and postrun
    signals included), with the headers the publisher added."""
    SubscriptionFactory(
        current_period_start=timezone.now() - datetime.timedelta(days=40),
        current_period_end=timezone.now() - datetime.timedelta(days=10),
    )
    headers = {}
    with audit_context.bind(request_context(user_id=user.pk, user_email=user.email)):
        receivers.add_context_header(headers=headers)
    task = billing_tasks.expire_subscriptions
    trace = build_tracer(task.name, task, app=celery_app, propagate=True)
    mark = last_entry_id()

    trace("task-3", (), {}, {"id": "task-3", **json.loads(json.dumps(headers))})

    entry = only_entry(mark, "subscription.expired")
    assert (entry.user_id, entry.ip_address) == (user.pk, "203.0.113.10")
    assert (entry.path, entry.request_id) == ("/api/invoices/", "req-factory")
    assert audit_context.current() == audit_context.AuditContext()


def test_an_eager_task_run_inside_a_request_keeps_its_context(staff):
    mark = last_entry_id()

    with audit_context.bind(request_context(user_id=staff.pk, user_email=staff.email)):
        audit_tasks.cleanup_audit_logs.delay()

    entry = only_entry(mark, "admin.audit_cleanup")
    assert (entry.user_id, entry.ip_address) == (staff.pk, "203.0.113.10")
    assert entry.request_id == "req-factory"


def test_a_management_command_is_the_context_outside_requests(monkeypatch):
    monkeypatch.setattr("sys.argv", ["manage.py", "cleanup_audit_logs", "--days", "400"])

    context = audit_context._process_context()

    assert (context.origin, context.path) == ("command", "manage.py cleanup_audit_logs")
    assert context.user_agent.startswith("manage.py (os user ")


def test_outside_a_command_the_context_is_the_system(monkeypatch):
    monkeypatch.setattr("sys.argv", ["celery", "worker"])

    assert audit_context._process_context() == audit_context.AuditContext()


def test_a_command_run_by_a_user_without_a_passwd_entry_names_its_uid(monkeypatch):
    """A container run with an arbitrary UID: no passwd entry, no LOGNAME or USER."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    monkeypatch.setattr(sys, "argv", ["manage.py", "seal_audit_log"])

    context = audit_context._process_context()

    assert context.origin == "command"
    assert context.user_agent == f"manage.py (os user uid {os.getuid()})"
