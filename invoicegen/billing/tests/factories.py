import datetime
from decimal import Decimal

import factory

from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services


class InvoiceFactory(factory.Factory):
    """Invoices come from the service, so numbers and totals are the real ones."""

    class Meta:
        model = dict

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
