import factory

from downloads.models import DownloadEvent


class DownloadEventFactory(factory.django.DjangoModelFactory):
    """A download attempt with no link behind it (the link deleted since, or never valid):
    granted, or, with `granted=False`, refused as expired."""

    class Meta:
        model = DownloadEvent

    token = None
    granted = True
    reason = factory.LazyAttribute(
        lambda event: (
            DownloadEvent.Reason.GRANTED if event.granted else DownloadEvent.Reason.EXPIRED
        )
    )
    ip_address = "203.0.113.7"
    user_agent = "pytest-agent/1.0"
