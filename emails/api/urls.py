from emails.api.views import SuppressionViewSet
from invoicegen.core.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("suppressions", SuppressionViewSet, basename="email-suppression")

urlpatterns = router.urls
