import django_filters

from emails.delivery import normalize_address
from emails.models import EmailSuppression


class SuppressionFilter(django_filters.FilterSet):
    address = django_filters.CharFilter(method="by_address", max_length=254)
    reason = django_filters.ChoiceFilter(choices=EmailSuppression.Reason.choices)

    class Meta:
        model = EmailSuppression
        fields = ["address", "reason"]

    def by_address(self, queryset, name, value):
        return queryset.filter(address=normalize_address(value))
