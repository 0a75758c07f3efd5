import contextlib
import datetime
import itertools
import random
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection
from django.utils import timezone

from audit.tests.helpers import actions_after, last_entry_id
from downloads import services as downloads
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.models import Invoice, InvoiceSequence, Payment, Subscription
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    SubscriptionFactory,
    finalized_invoice,
    invoice_in_status,
    this_years_number,
)
from invoicegen.core.exceptions import ConflictError

pytestmark = pytest.mark.django_db

UTC = datetime.UTC


def item(description="Work", quantity="1", unit_price="10.00"):
    return {
        "description": description,
        "quantity": Decimal(quantity),
        "unit_price": Decimal(unit_price),
    }


# Invoices: numbering and totals


def test_create_invoice_numbers_each_users_invoices_from_001():
    alice, bob = UserFactory(), UserFactory()

    numbers = [InvoiceFactory(user=alice).number, InvoiceFactory(user=alice).number]
    bobs_first = InvoiceFactory(user=bob)

    assert numbers == [this_years_number(1), this_years_number(2)]
    assert bobs_first.number == this_years_number(1)


def test_create_invoice_does_not_continue_another_years_counter():
    user = UserFactory()
    last_year = timezone.localdate().year - 1
    InvoiceSequence.objects.create(user=user, year=last_year, last_value=41)

    invoice = InvoiceFactory(user=user)

    assert (invoice.year, invoice.sequence, invoice.number) == (
        timezone.localdate().year,
        1,
        this_years_number(1),
    )


def test_failed_invoice_creation_does_not_use_up_a_number():
    user = UserFactory()
    with pytest.raises((IntegrityError, ValidationError)):
        InvoiceFactory(user=user, items=[item(quantity="0")])

    assert InvoiceFactory(user=user).number == this_years_number(1)
    assert Invoice.objects.filter(user=user).count() == 1


def test_create_invoice_totals_its_lines_each_rounded_half_up_to_cents():
    invoice = InvoiceFactory(
        items=[
            item("Half cent rounds up", quantity="0.50", unit_price="0.97"),  # 0.485
            item("Exact", quantity="3", unit_price="19.99"),  # 59.97
            item("Free", quantity="1", unit_price="0"),
        ]
    )

    amounts = list(invoice.items.values_list("description", "amount"))
    assert amounts == [
        ("Half cent rounds up", Decimal("0.49")),
        ("Exact", Decimal("59.97")),
        ("Free", Decimal("0.00")),
    ]
    assert invoice.total == Decimal("60.46")
    assert invoice.status == Invoice.Status.DRAFT
    assert invoice.amount_paid == Decimal("0.00")


@pytest.mark.parametrize(
    ("currency", "unit_price", "tax_total", "total"),
    [
        ("USD", "10.50", "2.00", "12.50"),  # 19% of 10.50 is 1.995: a half cent, up
        ("JPY", "1050", "200.00", "1250.00"),  # 199.5 yen, up to a whole yen
    ],
)
def test_the_tax_is_the_rate_of_the_subtotal_rounded_half_up_to_the_currencys_unit(
    currency, unit_price, tax_total, total
):
    invoice = InvoiceFactory(
        currency=currency, tax_rate=Decimal("19.00"), items=[item(unit_price=unit_price)]
    )
    invoice.refresh_from_db()

    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal(unit_price),
        Decimal(tax_total),
        Decimal(total),
    )


def test_the_largest_total_is_999_999_999_999_99_and_a_cent_more_is_refused():
    """What the amount columns hold (14 digits, 2 of them cents), written out: a limit moved
    by a cent either way, or a comparison loosened, fails here."""
    largest = [item(quantity="100", unit_price="9999999999.99"), item(unit_price="0.99")]

    invoice = InvoiceFactory(items=largest)
    invoice.refresh_from_db()
    assert invoice.total == Decimal("999999999999.99")

    with pytest.raises(ValidationError) as refused:
        InvoiceFactory(items=[*largest, item(unit_price="0.01")])
    assert refused.value.message_dict == {
        "items": ["The invoice total cannot exceed 999999999999.99."]
    }


