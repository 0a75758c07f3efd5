import datetime
import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection, models
from django.db.models import Max, Min
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from audit import context as audit_context
from audit import events, export, services
from audit.models import AdminAction, AuditLog


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL, a large result is counted by the planner's estimate instead of a full
    COUNT(*), so a page of a million-row trail loads at once; small results are exact."""

    EXACT_BELOW = 10_000

    @cached_property
    def count(self):
        if connection.vendor == "postgresql":
            sql, params = self.object_list.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                estimate = cursor.fetchone()[0][0]["Plan"]["Plan Rows"]
            if estimate >= self.EXACT_BELOW:
                return estimate
        return super().count


class SpanDatesQuerySet(models.QuerySet):
    """For the admin's date hierarchy: the periods between the first and the last entry, read
    from the two ends of the created_at index, instead of a DISTINCT over every row (which on
    a million-row trail costs a full scan per page). A period may turn out empty."""

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        periods = []
        moment = _truncate(bounds["first"], kind)
        while moment <= bounds["last"]:
            periods.append(moment)
            moment = _next_period(moment, kind)
        return periods if order == "ASC" else periods[::-1]


def _truncate(moment: datetime.datetime, kind: str) -> datetime.datetime:
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("year", "month"):
        moment = moment.replace(day=1)
    if kind == "year":
        moment = moment.replace(month=1)
    return moment


def _next_period(moment: datetime.datetime, kind: str) -> datetime.datetime:
    if kind == "day":
        return moment + datetime.timedelta(days=1)
    if kind == "month":
        return (moment + datetime.timedelta(days=32)).replace(day=1)
    return moment.replace(year=moment.year + 1)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is not edited, by anyone: no add, change or delete, superusers included."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return SpanDatesQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ActionPrefixFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action_prefix"

    def lookups(self, request, model_admin):
        prefixes = sorted({name.split(".", 1)[0] for name in events.REGISTRY})
        return [(f"{prefix}.", f"{prefix}.*") for prefix in prefixes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=self.value())
        return queryset


class CategoryFilter(admin.SimpleListFilter):
    """The categories of the registry: no SELECT DISTINCT over the whole table."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(c, c) for c in sorted({event.category for event in events.REGISTRY.values()})]

    def queryset(self, request, queryset):
        return queryset.filter(category=self.value()) if self.value() else queryset


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "action", "user_email", "resource", "ip_address", "success"]
    list_display_links = ["id", "action"]
    list_filter = [ActionPrefixFilter, CategoryFilter, "success", "created_at"]
    search_fields = ["user_email"]
    search_help_text = (
        "A user's email, an IP address, a resource as type:id (invoice:42, user:7), "
        "or an action (invoice.sent)."
    )
    date_hierarchy = "created_at"
    actions = ["export_csv", "export_jsonl"]
    fields = [
        "id", "created_at", "action", "category", "description", "success", "actor",
        "resource_link", "ip_address", "user_agent", "method", "path", "request_id",
        "changes_table", "metadata_json", "digest",
    ]  # fmt: skip
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        """Exact, indexed lookups chosen by the shape of the term: never a LIKE over the
        whole trail, and never an invalid IP sent to an inet column."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if audit_context.clean_ip(term):
            return queryset.filter(ip_address=audit_context.clean_ip(term)), False
        if "@" in term:  # through the indexed actor id; a deleted user's by their former id
            users = get_user_model().objects.filter(email=term.lower()).values("pk")
            return queryset.filter(user_id__in=users), False
        resource_type, _, resource_id = term.partition(":")
        if resource_id:
            return queryset.filter(resource_type=resource_type, resource_id=resource_id), False
        return queryset.filter(action=term), False

    def lookup_allowed(self, lookup, value, request=None):
        # The detail page links to a resource's history through these.
        if lookup in ("resource_type", "resource_id", "user_id"):
            return True
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="resource")
    def resource(self, entry):
        return f"{entry.resource_type} {entry.resource_id}".strip()

    @admin.display(description="actor")
    def actor(self, entry):
        if not entry.user_id:
            return "anonymous or system"
        url = (
            reverse("admin:audit_auditlog_changelist") + "?" + urlencode({"user_id": entry.user_id})
        )
        return format_html(
            '{} (#{}) — <a href="{}">their history</a>', entry.user_email, entry.user_id, url
        )

    @admin.display(description="resource")
    def resource_link(self, entry):
        if not entry.resource_type:
            return "—"
        query = urlencode({"resource_type": entry.resource_type, "resource_id": entry.resource_id})
        url = reverse("admin:audit_auditlog_changelist") + "?" + query
        return format_html(
            '{} {} — <a href="{}">history of this resource</a>',
            entry.resource_type,
            entry.resource_id,
            url,
        )

    @admin.display(description="changes")
    def changes_table(self, entry):
        changes = (entry.metadata or {}).get("changes")
        if not changes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>→</td><td>{}</td></tr>",
            ((name, _shown(values[0]), _shown(values[1])) for name, values in changes.items()),
        )
        return format_html('<table class="audit-changes">{}</table>', rows)

    @admin.display(description="metadata")
    def metadata_json(self, entry):
        return format_html("<pre>{}</pre>", json.dumps(entry.metadata, indent=2, sort_keys=True))

    def get_urls(self):
        return [
            path(
                "cleanup/",
                self.admin_site.admin_view(self.cleanup_view),
                name="audit_auditlog_cleanup",
            ),
            *super().get_urls(),
        ]

    def has_export_permission(self, request):
        return request.user.has_perm("audit.export_auditlog")

    def _export(self, request, queryset, file_format):
        filters = {k: v for k, v in request.GET.items()}
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        lines = services.export_audit_logs(
            queryset,
            file_format=file_format,
            filters={**filters, "selected": len(selected)},
            via=AdminAction.Kind.BULK_ACTION,
        )
        response = StreamingHttpResponse(lines, content_type=export.FORMATS[file_format])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{file_format}"'
        return response

    @admin.action(description="Export selected entries as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(description="Export selected entries as JSON Lines", permissions=["export"])
    def export_jsonl(self, request, queryset):
        return self._export(request, queryset, "jsonl")

    def cleanup_view(self, request):
        """Prune entries past retention: preview how many go, then confirm."""
        if not request.user.has_perm("audit.prune_auditlog"):
            raise PermissionDenied
        form = CleanupForm(request.POST or None)
        preview = None
        if request.method == "POST" and form.is_valid():
            days = form.cleaned_data["days"]
            confirmed = "confirm" in request.POST
            try:
                result = services.cleanup_audit_logs(
                    days=days, dry_run=not confirmed, via=AdminAction.Kind.TOOL
                )
            except ValidationError as error:
                form.add_error("days", error.message_dict.get("days", error.messages))
            else:
                if confirmed:
                    self.message_user(
                        request,
                        f"Deleted {result.deleted} audit entries older than "
                        f"{result.cutoff:%Y-%m-%d %H:%M} UTC.",
                        messages.SUCCESS,
                    )
                    form = CleanupForm()
                else:
                    preview = result
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Prune the audit trail",
            "form": form,
            "preview": preview,
            "minimum_days": settings.AUDIT_MIN_RETENTION_DAYS,
        }
        return TemplateResponse(request, "admin/audit/auditlog/cleanup.html", context)


def _shown(value) -> str:
    return "—" if value is None else str(value)


class CleanupForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=36500,
        initial=lambda: settings.AUDIT_RETENTION_DAYS,
        help_text="Entries older than this many days are deleted, in whole sealed ranges.",
    )


@admin.register(AdminAction)
class AdminActionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "admin_email",
        "kind",
        "action",
        "target_type",
        "target_repr",
    ]
    list_filter = ["kind", "created_at"]
    search_fields = ["=admin_email", "=target_id"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "id", "created_at", "admin", "admin_email", "kind", "action", "target_type", "target_id",
        "target_repr", "details", "ip_address", "request_id",
    ]  # fmt: skip


class AuditedModelAdmin(admin.ModelAdmin):
    """Every add, change, delete and bulk action in the admin lands in AdminAction (Django's
    own LogEntry is kept too); the model changes themselves are in the trail via the
    receivers, named `admin.<type>_<verb>`."""

    def log_addition(self, request, obj, message):
        _record_admin_change(AdminAction.Kind.ADD, obj, "created", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        _record_admin_change(AdminAction.Kind.CHANGE, obj, "updated", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            services.record_admin_action(
                AdminAction.Kind.DELETE, action=f"admin.{_label(obj)}_deleted", target=obj
            )
        return super().log_deletions(request, queryset)

    def response_action(self, request, queryset):
        name = request.POST.get("action", "")
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        response = super().response_action(request, queryset)
        if name in self.get_actions(request):
            details = {"action_name": name, "count": len(selected), "ids": selected[:1000]}
            services.record_admin_action(
                AdminAction.Kind.BULK_ACTION, action="admin.bulk_action", details=details
            )
            services.log(
                "admin.bulk_action", target=(self.model._meta.model_name, ""), metadata=details
            )
        return response


class ServiceOnlyAdmin(AuditedModelAdmin):
    """Rows that change only through their services (a lifecycle, an outbox, a link): no add
    or delete here; actions call the services."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _label(obj) -> str:
    from audit.tracking import describe_instance

    return describe_instance(obj)[0]


def _record_admin_change(kind: str, obj, verb: str, message) -> None:
    services.record_admin_action(
        kind, action=f"admin.{_label(obj)}_{verb}", target=obj, details={"message": message}
    )
