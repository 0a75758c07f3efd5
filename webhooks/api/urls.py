from invoicegen.core.api import OptionalSlashRouter
from webhooks.api.views import EndpointViewSet, EventTypeViewSet

router = OptionalSlashRouter()
router.register("endpoints", EndpointViewSet, basename="webhook-endpoint")
router.register("event-types", EventTypeViewSet, basename="webhook-event-type")

urlpatterns = router.urls
