"""What reaches the trail: auth events, changes of the tracked models (receivers and bulk
writes), from every path, in the caller's transaction."""

import datetime
import io
import json
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.forms.models import model_to_dict
from django.template import Context, Template
from django.utils import timezone

from audit import piggyback, tracking
from audit.models import AuditLog
from audit.services import REDACTED
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import actions_after, entries_after, last_entry_id, only_entry, run_sql
from invoicegen.accounts import services as accounts
from invoicegen.accounts.models import User
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.accounts.tokens import email_verification_token, encode_uid, password_reset_token
from invoicegen.billing import services as billing
from invoicegen.billing import tasks as billing_tasks
from invoicegen.billing.models import Invoice, InvoiceItem, Payment, Subscription
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    SubscriptionFactory,
    finalized_invoice,
    invoice_in_status,
)

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-Passphrase-42"
CLIENT_IP = "203.0.113.7"
USER_AGENT = "InvoiceSPA/2.0 (pytest)"
REQUEST_ID = "req-7f3a-0001"
FROM_CLIENT = {
    "REMOTE_ADDR": CLIENT_IP,
    "HTTP_USER_AGENT": USER_AGENT,
    "HTTP_X_REQUEST_ID": REQUEST_ID,
}
INVOICE_DATA = {
    "client_name": "Acme",
    "client_email": "billing@acme.test",
    "due_date": "2030-01-31",
    "items": [{"description": "Work", "quantity": "2", "unit_price": "50.00"}],
}


def entry_text(entry: AuditLog) -> str:
    """Everything an entry stores, as one string to search for leaked secrets."""
    return json.dumps(model_to_dict(entry), default=str)


def assert_request_context(entry, *, user, path, method="POST"):
    assert entry.user_id == (user.pk if user else None)
    assert entry.user_email == (user.email if user else "")
    assert entry.ip_address == CLIENT_IP
    assert entry.user_agent == USER_AGENT
    assert entry.method == method
    assert entry.path == path
    assert entry.request_id == REQUEST_ID


def assert_resource(entry, resource_type, resource_id):
    assert (entry.resource_type, entry.resource_id) == (resource_type, str(resource_id))


# One test per audited action of API.md, done through the API.


def test_signup_through_the_api_records_one_user_signup(anon_client):
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/signup/",
        {"email": "new@example.com", "password": PASSWORD, "name": "New"},
        **FROM_CLIENT,
    )

    assert response.status_code == 201
    user = User.objects.get(email="new@example.com")
    entry = only_entry(mark, "user.signup")
    assert_request_context(entry, user=user, path="/api/auth/signup/")
    assert_resource(entry, "user", user.pk)
    assert entry.metadata["changes"]["password"] == [None, REDACTED]
    assert user.password not in entry_text(entry)
    assert actions_after(mark) == ["user.signup"]


def test_login_through_the_api_records_one_user_login(anon_client, user):
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/login/", {"email": user.email, "password": PASSWORD}, **FROM_CLIENT
    )

    assert response.status_code == 200
    entry = only_entry(mark, "user.login")
    assert_request_context(entry, user=user, path="/api/auth/login/")
    assert_resource(entry, "user", user.pk)
    assert actions_after(mark) == ["user.login"]


def test_failed_login_records_the_attempted_email_and_never_the_password(anon_client, user):
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/login/",
        {"email": user.email.upper(), "password": "Wrong-Guess-123"},
        **FROM_CLIENT,
    )

    assert response.status_code == 400
    entry = only_entry(mark, "user.login_failed")
    assert_request_context(entry, user=None, path="/api/auth/login/")
    assert entry.success is False
    assert entry.metadata == {"attempted_email": user.email}
    assert user.email in entry.description
    assert "Wrong-Guess-123" not in entry_text(entry)


def test_logout_through_the_api_records_one_user_logout(api, user):
    mark = last_entry_id()

    response = api.post("/api/auth/logout/", **FROM_CLIENT)

    assert response.status_code == 204
    entry = only_entry(mark, "user.logout")
    assert_request_context(entry, user=user, path="/api/auth/logout/")
    assert actions_after(mark) == ["user.logout"]


