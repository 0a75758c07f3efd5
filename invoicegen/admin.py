"""The admin site: Django's, with its login protected as the API's is. The same throttles per
client IP and per attempted account apply to its POSTs, and a locked-out account is told so.
Staff also get a dashboard of the backbone's activity per day, linked from the index."""

import math

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path

from audit import services as audit_services
from audit.models import Archive
from invoicegen.accounts import services
from invoicegen.accounts.throttles import login_wait
from invoicegen.core.exceptions import LockedOut
from invoicegen.dashboard.activity import daily_activity
from invoicegen.dashboard.charts import dashboard_charts


class AdminLoginForm(AdminAuthenticationForm):
    def get_invalid_login_error(self):
        """authenticate() refused the credentials: lock the email out if this failure reaches
        the threshold, and while a lockout is in force say so rather than blame the password."""
        ends = services.lock_out_if_due(email=self.cleaned_data["username"])
        if ends is None:
            return super().get_invalid_login_error()
        locked = LockedOut(until=ends)
        return ValidationError(
            f"{locked} Try again in %(minutes)s minute(s).",
            code="locked_out",
            params={"minutes": math.ceil(locked.seconds_left() / 60)},
        )


# The dashboard counts what these pages show row by row: staff who may not read them may not
# read their totals either (failed logins, email volumes).
DASHBOARD_PERMISSIONS = [
    "audit.view_auditlog",
    "emails.view_emaillog",
    "downloads.view_securedownloadtoken",
]


class AdminSite(admin.AdminSite):
    login_form = AdminLoginForm

    def login(self, request, extra_context=None):
        if request.method == "POST":
            wait = login_wait(request)
            if wait is not None:
                return self._too_many_logins(request, math.ceil(wait))
        return super().login(request, extra_context)

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def index(self, request, extra_context=None):
        allowed = request.user.has_perms(DASHBOARD_PERMISSIONS)
        return super().index(request, {"dashboard_allowed": allowed, **(extra_context or {})})

    def dashboard_view(self, request) -> TemplateResponse:
        if not request.user.has_perms(DASHBOARD_PERMISSIONS):
            raise PermissionDenied
        activity = daily_activity()
        context = {
            **self.each_context(request),
            "title": "Dashboard",
            "activity": activity,
            "charts": dashboard_charts(activity),
            "verified": audit_services.last_verification(),
            "archived": Archive.objects.order_by("-month").first(),
        }
        return TemplateResponse(request, "admin/dashboard.html", context)

    def _too_many_logins(self, request, retry_after: int) -> TemplateResponse:
        context = {
            **self.each_context(request),
            "title": "Too many login attempts",
            "retry_after": retry_after,
        }
        response = TemplateResponse(request, "admin/login_throttled.html", context, status=429)
        response["Retry-After"] = str(retry_after)
        return response
