from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

handler500 = "invoicegen.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("invoicegen.accounts.api.urls")),
    path("api/", include("invoicegen.billing.api.urls")),
    path("api/audit/", include("audit.api.urls")),
    path("api/", include("notifications.api.urls")),
    path("downloads/", include("downloads.urls")),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]