def test_password_change_records_one_entry_with_the_password_redacted(api, user):
    mark = last_entry_id()

    response = api.post(
        "/api/auth/password/change/",
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        **FROM_CLIENT,
    )

    assert response.status_code == 204
    entry = only_entry(mark, "user.password_changed")
    assert_request_context(entry, user=user, path="/api/auth/password/change/")
    assert entry.metadata["changes"] == {"password": [REDACTED, REDACTED]}
    user.refresh_from_db()
    assert user.password not in entry_text(entry)
    assert NEW_PASSWORD not in entry_text(entry)
    assert actions_after(mark) == ["user.password_changed"]


def test_password_reset_request_records_one_entry_for_the_account(anon_client, user):
    mark = last_entry_id()

    response = anon_client.post("/api/auth/password/reset/", {"email": user.email}, **FROM_CLIENT)

    assert response.status_code == 202
    entry = only_entry(mark, "user.password_reset_requested")
    assert_request_context(entry, user=user, path="/api/auth/password/reset/")
    assert_resource(entry, "user", user.pk)
    assert actions_after(mark) == ["user.password_reset_requested"]


def test_password_reset_request_for_an_unknown_email_is_recorded_as_unsuccessful(anon_client):
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/password/reset/", {"email": "nobody@example.com"}, **FROM_CLIENT
    )

    assert response.status_code == 202
    entry = only_entry(mark, "user.password_reset_requested")
    assert_request_context(entry, user=None, path="/api/auth/password/reset/")
    assert entry.success is False
    assert entry.metadata["requested_email"] == "nobody@example.com"


def test_password_reset_by_link_records_one_user_password_reset(anon_client, user):
    link = {"uid": encode_uid(user), "token": password_reset_token.make_token(user)}
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/password/reset/confirm/",
        {**link, "new_password": NEW_PASSWORD},
        **FROM_CLIENT,
    )

    assert response.status_code == 204
    entry = only_entry(mark, "user.password_reset")
    assert_request_context(entry, user=user, path="/api/auth/password/reset/confirm/")
    assert entry.metadata["changes"] == {"password": [REDACTED, REDACTED]}
    assert link["token"] not in entry_text(entry)
    assert actions_after(mark) == ["user.password_reset"]


def test_email_verification_records_one_user_email_verified(anon_client):
    user = UserFactory(email_verified=False)
    link = {"uid": encode_uid(user), "token": email_verification_token.make_token(user)}
    mark = last_entry_id()

    response = anon_client.post("/api/auth/verify-email/", link, **FROM_CLIENT)

    assert response.status_code == 204
    entry = only_entry(mark, "user.email_verified")
    assert_request_context(entry, user=user, path="/api/auth/verify-email/")
    assert entry.metadata["changes"] == {"email_verified": [False, True]}
    assert actions_after(mark) == ["user.email_verified"]


def test_profile_update_records_one_user_profile_updated(api, user):
    old_name = user.name
    mark = last_entry_id()

    response = api.patch("/api/auth/me/", {"name": "Ada Lovelace"}, **FROM_CLIENT)

    assert response.status_code == 200
    entry = only_entry(mark, "user.profile_updated")
    assert_request_context(entry, user=user, path="/api/auth/me/", method="PATCH")
    assert entry.metadata["changes"] == {"name": [old_name, "Ada Lovelace"]}
    assert actions_after(mark) == ["user.profile_updated"]


def test_invoice_creation_records_one_invoice_created(api, user):
    mark = last_entry_id()

    response = api.post("/api/invoices/", INVOICE_DATA, **FROM_CLIENT)

    assert response.status_code == 201
    entry = only_entry(mark, "invoice.created")
    assert_request_context(entry, user=user, path="/api/invoices/")
    assert_resource(entry, "invoice", response.data["id"])
    assert entry.metadata["changes"]["client_name"] == [None, "Acme"]
    assert actions_after(mark) == ["invoice.created", "invoice_item.created"]


