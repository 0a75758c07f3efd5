from django.urls import re_path

from invoicegen.billing import services
from invoicegen.billing.api import views
from invoicegen.core.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("invoices", views.InvoiceViewSet, basename="invoice")

urlpatterns = [
    *router.urls,
    re_path(r"^business-profile/?$", views.BusinessProfileView.as_view(), name="business-profile"),
    re_path(r"^subscription/?$", views.SubscriptionView.as_view(), name="subscription"),
    re_path(
        r"^subscription/cancel/?$",
        views.CancelSubscriptionView.as_view(
            change=services.cancel_subscription, operation_id="cancelSubscription"
        ),
        name="subscription-cancel",
    ),
    re_path(
        r"^subscription/renew/?$",
        views.SubscriptionChangeView.as_view(
            change=services.renew_subscription, operation_id="renewSubscription"
        ),
        name="subscription-renew",
    ),
]
