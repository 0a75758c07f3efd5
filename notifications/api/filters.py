import django_filters

from invoicegen.core.api import TrueFalseFilter
from notifications import types
from notifications.models import Notification


class NotificationFilter(django_filters.FilterSet):
    is_read = TrueFalseFilter(field_name="read_at", lookup_expr="isnull", exclude=True)
    # The types the apps registered in their ready(), which runs before any URLconf loads.
    type = django_filters.ChoiceFilter(choices=types.choices())

    class Meta:
        model = Notification
        fields = []
