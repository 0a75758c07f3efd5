from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, pagination, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response

from audit import events, export, services
from audit.api import serializers
from audit.api.filters import AuditLogFilter
from audit.models import AdminAction, AuditLog


class NewestFirstCursor(pagination.CursorPagination):
    """Keyset pages by id: a page 10,000 deep costs what the first does, and no COUNT."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class StaffOnly(viewsets.GenericViewSet):
    permission_classes = [IsAdminUser]
    pagination_class = NewestFirstCursor


class AuditLogViewSet(mixins.ListModelMixin, StaffOnly):
    """The trail, newest first, with the filters of AuditLogFilter; read-only."""

    queryset = AuditLog.objects.all()
    serializer_class = serializers.AuditLogSerializer
    filterset_class = AuditLogFilter

    def get_queryset(self):
        queryset = super().get_queryset()
        kwargs = self.kwargs
        if "user_id" in kwargs:
            queryset = queryset.filter(user_id=kwargs["user_id"])
        if "resource_type" in kwargs:
            queryset = queryset.filter(
                resource_type=kwargs["resource_type"], resource_id=kwargs["resource_id"]
            )
        return queryset

    @extend_schema(responses=serializers.AuditLogSerializer(many=True))
    def security_events(self, request):
        queryset = self.filter_queryset(self.get_queryset()).filter(
            action__in=events.security_actions()
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", enum=list(export.FORMATS), default="csv")],
        responses={(200, "text/csv"): OpenApiTypes.BINARY},
    )
    def export(self, request):
        query = serializers.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        file_format = query.validated_data["format"]
        queryset = self.filter_queryset(self.get_queryset())
        filters = {k: v for k, v in request.query_params.items() if k != "format"}
        lines = services.export_audit_logs(
            queryset, file_format=file_format, filters=filters, via=AdminAction.Kind.API
        )
        response = StreamingHttpResponse(lines, content_type=export.FORMATS[file_format])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{file_format}"'
        return response

    @extend_schema(
        parameters=[serializers.CleanupQuerySerializer],
        responses=serializers.CleanupResultSerializer,
    )
    def cleanup(self, request):
        query = serializers.CleanupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = services.cleanup_audit_logs(**query.validated_data, via=AdminAction.Kind.API)
        return Response(serializers.CleanupResultSerializer(result).data)

    @extend_schema(responses=serializers.VerificationSerializer)
    def verify(self, request):
        return Response(serializers.VerificationSerializer(services.check_audit_log()).data)


class AdminActionViewSet(mixins.ListModelMixin, StaffOnly):
    queryset = AdminAction.objects.all()
    serializer_class = serializers.AdminActionSerializer