def test_invoices_near_the_largest_amounts_are_stored_to_the_cent():
    """SQLite adds decimals as floating point: its check of total = subtotal + tax missed a
    quarter of these sums by a fraction of a cent, and the invoice was refused with a 500."""
    rnd = random.Random(7)
    cases = [
        (Decimal(rnd.randint(1, 100000)) / 100, Decimal(rnd.randint(10**9, 10**12 - 1)) / 100)
        for _ in range(400)
    ]
    rates = [Decimal(rnd.randint(0, 10000)) / 100 for _ in cases]
    cases = [
        (quantity, price, rate)
        for (quantity, price), rate in zip(cases, rates, strict=True)
        if quantity * price * (1 + rate / 100) < services.MAX_AMOUNT
    ]
    assert len(cases) > 40

    for quantity, price, rate in cases:
        invoice = InvoiceFactory(
            items=[item(quantity=str(quantity), unit_price=str(price))], tax_rate=rate
        )
        invoice.refresh_from_db()
        assert invoice.total == invoice.subtotal + invoice.tax_total


@pytest.mark.django_db(transaction=True)
def test_concurrent_invoice_creation_numbers_are_gap_free_and_unique(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks; SQLite serialises every writer anyway")
    user = UserFactory()
    threads_count, per_thread = 6, 4

    race(lambda: InvoiceFactory.create_batch(per_thread, user=user), threads_count)

    numbers = sorted(Invoice.objects.filter(user=user).values_list("number", flat=True))
    assert numbers == [this_years_number(n) for n in range(1, threads_count * per_thread + 1)]


@pytest.mark.django_db(transaction=True)
def test_drafts_deleted_while_others_are_created_leave_the_numbers_gap_free(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks; SQLite serialises every writer anyway")
    user = UserFactory()
    drafts, turns = iter(InvoiceFactory.create_batch(12, user=user)), itertools.count()

    def create_or_delete():
        if next(turns) % 2:
            return InvoiceFactory(user=user)
        return services.delete_draft_invoice(next(drafts))

    race(create_or_delete, 12)

    numbers = sorted(Invoice.objects.filter(user=user).values_list("number", flat=True))
    assert numbers == [this_years_number(n) for n in range(1, 13)]
    assert InvoiceSequence.objects.get(user=user).last_value == 12


# Invoices: the state machine


def test_update_invoice_replaces_items_and_recomputes_total():
    invoice = InvoiceFactory(client_name="Old Name")

    updated = services.update_invoice(
        invoice, client_name="New Name", items=[item("Only line", quantity="4", unit_price="2.50")]
    )

    updated.refresh_from_db()
    assert updated.client_name == "New Name"
    assert list(updated.items.values_list("description", flat=True)) == ["Only line"]
    assert updated.total == Decimal("10.00")


def test_update_invoice_without_items_keeps_them():
    invoice = InvoiceFactory()

    services.update_invoice(invoice, client_name="Renamed")

    invoice.refresh_from_db()
    assert invoice.items.count() == 2
    assert invoice.total == Decimal("349.99")


@pytest.mark.parametrize("status", ["finalized", "sent", "paid", "void"])
def test_update_invoice_refuses_other_statuses(status):
    invoice = invoice_in_status(status, client_name="Kept")

    with pytest.raises(ConflictError):
        services.update_invoice(invoice, client_name="Changed")

    invoice.refresh_from_db()
    assert invoice.client_name == "Kept"


def test_finalize_invoice_stamps_finalized_at():
    invoice = services.finalize_invoice(InvoiceFactory())

    assert invoice.status == Invoice.Status.FINALIZED
    assert invoice.finalized_at is not None


def test_finalize_invoice_refuses_an_invoice_without_items():
    invoice = InvoiceFactory(items=[])

    with pytest.raises(ValidationError) as error:
        services.finalize_invoice(invoice)

    assert "items" in error.value.message_dict
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT


@pytest.mark.parametrize("status", ["finalized", "sent", "paid", "void"])
def test_finalize_invoice_refuses_anything_but_a_draft(status):
    invoice = invoice_in_status(status)

    with pytest.raises(ConflictError):
        services.finalize_invoice(invoice)


def test_send_invoice_can_send_again():
    invoice = services.send_invoice(finalized_invoice())

    invoice = services.send_invoice(invoice, to="someone@example.com")

    assert invoice.status == Invoice.Status.SENT
    assert invoice.sent_at is not None


@pytest.mark.parametrize("status", ["draft", "paid", "void"])
def test_send_invoice_refuses_unfinalized_paid_and_void(status):
    invoice = invoice_in_status(status)

    with pytest.raises(ConflictError):
        services.send_invoice(invoice)

    invoice.refresh_from_db()
    assert invoice.status == status


@pytest.mark.parametrize("status", ["finalized", "sent"])
def test_void_invoice_voids_an_unpaid_invoice(status):
    invoice = services.void_invoice(invoice_in_status(status))

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID


def test_void_invoice_refuses_an_invoice_with_payments():
    invoice = invoice_in_status("sent")
    services.record_payment(invoice, amount=Decimal("1.00"), method="cash")

    with pytest.raises(ConflictError):
        services.void_invoice(invoice)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT


@pytest.mark.parametrize("status", ["draft", "paid", "void"])
def test_void_invoice_refuses_drafts_paid_and_void(status):
    with pytest.raises(ConflictError):
        services.void_invoice(invoice_in_status(status))


# Payments


def test_record_payment_turns_the_invoice_paid_when_payments_reach_the_total():
    invoice = invoice_in_status("sent")  # total 349.99

    services.record_payment(invoice, amount=Decimal("300.00"), method="bank_transfer")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.balance_due) == (
        Invoice.Status.SENT,
        Decimal("300.00"),
        Decimal("49.99"),
    )

    services.record_payment(invoice, amount=Decimal("49.99"), method="card")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.amount_paid == invoice.total
    assert invoice.paid_at is not None


def test_record_payment_accepts_a_finalized_invoice_not_yet_sent():
    invoice = finalized_invoice()

    payment = services.record_payment(invoice, amount=Decimal("10.00"), method="cash")

    assert payment.invoice_id == invoice.pk
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("10.00")


def test_record_payment_refuses_more_than_the_balance_due():
    invoice = invoice_in_status("sent")
    services.record_payment(invoice, amount=Decimal("300.00"), method="cash")

    with pytest.raises(ValidationError) as error:
        services.record_payment(invoice, amount=Decimal("50.00"), method="cash")

    assert "amount" in error.value.message_dict
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("300.00")
    assert Payment.objects.filter(invoice=invoice).count() == 1


@pytest.mark.parametrize("status", ["draft", "paid", "void"])
def test_record_payment_refuses_drafts_paid_and_void_invoices(status):
    invoice = invoice_in_status(status)
    payments_before = invoice.payments.count()

    with pytest.raises(ConflictError):
        services.record_payment(invoice, amount=Decimal("1.00"), method="cash")

    assert invoice.payments.count() == payments_before


# Subscriptions


@pytest.mark.parametrize(
    ("day", "same_day_next_month"),
    [
        ((2023, 1, 31), (2023, 2, 28)),
        ((2024, 1, 31), (2024, 2, 29)),
        ((2024, 3, 31), (2024, 4, 30)),
        ((2024, 8, 31), (2024, 9, 30)),
        ((2024, 11, 30), (2024, 12, 30)),
        ((2024, 12, 15), (2025, 1, 15)),
        ((2024, 12, 31), (2025, 1, 31)),
        ((2024, 6, 10), (2024, 7, 10)),
    ],
)
def test_add_month_keeps_the_day_or_takes_the_months_last_day(day, same_day_next_month):
    moment = datetime.datetime(*day, 23, 59, 30, 123, tzinfo=UTC)

    assert services.add_month(moment) == datetime.datetime(
        *same_day_next_month, 23, 59, 30, 123, tzinfo=UTC
    )


def test_activate_subscription_starts_a_one_month_period():
    before = timezone.now()

    subscription = services.activate_subscription(UserFactory(), plan="pro")

    assert (subscription.plan, subscription.status) == ("pro", Subscription.Status.ACTIVE)
    assert before <= subscription.current_period_start <= timezone.now()
    assert subscription.current_period_end == services.add_month(subscription.current_period_start)


def test_activate_subscription_refuses_while_active():
    subscription = SubscriptionFactory(plan="pro")

    with pytest.raises(ConflictError):
        services.activate_subscription(subscription.user, plan="business")

    subscription.refresh_from_db()
    assert subscription.plan == "pro"


@pytest.mark.parametrize("status", ["cancelled", "expired"])
def test_activate_subscription_restarts_a_cancelled_or_expired_one(status):
    subscription = SubscriptionFactory(plan="pro", status=status, cancelled_at=timezone.now())

    restarted = services.activate_subscription(subscription.user, plan="business")

    assert restarted.pk == subscription.pk
    assert (restarted.plan, restarted.status, restarted.cancelled_at) == (
        "business",
        Subscription.Status.ACTIVE,
        None,
    )


def test_cancel_subscription_keeps_the_paid_period():
    subscription = SubscriptionFactory()

    cancelled = services.cancel_subscription(subscription)

    assert cancelled.status == Subscription.Status.CANCELLED
    assert cancelled.cancelled_at is not None
    assert cancelled.current_period_end == subscription.current_period_end


@pytest.mark.parametrize("status", ["cancelled", "expired"])
def test_cancel_subscription_refuses_one_that_is_not_active(status):
    subscription = SubscriptionFactory(status=status)

    with pytest.raises(ConflictError):
        services.cancel_subscription(subscription)

    subscription.refresh_from_db()
    assert subscription.status == status


def test_renew_subscription_adds_a_month_after_the_current_period():
    start = datetime.datetime(2099, 1, 1, 12, 0, tzinfo=UTC)
    end = datetime.datetime(2099, 1, 31, 12, 0, tzinfo=UTC)
    subscription = SubscriptionFactory(current_period_start=start, current_period_end=end)

    services.renew_subscription(subscription)
    renewed = Subscription.objects.get(pk=subscription.pk)  # as stored

    assert renewed.current_period_start == start
    assert renewed.current_period_end == datetime.datetime(2099, 2, 28, 12, 0, tzinfo=UTC)


def test_renew_subscription_restarts_a_lapsed_period_from_now():
    lapsed_end = timezone.now() - datetime.timedelta(days=3)
    subscription = SubscriptionFactory(
        status=Subscription.Status.EXPIRED,
        current_period_start=lapsed_end - datetime.timedelta(days=30),
        current_period_end=lapsed_end,
    )
    before = timezone.now()

    services.renew_subscription(subscription)
    renewed = Subscription.objects.get(pk=subscription.pk)  # as stored

    assert renewed.status == Subscription.Status.ACTIVE
    assert before <= renewed.current_period_start <= timezone.now()
    assert renewed.current_period_end == services.add_month(renewed.current_period_start)


def test_renew_subscription_reactivates_a_cancelled_one():
    subscription = SubscriptionFactory(
        status=Subscription.Status.CANCELLED, cancelled_at=timezone.now()
    )

    services.renew_subscription(subscription)
    renewed = Subscription.objects.get(pk=subscription.pk)  # as stored

    assert (renewed.status, renewed.cancelled_at) == (Subscription.Status.ACTIVE, None)


# How the client met the invoice: views and downloads through its links (downloads/)


def client_link(invoice):
    return downloads.issue_download_token("invoice", invoice.pk, created_by=invoice.user)


def test_a_counted_view_of_any_link_counts_on_the_invoice_and_the_first_is_dated():
    invoice = finalized_invoice()
    (first_link, _), (second_link, _) = client_link(invoice), client_link(invoice)
    before = timezone.now()

    downloads.record_view(first_link)
    first_viewed_at = Invoice.objects.get(pk=invoice.pk).first_viewed_at
    downloads.record_view(second_link)

    invoice.refresh_from_db()
    assert invoice.view_count == 2
    assert invoice.first_viewed_at == first_viewed_at
    assert before <= first_viewed_at <= timezone.now()
    assert invoice.download_count == 0


def test_a_view_within_the_half_hour_of_the_links_last_counts_nothing_on_the_invoice():
    invoice = finalized_invoice()
    link, _ = client_link(invoice)

    assert downloads.record_view(link) is not None
    assert downloads.record_view(link) is None

    assert Invoice.objects.get(pk=invoice.pk).view_count == 1


def test_granted_downloads_count_on_the_invoice_and_refused_ones_do_not():
    invoice = finalized_invoice()
    _, raw = downloads.issue_download_token(
        "invoice", invoice.pk, created_by=invoice.user, max_downloads=2
    )

    for _ in range(3):
        with contextlib.suppress(downloads.DownloadDenied):
            downloads.redeem_token(raw)

    invoice.refresh_from_db()
    assert (invoice.download_count, invoice.view_count, invoice.first_viewed_at) == (2, 0, None)


def test_counting_views_and_downloads_changes_no_edit_time_and_audits_no_edit():
    invoice = finalized_invoice()
    link, raw = client_link(invoice)
    mark = last_entry_id()

    downloads.record_view(link)
    downloads.redeem_token(raw)

    assert actions_after(mark) == ["download.viewed", "download.succeeded"]
    assert Invoice.objects.get(pk=invoice.pk).updated_at == invoice.updated_at