def test_draft_update_records_one_invoice_updated(api, user):
    invoice = InvoiceFactory(user=user, client_name="Acme")
    mark = last_entry_id()

    response = api.patch(f"/api/invoices/{invoice.pk}/", {"client_name": "Globex"}, **FROM_CLIENT)

    assert response.status_code == 200
    entry = only_entry(mark, "invoice.updated")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/", method="PATCH")
    assert_resource(entry, "invoice", invoice.pk)
    assert entry.metadata["changes"]["client_name"] == ["Acme", "Globex"]
    assert actions_after(mark) == ["invoice.updated"]


def test_finalizing_records_one_invoice_finalized(api, user):
    invoice = InvoiceFactory(user=user)
    mark = last_entry_id()

    response = api.post(f"/api/invoices/{invoice.pk}/finalize/", **FROM_CLIENT)

    assert response.status_code == 200
    entry = only_entry(mark, "invoice.finalized")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/finalize/")
    assert_resource(entry, "invoice", invoice.pk)
    assert entry.metadata["changes"]["status"] == ["draft", "finalized"]
    assert actions_after(mark) == ["invoice.finalized"]


def test_sending_records_one_invoice_sent(api, user):
    invoice = finalized_invoice(user=user)
    mark = last_entry_id()

    response = api.post(f"/api/invoices/{invoice.pk}/send/", {}, **FROM_CLIENT)

    assert response.status_code == 202
    entry = only_entry(mark, "invoice.sent")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/send/")
    assert_resource(entry, "invoice", invoice.pk)
    assert actions_after(mark, resource_type="invoice") == ["invoice.sent"]


def test_paying_in_full_records_one_invoice_paid(api, user):
    invoice = invoice_in_status("sent", user=user)
    mark = last_entry_id()

    response = api.post(
        f"/api/invoices/{invoice.pk}/payments/",
        {"amount": str(invoice.total), "method": "card"},
        **FROM_CLIENT,
    )

    assert response.status_code == 201
    entry = only_entry(mark, "invoice.paid")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/payments/")
    assert_resource(entry, "invoice", invoice.pk)
    assert entry.metadata["changes"]["status"] == ["sent", "paid"]
    assert actions_after(mark) == ["payment.processed", "invoice.paid"]


def test_a_payment_records_one_payment_processed(api, user):
    invoice = invoice_in_status("sent", user=user)
    mark = last_entry_id()

    response = api.post(
        f"/api/invoices/{invoice.pk}/payments/",
        {"amount": "10.00", "method": "bank_transfer"},
        **FROM_CLIENT,
    )

    assert response.status_code == 201
    entry = only_entry(mark, "payment.processed")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/payments/")
    assert_resource(entry, "payment", response.data["id"])
    assert entry.metadata["changes"]["amount"] == [None, "10.00"]
    assert "invoice.paid" not in actions_after(mark)


def test_a_refused_payment_records_payment_failed_although_the_request_fails(api, user):
    invoice = invoice_in_status("sent", user=user)
    mark = last_entry_id()

    response = api.post(
        f"/api/invoices/{invoice.pk}/payments/",
        {"amount": str(invoice.total + 1), "method": "card"},
        **FROM_CLIENT,
    )

    assert response.status_code == 400
    entry = only_entry(mark, "payment.failed")
    assert_request_context(entry, user=user, path=f"/api/invoices/{invoice.pk}/payments/")
    assert_resource(entry, "invoice", invoice.pk)
    assert entry.success is False
    assert "balance due" in entry.metadata["reason"]
    assert actions_after(mark) == ["payment.failed"]
    assert not Payment.objects.filter(invoice=invoice).exists()


def test_subscribing_records_one_subscription_activated(api, user):
    mark = last_entry_id()

    response = api.post("/api/subscription/", {"plan": "pro"}, **FROM_CLIENT)

    assert response.status_code == 201
    entry = only_entry(mark, "subscription.activated")
    assert_request_context(entry, user=user, path="/api/subscription/")
    assert_resource(entry, "subscription", user.subscription.pk)
    assert actions_after(mark) == ["subscription.activated"]


