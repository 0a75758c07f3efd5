from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import renderers

from emails.views import unsubscribe

handler400 = "invoicegen.core.errors.bad_request"
handler500 = "invoicegen.core.errors.server_error"


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: YAML, or JSON for `Accept: application/json`, `?format=json` or
    `/api/schema.json`."""

    def get_format_suffix(self, **kwargs):
        return kwargs.get("format") or self.request.query_params.get("format")


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI. Its HTML renderer has a template for the page only: any other answer
    (OPTIONS, a method it refuses) is JSON, where that renderer would fail (a 500)."""

    def get_renderers(self):
        if self.request.method in ("GET", "HEAD"):
            return super().get_renderers()
        return [renderers.JSONRenderer()]


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("invoicegen.accounts.api.urls")),
    path("api/", include("invoicegen.billing.api.urls")),
    path("api/audit/", include("audit.api.urls")),
    path("api/", include("notifications.api.urls")),
    path("api/emails/", include("emails.api.urls")),
    path("api/webhooks/", include("webhooks.api.urls")),
    path("downloads/", include("downloads.urls")),
    path("webhooks/email/", include("emails.urls")),
    # Every path under unsubscribe/ reaches the view: Django's own 404 would log the token.
    re_path(r"^unsubscribe/(?P<token>[\s\S]*)$", unsubscribe, name="unsubscribe"),
    path("", include("invoicegen.accounts.urls")),
    path("", include("notifications.urls")),
    re_path(r"^api/schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^api/schema\.json$", SchemaView.as_view(), {"format": "json"}, name="schema-json"),
    re_path(r"^api/docs/?$", SwaggerView.as_view(url_name="schema"), name="docs"),
]

handler404 = "invoicegen.core.errors.not_found"
