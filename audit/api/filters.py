import django_filters
from django.core.validators import validate_ipv46_address

from audit.models import AuditLog
from invoicegen.api import TrueFalseFilter


class AuditLogFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(
        method="filter_action", help_text="An exact action, or a prefix ending in '.'"
    )
    user = django_filters.NumberFilter(field_name="user_id", min_value=1)
    resource_type = django_filters.CharFilter(max_length=50)
    resource_id = django_filters.CharFilter(max_length=64)
    success = TrueFalseFilter()
    ip = django_filters.CharFilter(field_name="ip_address", validators=[validate_ipv46_address])
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = []

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