def test_cancelling_records_one_subscription_cancelled(api, user):
    subscription = SubscriptionFactory(user=user)
    mark = last_entry_id()

    response = api.post("/api/subscription/cancel/", **FROM_CLIENT)

    assert response.status_code == 200
    entry = only_entry(mark, "subscription.cancelled")
    assert_request_context(entry, user=user, path="/api/subscription/cancel/")
    assert_resource(entry, "subscription", subscription.pk)
    assert actions_after(mark) == ["subscription.cancelled"]


def test_renewing_records_one_subscription_renewed(api, user):
    subscription = SubscriptionFactory(user=user)
    mark = last_entry_id()

    response = api.post("/api/subscription/renew/", **FROM_CLIENT)

    assert response.status_code == 200
    entry = only_entry(mark, "subscription.renewed")
    assert_request_context(entry, user=user, path="/api/subscription/renew/")
    assert_resource(entry, "subscription", subscription.pk)
    assert actions_after(mark) == ["subscription.renewed"]


# Model changes heard by the receivers (registry in audit/tracking.py)


def test_saving_an_unchanged_instance_records_nothing():
    invoice = InvoiceFactory()
    user = invoice.user
    mark = last_entry_id()

    Invoice.objects.get(pk=invoice.pk).save(update_fields=["client_name"])
    User.objects.get(pk=user.pk).save()

    assert actions_after(mark) == []


def test_a_change_of_bookkeeping_fields_alone_records_nothing():
    invoice = InvoiceFactory()
    user = invoice.user
    mark = last_entry_id()

    invoice.save(update_fields=["updated_at"])
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])

    assert actions_after(mark) == []


@pytest.mark.parametrize(
    ("status", "change", "action"),
    [
        ("draft", billing.finalize_invoice, "invoice.finalized"),
        ("finalized", billing.send_invoice, "invoice.sent"),
        ("finalized", billing.void_invoice, "invoice.voided"),
        (
            "sent",
            lambda invoice: billing.record_payment(invoice, amount=invoice.total, method="cash"),
            "invoice.paid",
        ),
    ],
)
def test_invoice_transitions_are_recorded_once_as_their_semantic_action(status, change, action):
    invoice = invoice_in_status(status)
    mark = last_entry_id()

    change(invoice)

    assert actions_after(mark, resource_type="invoice", resource_id=str(invoice.pk)) == [action]


def test_resending_a_sent_invoice_records_invoice_sent_again():
    """POST send/ on a sent invoice sends it again: that is an `invoice.sent`, not an edit."""
    invoice = invoice_in_status("sent")
    mark = last_entry_id()

    billing.send_invoice(invoice)

    assert actions_after(mark, resource_type="invoice") == ["invoice.sent"]


@pytest.mark.parametrize(
    ("change", "action"),
    [
        (billing.cancel_subscription, "subscription.cancelled"),
        (billing.renew_subscription, "subscription.renewed"),
        (
            lambda subscription: billing.expire_subscriptions(now=subscription.current_period_end),
            "subscription.expired",
        ),
    ],
)
def test_subscription_transitions_are_recorded_once_as_their_semantic_action(change, action):
    subscription = SubscriptionFactory()
    mark = last_entry_id()

    change(subscription)

    assert actions_after(mark, resource_type="subscription") == [action]


def test_reactivating_a_cancelled_subscription_records_subscription_activated():
    subscription = billing.cancel_subscription(SubscriptionFactory())
    mark = last_entry_id()

    billing.activate_subscription(subscription.user, plan="business")

    entry = only_entry(mark, "subscription.activated")
    assert entry.metadata["changes"]["plan"] == ["pro", "business"]
    assert actions_after(mark) == ["subscription.activated"]


def test_a_password_change_is_recorded_with_both_values_redacted():
    """Saved outside the accounts service (a shell, the admin): its plain name."""
    user = UserFactory()
    mark = last_entry_id()

    user.set_password(NEW_PASSWORD)
    user.save()

    entry = only_entry(mark, "user.updated")
    assert entry.metadata["changes"] == {"password": [REDACTED, REDACTED]}
    assert user.password not in entry_text(entry)


