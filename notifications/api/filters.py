import django_filters

from invoicegen.core.api import TrueFalseFilter
from notifications.models import Notification


class NotificationFilter(django_filters.FilterSet):
    is_read = TrueFalseFilter(field_name="read_at", lookup_expr="isnull", exclude=True)
    type = django_filters.ChoiceFilter(choices=Notification.Type.choices)

    class Meta:
        model = Notification
        fields = []
