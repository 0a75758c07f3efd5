import django_filters
from django.core.validators import validate_ipv46_address
from drf_spectacular.utils import extend_schema_field

from audit.models import AuditLog, Origin
from invoicegen.core.api import IdFilter, TrueFalseFilter, UTCDateTimeFilter

IP_ADDRESS = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}


class AuditLogFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(
        method="filter_action", help_text="An exact action, or a prefix ending in '.'"
    )
    user = IdFilter(field_name="user__id")
    resource_type = django_filters.CharFilter(max_length=50)
    resource_id = django_filters.CharFilter(max_length=64)
    success = TrueFalseFilter()
    origin = django_filters.ChoiceFilter(choices=Origin.choices)
    ip = extend_schema_field(IP_ADDRESS)(
        # Not stripped: a value of spaces would otherwise be taken as no filter.
        django_filters.CharFilter(
            field_name="ip_address", validators=[validate_ipv46_address], strip=False
        )
    )
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = []

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