def test_a_created_entry_lists_the_values_with_the_password_redacted():
    mark = last_entry_id()

    user = UserFactory(email="created@example.com")

    entry = only_entry(mark, "user.created")
    assert entry.metadata["changes"]["email"] == [None, "created@example.com"]
    assert entry.metadata["changes"]["password"] == [None, REDACTED]
    assert user.password not in entry_text(entry)


def test_deleting_a_tracked_instance_records_one_deleted_entry():
    invoice = InvoiceFactory()
    item = invoice.items.first()
    item_id = item.pk
    mark = last_entry_id()

    item.delete()

    entry = only_entry(mark, "invoice_item.deleted")
    assert_resource(entry, "invoice_item", item_id)
    assert actions_after(mark) == ["invoice_item.deleted"]


def test_saving_an_instance_whose_row_is_gone_records_only_its_recreation():
    """Django's save() finds no row to UPDATE and INSERTs it again: nothing was updated."""
    item = InvoiceFactory().items.first()
    InvoiceItem.objects.filter(pk=item.pk).delete()
    mark = last_entry_id()

    item.description = "Changed"
    item.save()

    assert actions_after(mark) == ["invoice_item.created"]


@pytest.mark.parametrize("update_fields", [None, ["client_name", "updated_at"]])
def test_on_postgresql_a_saved_change_and_its_entry_are_one_statement(
    update_fields, django_assert_num_queries
):
    if connection.vendor != "postgresql":
        pytest.skip("the entry rides with the UPDATE on PostgreSQL alone")
    invoice = Invoice.objects.get(pk=InvoiceFactory(client_name="Old").pk)
    mark = last_entry_id()

    for name in ("New", "Newer"):  # the second's old values: what the first saved
        invoice.client_name = name
        with django_assert_num_queries(1) as queries:
            invoice.save(update_fields=update_fields)
        assert queries.captured_queries[0]["sql"].startswith(
            'WITH audit_change AS (UPDATE "billing_invoice" SET '
        )

    changes = [entry.metadata["changes"]["client_name"] for entry in entries_after(mark)]
    assert changes == [["Old", "New"], ["New", "Newer"]]


def test_a_statement_other_than_the_saves_update_runs_as_it_is():
    if connection.vendor != "postgresql":
        pytest.skip("the entry rides with the UPDATE on PostgreSQL alone")
    invoice = Invoice.objects.get(pk=InvoiceFactory().pk)
    invoice.client_name = "Renamed"
    piggyback.expect(invoice, None, using="default")
    ran = []

    def execute(*statement):
        ran.append(statement)
        return "its answer"

    statement = ("SELECT 1", [invoice.pk], False, {})
    assert piggyback.attach_entry(execute, *statement) == "its answer"
    assert ran == [statement]
    piggyback.written(invoice)  # the expectation ends, as the save's post_save ends it


def test_a_change_saved_in_a_service_after_one_saved_alone_is_recorded_too():
    invoice = Invoice.objects.get(pk=InvoiceFactory(client_name="Old").pk)
    mark = last_entry_id()
    invoice.client_name = "Alone"
    invoice.save()

    def rename():
        invoice.client_name = "In a service"
        invoice.save()

    tracking.service_transaction(rename)()

    changes = [entry.metadata["changes"]["client_name"] for entry in entries_after(mark)]
    assert changes == [["Old", "Alone"], ["Alone", "In a service"]]


def test_a_loaded_instance_saved_as_a_copy_records_its_creation_alone():
    """Django's copy idiom: pk set to None, and the save is an INSERT, with which no entry may
    travel, nor with a later statement about the copy."""
    item = InvoiceItem.objects.get(pk=InvoiceFactory().items.first().pk)
    mark = last_entry_id()
    item.pk = None
    item.description = "Copy"
    item.save()
    item.description = "Changed, not saved"
    InvoiceItem.objects.filter(pk=item.pk).update(position=7)

    assert actions_after(mark) == ["invoice_item.created", "invoice_item.updated"]
    assert only_entry(mark, "invoice_item.updated").metadata["changes"] == {"position": [0, 7]}


