from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAdminUser

from audit.api.views import NewestFirstCursor
from emails import delivery
from emails.api import serializers
from emails.api.filters import SuppressionFilter
from emails.models import EmailSuppression


@extend_schema_view(
    list=extend_schema(operation_id="listSuppressions"),
    destroy=extend_schema(operation_id="deleteSuppression"),
)
class SuppressionViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Staff: the addresses no email goes to, newest first (`?address=`, `?reason=`); DELETE
    lets emails go to one again (audited)."""

    queryset = EmailSuppression.objects.all()
    serializer_class = serializers.SuppressionSerializer
    filterset_class = SuppressionFilter
    permission_classes = [IsAdminUser]
    pagination_class = NewestFirstCursor
    lookup_value_regex = "[0-9]+"  # ASCII digits (\d takes every script's)

    def perform_destroy(self, instance):
        delivery.remove_suppression(instance, actor=self.request.user)
