import re

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, pagination, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.response import Response

from audit import export, holds, registry, retention, services, subjects
from audit.api import serializers
from audit.api.filters import AuditLogFilter
from audit.models import AdminAction, AuditLog, LegalHold
from invoicegen.core.api import MAX_ID, BoundedPageSize
from invoicegen.core.schema import CONFLICT, NOT_FOUND

ID = re.compile("[0-9]+")


class NewestFirstCursor(BoundedPageSize, pagination.CursorPagination):
    """Keyset pages by id: a page 10,000 deep costs what the first does, and no COUNT."""

    ordering = "-id"

    def decode_cursor(self, request):
        """A position that is not an id is a cursor this API did not make: DRF's 404 for an
        invalid cursor, where filtering ids by it would raise a ValueError (a 500)."""
        cursor = super().decode_cursor(request)
        if cursor and cursor.position is not None and not ID.fullmatch(cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor


class StaffOnly(viewsets.GenericViewSet):
    permission_classes = [IsAdminUser]
    pagination_class = NewestFirstCursor


class AuditLogViewSet(mixins.ListModelMixin, StaffOnly):
    """The trail, newest first, with the filters of AuditLogFilter; read-only."""

    queryset = AuditLog.objects.all()
    serializer_class = serializers.AuditLogSerializer
    filterset_class = AuditLogFilter
    operation_id = None  # the list's, by the path it is routed on (urls.py)
    query_parameters = ()  # the export's format, beside the filters (urls.py)

    def get_queryset(self):
        queryset = super().get_queryset()
        kwargs = self.kwargs
        if "user_id" in kwargs:
            if not 0 < int(kwargs["user_id"]) <= MAX_ID:  # an id no user can have
                raise NotFound("No user has this id.")
            queryset = queryset.filter(user_id=kwargs["user_id"])
        if "resource_type" in kwargs:
            queryset = queryset.filter(
                resource_type=kwargs["resource_type"], resource_id=kwargs["resource_id"]
            )
        return queryset

    @extend_schema(
        operation_id="listSecurityEvents", responses=serializers.AuditLogSerializer(many=True)
    )
    def security_events(self, request):
        queryset = self.filter_queryset(self.get_queryset()).filter(
            action__in=registry.security_actions()
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="exportAuditLogs",
        parameters=[OpenApiParameter("format", enum=list(export.FORMATS), default="csv")],
        filters=True,
        responses={
            (200, media_type.split(";")[0]): OpenApiTypes.STR  # text: CSV or JSON lines
            for media_type in export.FORMATS.values()
        },
    )
    def export(self, request):
        query = serializers.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        file_format = query.validated_data["format"]
        queryset = self.filter_queryset(self.get_queryset())
        # The filters applied (validated by now), not whatever else the query carried.
        known = self.filterset_class.base_filters
        filters = {k: v for k, v in request.query_params.items() if k in known}
        lines = services.export_audit_logs(
            queryset, file_format=file_format, filters=filters, via=AdminAction.Kind.API
        )
        response = StreamingHttpResponse(lines, content_type=export.FORMATS[file_format])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{file_format}"'
        return response

    @extend_schema(
        operation_id="cleanupAuditLogs",
        parameters=[serializers.CleanupQuerySerializer],
        responses={200: serializers.CleanupResultSerializer, 409: CONFLICT},
        description="Removes what is past retention in the months archived already (the beat "
        "archives ended months nightly). 409: a month's archive does not verify, or a legal "
        "hold placed meanwhile keeps an entry.",
    )
    def cleanup(self, request):
        query = serializers.CleanupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = retention.cleanup_audit_logs(
            **query.validated_data, via=AdminAction.Kind.API, archive_first=False
        )
        return Response(serializers.CleanupResultSerializer(result).data)

    @extend_schema(
        operation_id="verifyAuditLogs",
        parameters=[serializers.VerifyQuerySerializer],
        responses={200: serializers.VerificationSerializer},
    )
    def verify(self, request):
        query = serializers.VerifyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = services.check_audit_log(since=query.validated_data.get("since") or None)
        return Response(serializers.VerificationSerializer(result).data)


@extend_schema_view(list=extend_schema(operation_id="listAdminActions"))
class AdminActionViewSet(mixins.ListModelMixin, StaffOnly):
    queryset = AdminAction.objects.all()
    serializer_class = serializers.AdminActionSerializer


class MayHold(BasePermission):
    """Staff read holds; placing one takes `audit.add_legalhold`, releasing
    `audit.change_legalhold`."""

    needs = {"create": "audit.add_legalhold", "release": "audit.change_legalhold"}

    def has_permission(self, request, view):
        needed = self.needs.get(view.action)
        return needed is None or request.user.has_perm(needed)


@extend_schema_view(
    list=extend_schema(operation_id="listLegalHolds"),
    retrieve=extend_schema(operation_id="getLegalHold"),
)
class LegalHoldViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffOnly):
    """Legal holds, newest first: the entries they match are never deleted or erased."""

    queryset = LegalHold.objects.all()
    serializer_class = serializers.LegalHoldSerializer
    permission_classes = [IsAdminUser, MayHold]

    @extend_schema(
        operation_id="placeLegalHold",
        request=serializers.PlaceLegalHoldSerializer,
        responses={201: serializers.LegalHoldSerializer},
    )
    def create(self, request):
        given = serializers.PlaceLegalHoldSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        hold = holds.place_legal_hold(**given.validated_data, via=AdminAction.Kind.API)
        return Response(self.get_serializer(hold).data, status=201)

    @extend_schema(
        operation_id="releaseLegalHold",
        request=serializers.ReleaseLegalHoldSerializer,
        responses={200: serializers.LegalHoldSerializer},
    )
    def release(self, request, pk=None):
        given = serializers.ReleaseLegalHoldSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        hold = holds.release_legal_hold(
            self.get_object(), reason=given.validated_data["reason"], via=AdminAction.Kind.API
        )
        return Response(self.get_serializer(hold).data)


class MayErase(BasePermission):
    """Erasing takes `audit.erase_subject`."""

    def has_permission(self, request, view):
        return view.action != "erase" or request.user.has_perm("audit.erase_subject")


class SubjectViewSet(StaffOnly):
    """The people the trail holds data about."""

    permission_classes = [IsAdminUser, MayErase]
    serializer_class = serializers.EraseSubjectSerializer

    @extend_schema(
        operation_id="eraseSubject",
        request=serializers.EraseSubjectSerializer,
        responses={200: serializers.ErasureSerializer, 404: NOT_FOUND, 409: CONFLICT},
        description="Destroys the keys the user's data in the audit trail is sealed under: "
        "their entries then show [erased], and the trail and its archives still verify. "
        "Takes `audit.erase_subject`. 404: an id past any user's. 409: a legal hold keeps "
        "some of their entries.",
    )
    def erase(self, request, user_id):
        if int(user_id) > MAX_ID:
            raise NotFound("No user has this id.")
        given = self.get_serializer(data=request.data)
        given.is_valid(raise_exception=True)
        erasure = subjects.erase_subject(
            int(user_id), basis=given.validated_data["basis"], via=AdminAction.Kind.API
        )
        return Response(serializers.ErasureSerializer(erasure).data)