@pytest.mark.parametrize(
    "names, entries",
    [
        (("First", "Last"), [("invoice.updated", ["Old", "Last"])]),
        (("Other", "Old"), []),  # back where it was: only updated_at changed, a quiet field
    ],
)
def test_two_changes_of_an_instance_in_a_service_are_one_from_first_to_last_value(names, entries):
    invoice = Invoice.objects.get(pk=InvoiceFactory(client_name="Old").pk)
    mark = last_entry_id()

    def rename_twice():
        for name in names:
            invoice.client_name = name
            invoice.save()

    tracking.service_transaction(rename_twice)()

    recorded = entries_after(mark)
    assert [(e.action, e.metadata["changes"]["client_name"]) for e in recorded] == entries


def test_an_entry_stays_readable_after_its_actor_is_deleted():
    user = UserFactory(email="leaver@example.com")
    user_id = user.pk
    entry = AuditLogFactory(context=request_context(user_id=user_id, user_email=user.email))

    user.delete()

    entry.refresh_from_db()
    assert (entry.user_id, entry.user_email) == (user_id, "leaver@example.com")
    assert "leaver@example.com" in entry.description


# Bulk writes, which send no signals, are captured one entry per changed row.


def test_queryset_update_records_one_entry_per_changed_row():
    changed = [InvoiceFactory(client_name="Acme"), InvoiceFactory(client_name="Acme")]
    unchanged = InvoiceFactory(client_name="Globex")
    mark = last_entry_id()

    count = Invoice.objects.filter(pk__in=[i.pk for i in [*changed, unchanged]]).update(
        client_name="Globex"
    )

    assert count == 3
    entries = list(entries_after(mark))
    assert [e.action for e in entries] == ["invoice.updated", "invoice.updated"]
    assert sorted(e.resource_id for e in entries) == sorted(str(i.pk) for i in changed)
    assert all(e.metadata["changes"] == {"client_name": ["Acme", "Globex"]} for e in entries)


def many_invoice_items(count: int) -> list[InvoiceItem]:
    """`count` items of one invoice, written without capture (as a fixture)."""
    invoice = InvoiceFactory()
    price = Decimal("1.00")
    return models.QuerySet(InvoiceItem).bulk_create(
        InvoiceItem(
            invoice=invoice, description=f"Line {n}", quantity=1, unit_price=price, amount=price
        )
        for n in range(count)
    )


def test_queryset_update_of_a_thousand_rows_is_set_based(django_assert_max_num_queries):
    """The old values in one read, the update, every entry in one INSERT: no query per row."""
    many_invoice_items(1000)
    mark = last_entry_id()

    with django_assert_max_num_queries(3):
        InvoiceItem.objects.filter(description__startswith="Line").update(description="Reworded")

    entries = list(entries_after(mark))
    assert len(entries) == 1000
    assert {e.action for e in entries} == {"invoice_item.updated"}
    assert entries[0].metadata["changes"]["description"][1] == "Reworded"


def test_a_bulk_updates_entries_are_described_without_a_query_per_row(
    django_assert_max_num_queries,
):
    """The rows of a bulk update are stand-ins holding the updated fields and the label, read
    with the old values: never a read of each row."""
    invoices = [InvoiceFactory(), InvoiceFactory()]
    mark = last_entry_id()

    with django_assert_max_num_queries(3):
        Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(client_name="Initech")

    assert sorted((e.description, e.resource_label) for e in entries_after(mark)) == sorted(
        (f"anonymous updated invoice {invoice.number}", invoice.number) for invoice in invoices
    )


def test_an_expression_update_reads_the_new_values_once(django_assert_max_num_queries):
    many_invoice_items(200)
    mark = last_entry_id()

    with django_assert_max_num_queries(4):
        InvoiceItem.objects.filter(description__startswith="Line").update(
            quantity=F("quantity") + 1
        )

    entries = list(entries_after(mark))
    assert len(entries) == 200
    assert {str(e.metadata["changes"]["quantity"][1]) for e in entries} == {"2.00"}


