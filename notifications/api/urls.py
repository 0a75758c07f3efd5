from invoicegen.core.api import OptionalSlashRouter
from notifications.api.views import NotificationViewSet

router = OptionalSlashRouter()
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = router.urls
