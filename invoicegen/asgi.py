"""One ASGI application for HTTP (Django) and WebSockets (Channels): daphne serves it, and
`make run`'s runserver too. A WebSocket is accepted only from an Origin this site serves
(ALLOWED_HOSTS, or an SPA's CORS_ALLOWED_ORIGINS), then authenticated by the session cookie or a
ticket (notifications/consumers.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "invoicegen.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from notifications.consumers import NotificationConsumer  # noqa: E402


class SiteOriginValidator(OriginValidator):
    """Channels' check of a WebSocket's Origin, against the hosts Django serves (DEBUG with
    none set: localhost, as Django allows) and the SPA's origins, as the settings are now."""

    def __init__(self, application):
        super().__init__(application, allowed_origins=[])

    def validate_origin(self, parsed_origin) -> bool:
        hosts = settings.ALLOWED_HOSTS or (
            [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
        )
        allowed = [*hosts, *settings.CORS_ALLOWED_ORIGINS]
        return "*" in allowed or any(
            self.match_allowed_origin(parsed_origin, pattern) for pattern in allowed
        )


application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": SiteOriginValidator(
            AuthMiddlewareStack(
                URLRouter([path("ws/notifications/", NotificationConsumer.as_asgi())])
            )
        ),
    }
)