def test_bulk_update_and_bulk_create_are_set_based(django_assert_max_num_queries):
    items = many_invoice_items(500)
    for item in items:
        item.description = f"{item.description} (revised)"
    mark = last_entry_id()

    with django_assert_max_num_queries(4):  # read, update, INSERT of entries (+ SQLite's batches)
        InvoiceItem.objects.bulk_update(items[:300], ["description"])
    # SQLite writes 300 rows in two statements (its limit of bound values)
    with django_assert_max_num_queries(2 if connection.vendor == "postgresql" else 3):
        InvoiceItem.objects.bulk_create(
            InvoiceItem(
                invoice=items[0].invoice, description="New", quantity=1, unit_price=1, amount=1
            )
            for _ in range(300)
        )

    actions = [e.action for e in entries_after(mark)]
    assert actions.count("invoice_item.updated") == 300
    assert actions.count("invoice_item.created") == 300


def test_a_status_changed_outside_the_lifecycle_is_an_update_naming_the_change():
    """Only the service says what happened (a void also checks payments and revokes links): a
    bare status update is recorded as the change it is."""
    invoices = [InvoiceFactory(), InvoiceFactory()]
    mark = last_entry_id()

    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(status=Invoice.Status.VOID)

    entries = list(entries_after(mark))
    assert [e.action for e in entries] == ["invoice.updated", "invoice.updated"]
    assert all(e.metadata["changes"] == {"status": ["draft", "void"]} for e in entries)


def test_queryset_update_of_a_password_is_redacted():
    user = UserFactory()
    mark = last_entry_id()

    User.objects.filter(pk=user.pk).update(password="md5$stolen$0123456789abcdef")

    entry = only_entry(mark, "user.updated")
    assert entry.metadata["changes"] == {"password": [REDACTED, REDACTED]}
    assert "stolen" not in entry_text(entry)


def test_bulk_update_records_one_entry_per_changed_row():
    first, second, untouched = InvoiceFactory(), InvoiceFactory(), InvoiceFactory()
    first.client_name, second.client_name = "Initech", "Umbrella"
    mark = last_entry_id()

    assert Invoice.objects.bulk_update([first, second, untouched], ["client_name"]) == 3
    Invoice.objects.filter(pk=untouched.pk).update(client_name="Later")  # captured as ever

    entries = list(entries_after(mark))
    assert sorted(
        (e.action, e.resource_id, e.metadata["changes"]["client_name"][1]) for e in entries
    ) == [
        ("invoice.updated", str(first.pk), "Initech"),
        ("invoice.updated", str(second.pk), "Umbrella"),
        ("invoice.updated", str(untouched.pk), "Later"),
    ]


def test_a_template_given_a_queryset_never_runs_its_update():
    """Django marks update() alters_data: a template reads it as empty instead of calling it."""
    InvoiceFactory()
    invoices = Invoice.objects.all()
    assert Template("[{{ invoices.update }}]").render(Context({"invoices": invoices})) == "[]"


def test_bulk_create_records_one_entry_per_row():
    invoice = InvoiceFactory()
    price = Decimal("1.00")
    rows = [
        InvoiceItem(
            invoice=invoice, description=f"Extra {n}", quantity=1, unit_price=price, amount=price
        )
        for n in range(3)
    ]
    mark = last_entry_id()

    created = InvoiceItem.objects.bulk_create(rows)

    entries = list(entries_after(mark))
    assert [e.action for e in entries] == ["invoice_item.created"] * 3
    assert [e.resource_id for e in entries] == [str(row.pk) for row in created]
    assert entries[0].metadata["changes"]["description"] == [None, "Extra 0"]


# Every path: request, shell, Celery task, management command


def test_a_change_made_from_a_shell_is_recorded_without_request_context():
    invoice = InvoiceFactory()
    mark = last_entry_id()

    billing.finalize_invoice(invoice)

    entry = only_entry(mark, "invoice.finalized")
    assert (entry.user_id, entry.ip_address, entry.path, entry.request_id) == (None, None, "", "")


