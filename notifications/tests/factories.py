import datetime

import factory
from django.utils import timezone

from invoicegen.accounts.tests.factories import UserFactory
from notifications.models import Notification


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    class Params:
        # The text, as an admin message carries it (another type renders its own from params).
        title = factory.Sequence(lambda n: f"Notification {n}")
        message = factory.Faker("sentence")
        # Read a while ago, so that a second "read" visibly keeps the first moment.
        read = factory.Trait(
            read_at=factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(days=3))
        )

    user = factory.SubFactory(UserFactory)
    type = "admin_message"
    params = factory.LazyAttribute(lambda n: {"title": n.title, "message": n.message})


# The preferences a user's admin page shows, as its form posts them (none changed there).
NO_PREFERENCE_FORMS = {
    f"notification_preferences-{name}": count
    for name, count in [("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0), ("MAX_NUM_FORMS", 1000)]
}
