import functools
import json
import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from audit import archive, export, holds, registry, retention, services, subjects
from audit import context as audit_context
from audit.models import AdminAction, AuditLog, LegalHold
from invoicegen.core.admin import ReadOnlyAdmin, ServiceOnlyAdmin

# The start of an IPv4 address with at least its first dot (10.0.), or of an IPv6 one with at
# least two groups (2001:db8:); a term with one colon is a resource (user:7).
IP_PREFIX = re.compile(r"\d{1,3}\.[\d.]*|[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:[0-9a-fA-F:]*")


class ActionPrefixFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action_prefix"

    def lookups(self, request, model_admin):
        return [(f"{prefix}.", f"{prefix}.*") for prefix in registry.prefixes()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=self.value())
        return queryset


class CategoryFilter(admin.SimpleListFilter):
    """The categories of the registry: no SELECT DISTINCT over the whole table."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(category, category) for category in registry.categories()]

    def queryset(self, request, queryset):
        return queryset.filter(category=self.value()) if self.value() else queryset


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "created_at", "action", "user_email", "resource", "origin", "ip_address", "success",
    ]  # fmt: skip
    list_display_links = ["id", "action"]
    list_filter = [ActionPrefixFilter, CategoryFilter, "origin", "success", "created_at"]
    search_fields = ["user_email"]
    search_help_text = (
        "An email, or the start of one (grace), of a resource's label such as a document "
        "number (inv-2026), in any case; an IP address (the start of one, 10.0., finds "
        "anonymous entries only); a resource as type:id (user:7); or an action (user.login)."
    )
    date_hierarchy = "created_at"
    actions = ["export_csv", "export_jsonl"]
    fields = [
        "id", "created_at", "action", "category", "description", "success", "origin", "actor",
        "resource_link", "ip_address", "user_agent", "method", "path", "request_id",
        "changes_table", "metadata_json", "digest",
    ]  # fmt: skip
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        """Lookups chosen by the shape of the term, each served by an index (audit/models.py):
        never a LIKE that must read the whole trail, and never an invalid IP sent to an inet
        column."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if audit_context.clean_ip(term):
            return queryset.filter(subjects.with_address(term)), False
        if IP_PREFIX.fullmatch(term):
            return queryset.filter(ip_address__startswith=term.lower()), False
        if registry.is_registered(term):
            return queryset.filter(action=term), False
        resource_type, colon, resource_id = term.partition(":")
        if colon:
            return queryset.filter(resource_type=resource_type, resource_id=resource_id), False
        matches = (
            Q(user_email__istartswith=term)
            | Q(resource_label__istartswith=term)
            | subjects.with_email(term)
        )
        return queryset.filter(matches), False

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
                result = retention.cleanup_audit_logs(
                    days=days,
                    dry_run=not confirmed,
                    via=AdminAction.Kind.TOOL,
                    archive_first=False,
                )
            except ValidationError as error:
                form.add_error("days", error.message_dict.get("days", error.messages))
            except archive.ArchiveError as error:
                form.add_error(None, str(error))
            else:
                if confirmed:
                    self.message_user(
                        request,
                        f"Deleted {result.deleted} audit entries older than "
                        f"{result.cutoff:%Y-%m-%d %H:%M} UTC."
                        + (f" Kept {result.held} for legal holds." if result.held else "")
                        + (
                            f" Kept {result.unarchived} until their month is archived."
                            if result.unarchived
                            else ""
                        )
                        + "".join(f" {month} left whole." for month in result.dropped),
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
    own LogEntry is kept too), named after the admin operation; the model changes themselves
    are in the trail under their domain names, with origin `admin`."""

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

    def get_actions(self, request):
        return {
            name: (_recorded(func, name), name, description)
            for name, (func, name, description) in super().get_actions(request).items()
        }


def _recorded(action, name: str):
    """The admin action, recorded once it has run: an intermediate page it answers (such as
    the confirmation of a deletion) ran nothing yet."""

    @functools.wraps(action)
    def run(modeladmin, request, queryset):
        count = queryset.count()
        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[:1000]]
        response = action(modeladmin, request, queryset)
        if not isinstance(response, TemplateResponse):
            details = {"action_name": name, "count": count, "ids": ids}
            target = (modeladmin.model._meta.model_name, "")
            services.record_admin_action(
                AdminAction.Kind.BULK_ACTION, action="admin.bulk_action", details=details
            )
            services.log("admin.bulk_action", target=target, metadata=details)
        return response

    return run


def _label(obj) -> str:
    from audit.tracking import describe_instance

    return describe_instance(obj)[0]


def _record_admin_change(kind: str, obj, verb: str, message) -> None:
    services.record_admin_action(
        kind, action=f"admin.{_label(obj)}_{verb}", target=obj, details={"message": message}
    )


class PlaceHoldForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    user_id = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    resource_type = forms.CharField(max_length=50, required=False)
    resource_id = forms.CharField(max_length=64, required=False)
    category = forms.ChoiceField(required=False)
    starts_at = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM, UTC")
    ends_at = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM, UTC")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = [("", "any")] + [(c, c) for c in registry.categories()]


class ReleaseHoldForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


@admin.register(LegalHold)
class LegalHoldAdmin(ServiceOnlyAdmin):
    """Holds are placed and released through their services (audit/holds.py), each with its
    reason; a hold is never edited or deleted."""

    list_display = ["id", "placed_at", "reason", "criteria", "placed_by_email", "released_at"]
    list_filter = [("released_at", admin.EmptyFieldListFilter)]
    readonly_fields = [field.name for field in LegalHold._meta.fields]

    @admin.display(description="holds")
    def criteria(self, hold):
        return ", ".join(f"{k}={v}" for k, v in holds.criteria_of(hold).items()) or "everything"

    def has_add_permission(self, request):
        return request.user.has_perm("audit.add_legalhold")

    def get_urls(self):
        release = self.admin_site.admin_view(self.release_view)
        return [
            path("<int:hold_id>/release/", release, name="audit_legalhold_release"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PlaceHoldForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            given = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
            try:
                hold = holds.place_legal_hold(**given, via=AdminAction.Kind.TOOL)
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                self.message_user(request, f"Legal hold #{hold.pk} placed.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:audit_legalhold_change", args=[hold.pk]))
        return self._form_page(request, form, "Place a legal hold")

    def release_view(self, request, hold_id: int):
        if not request.user.has_perm("audit.change_legalhold"):
            raise PermissionDenied
        hold = get_object_or_404(LegalHold, pk=hold_id)
        form = ReleaseHoldForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                holds.release_legal_hold(
                    hold, reason=form.cleaned_data["reason"], via=AdminAction.Kind.TOOL
                )
            except ValidationError as error:
                form.add_error(None, error.messages)
            else:
                self.message_user(request, f"Legal hold #{hold.pk} released.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:audit_legalhold_change", args=[hold.pk]))
        return self._form_page(request, form, f"Release legal hold #{hold.pk}")

    def _form_page(self, request, form, title: str):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
        }
        return TemplateResponse(request, "admin/audit/legalhold/form.html", context)