def test_a_change_made_by_a_celery_task_is_recorded():
    subscription = SubscriptionFactory(
        current_period_start=timezone.now() - datetime.timedelta(days=40),
        current_period_end=timezone.now() - datetime.timedelta(days=10),
    )
    mark = last_entry_id()

    billing_tasks.expire_subscriptions.delay()

    entry = only_entry(mark, "subscription.expired")
    assert_resource(entry, "subscription", subscription.pk)


def test_a_change_made_by_a_management_command_is_recorded(settings):
    settings.DEBUG = True
    mark = last_entry_id()

    call_command("ensure_dev_superuser", stdout=io.StringIO())

    admin = User.objects.get(email="admin@localhost")
    entry = only_entry(mark, "user.created")
    assert_resource(entry, "user", admin.pk)
    assert entry.metadata["changes"]["is_superuser"] == [None, True]


# In the caller's transaction


@contextmanager
def audit_inserts_refused():
    """The database refuses every AuditLog insert, as a full disk or a broken index would."""
    if connection.vendor == "postgresql":
        run_sql(
            "CREATE FUNCTION test_refuse_audit_insert() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'audit insert refused'; END $$;",
            "CREATE TRIGGER test_refuse_audit_insert BEFORE INSERT ON audit_auditlog "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_audit_insert();",
        )
        undo = [
            "DROP TRIGGER test_refuse_audit_insert ON audit_auditlog;",
            "DROP FUNCTION test_refuse_audit_insert();",
        ]
    else:
        run_sql(
            "CREATE TRIGGER test_refuse_audit_insert BEFORE INSERT ON audit_auditlog "
            "BEGIN SELECT RAISE(ABORT, 'audit insert refused'); END;"
        )
        undo = ["DROP TRIGGER test_refuse_audit_insert;"]
    try:
        with pytest.raises(DatabaseError, match="audit insert refused"):
            yield
    finally:
        run_sql(*undo)


def test_a_failed_audit_insert_rolls_the_invoice_change_back():
    invoice = InvoiceFactory()

    with audit_inserts_refused():
        billing.finalize_invoice(invoice)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT
    assert invoice.finalized_at is None


def test_a_failed_audit_insert_rolls_the_profile_change_back():
    user = UserFactory(name="Before")

    with audit_inserts_refused():
        accounts.update_profile(user, name="After")

    assert User.objects.get(pk=user.pk).name == "Before"


def test_a_failed_audit_insert_rolls_a_cancellation_back():
    subscription = SubscriptionFactory()

    with audit_inserts_refused():
        billing.cancel_subscription(subscription)

    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


def test_a_failed_audit_insert_rolls_a_bulk_update_back():
    invoice = InvoiceFactory(client_name="Acme")

    with audit_inserts_refused(), transaction.atomic():  # the caller's transaction
        Invoice.objects.filter(pk=invoice.pk).update(client_name="Globex")

    invoice.refresh_from_db()
    assert invoice.client_name == "Acme"


def test_values_read_again_are_the_old_values_of_the_next_save():
    """refresh_from_db(): another writer's change is not counted as this save's."""
    invoice = Invoice.objects.get(pk=InvoiceFactory(client_name="Acme").pk)
    Invoice.objects.filter(pk=invoice.pk).update(client_name="Globex")
    invoice.refresh_from_db(fields=["client_name"])
    mark = last_entry_id()

    invoice.currency = "EUR"
    invoice.save()

    entry = only_entry(mark, "invoice.updated")
    assert set(entry.metadata["changes"]) - {"updated_at"} == {"currency"}


def test_a_loaded_instance_keeps_its_values_without_a_per_row_snapshot():
    from django.db.models import signals

    invoice = InvoiceFactory()

    assert not signals.post_init.has_listeners(Invoice)
    assert (
        tracking.old_values(Invoice.objects.get(pk=invoice.pk))["client_name"]
        == invoice.client_name
    )


# The resource's label, which the admin's search finds entries by


def test_a_saved_change_records_its_resources_label():
    user = UserFactory(email="grace@example.com")
    mark = last_entry_id()

    user.name = "Grace"
    user.save()

    assert only_entry(mark, "user.updated").resource_label == "grace@example.com"
