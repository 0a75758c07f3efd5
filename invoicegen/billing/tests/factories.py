import datetime
from decimal import Decimal

import factory
from django.utils import timezone

from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.models import Invoice, InvoiceReminder, Payment, Subscription


class InvoiceFactory(factory.django.DjangoModelFactory):
    """Invoices come from the service, so numbers, totals and lines are the real ones."""

    class Meta:
        model = Invoice

    user = factory.SubFactory(UserFactory)
    client_name = factory.Faker("company")
    client_email = factory.Faker("company_email")
    currency = "USD"
    due_date = factory.LazyFunction(lambda: datetime.date.today() + datetime.timedelta(days=30))
    items = factory.LazyFunction(
        lambda: [
            {
                "description": "Consulting",
                "quantity": Decimal("2"),
                "unit_price": Decimal("150.00"),
            },
            {"description": "Hosting", "quantity": Decimal("1"), "unit_price": Decimal("49.99")},
        ]
    )

    @classmethod
    def _create(cls, model_class, user, **fields):
        return services.create_invoice(user, **fields)


def finalized_invoice(**fields):
    return services.finalize_invoice(InvoiceFactory(**fields))


def invoice_in_status(status: str, **fields):
    """An invoice brought to `status` through the lifecycle services, as a client would."""
    invoice = InvoiceFactory(**fields)
    if status == Invoice.Status.VOID:
        return services.void_invoice(services.finalize_invoice(invoice))
    if status == Invoice.Status.DRAFT:
        return invoice
    invoice = services.finalize_invoice(invoice)
    if status == Invoice.Status.FINALIZED:
        return invoice
    invoice = services.send_invoice(invoice)
    if status == Invoice.Status.SENT:
        return invoice
    services.record_payment(invoice, amount=invoice.total, method=Payment.Method.CARD)
    invoice.refresh_from_db()
    return invoice


class InvoiceReminderFactory(factory.django.DjangoModelFactory):
    """A step done, as remind_invoice writes it, without waiting for the step's day."""

    class Meta:
        model = InvoiceReminder

    invoice = factory.LazyFunction(lambda: invoice_in_status(Invoice.Status.SENT))
    days = 7
    outcome = InvoiceReminder.Outcome.SENT


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """A subscription with a chosen period, for states the services only reach as time passes
    (a period that has already ended)."""

    class Meta:
        model = Subscription

    user = factory.SubFactory(UserFactory)
    plan = Subscription.Plan.PRO
    status = Subscription.Status.ACTIVE
    current_period_start = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(days=1))
    current_period_end = factory.LazyAttribute(
        lambda subscription: services.add_month(subscription.current_period_start)
    )


def this_years_number(sequence: int) -> str:
    """The number the `sequence`-th invoice of a user gets this year."""
    return f"INV-{timezone.localdate().year}-{sequence:03d}"
