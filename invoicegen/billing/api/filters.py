import django_filters
from django.db.models import Q

from invoicegen.billing.models import Invoice
from invoicegen.billing.timeline import DELIVERY_STATES
from invoicegen.core.api import TrueFalseFilter

SEARCH_MAX_LENGTH = 100


class ISODateFilter(django_filters.DateFilter):
    """A date as the schema writes it (2030-01-31), where a date filter would also take
    10/25/2030 and other locale forms."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, input_formats=["%Y-%m-%d"], **kwargs)


class InvoiceOrdering(django_filters.OrderingFilter):
    """`ordering=due_date,-total`: any of ORDERS, `-` for descending, ties newest first (a page
    boundary must not depend on the plan). `number` orders by year, then sequence, where the
    text would put INV-2026-1000 before INV-2026-999."""

    ORDERS = {
        "number": ("year", "sequence"),
        "due_date": ("due_date",),
        "created_at": ("created_at",),
        "total": ("total",),
        "client_name": ("client_name",),
        "status": ("status",),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, fields=[(name, name) for name in self.ORDERS], **kwargs)

    def filter(self, qs, value):
        if not value:
            return qs
        order = []
        for param in value:
            sign, name = ("-", param[1:]) if param.startswith("-") else ("", param)
            order += [f"{sign}{field}" for field in self.ORDERS[name]]
        return qs.order_by(*order, "-id")


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    search = django_filters.CharFilter(
        method="search_invoices",
        max_length=SEARCH_MAX_LENGTH,
        label="Part of the number, the client's name or the client's email, in any case.",
    )
    due_after = ISODateFilter(field_name="due_date", lookup_expr="gte", label="Due on or after.")
    due_before = ISODateFilter(field_name="due_date", lookup_expr="lte", label="Due on or before.")
    viewed = TrueFalseFilter(
        field_name="first_viewed_at",
        lookup_expr="isnull",
        exclude=True,
        label="Whether the client has viewed it through a link (true or false).",
    )
    delivery_status = django_filters.ChoiceFilter(
        choices=[(state, state) for state in [*DELIVERY_STATES, "none"]],
        method="filter_delivery_status",
        label="What became of the latest email to the client (`none`: never sent).",
    )
    ordering = InvoiceOrdering()

    class Meta:
        model = Invoice
        fields = []

    def search_invoices(self, queryset, name, value):
        words = Q(number__icontains=value) | Q(client_name__icontains=value)
        return queryset.filter(words | Q(client_email__icontains=value))

    def filter_delivery_status(self, queryset, name, value):
        if value == "none":
            return queryset.filter(delivery_status__isnull=True)
        return queryset.filter(delivery_status=value)

    def is_valid(self):
        """A range that ends before it starts is a mistake, not an empty list."""
        valid = super().is_valid()
        after, before = (self.form.cleaned_data.get(k) for k in ("due_after", "due_before"))
        if valid and after and before and before < after:
            self.form.add_error("due_before", "Must not be before due_after.")
            return False
        return valid
