"""The kinds of notification, registered by the apps that send them (in their `ready()`).

A type names its title and body as templates of its parameters, and the channels it goes out
on. A notification stores its type and parameters only: the text is rendered when it is read, so
that it can be rendered in the reader's language."""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

IN_APP = "in_app"
EMAIL = "email"
CHANNELS = (IN_APP, EMAIL)


@dataclass(frozen=True)
class NotificationType:
    name: str
    title: str
    body: str
    channels: tuple[str, ...]
    email_template: str

    def render(self, params: dict) -> tuple[str, str]:
        """(title, body). A notification stored before its type rendered its own text keeps
        the text it was stored with."""
        try:
            return self.title.format_map(params), self.body.format_map(params)
        except (KeyError, IndexError, ValueError):
            return str(params.get("title", self.name)), str(params.get("message", ""))


_types: dict[str, NotificationType] = {}


def register_type(
    name: str,
    *,
    title: str,
    body: str = "",
    channels: tuple[str, ...] = (IN_APP,),
    email_template: str = "admin_message",
) -> NotificationType:
    if name in _types:
        raise ImproperlyConfigured(f"Notification type {name!r} is registered twice.")
    if unknown := set(channels) - set(CHANNELS):
        raise ImproperlyConfigured(f"Notification type {name!r}: unknown channels {unknown}.")
    _types[name] = NotificationType(name, title, body, tuple(channels), email_template)
    return _types[name]


def get(name: str) -> NotificationType:
    return _types[name]


def render(type_name: str, params: dict) -> tuple[str, str]:
    """(title, body) of a notification; one of a type no longer registered keeps its stored
    text, if it has one."""
    if type_name in _types:
        return _types[type_name].render(params)
    return str(params.get("title", type_name)), str(params.get("message", ""))


def choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(_types)]
