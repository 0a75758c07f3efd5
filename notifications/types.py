"""The kinds of notification, registered by the apps that send them (in their `ready()`).

A type names its title and body as templates of its parameters, and the channels it goes out
on by default. A notification stores its type and parameters only: the text is rendered when it
is read, so that it can be rendered in the reader's language. Each user may choose how often each
type reaches them on each channel (notifications/preferences.py), except that a critical type
(the account's security, its verification) always reaches them, at once, where it is sent.

The channels: the user's feed (`in_app`); the live push to their open pages (`realtime`, by
default wherever the feed has it); email; and the user's webhook endpoints (`webhook`, sent by
the webhooks app, off unless they turn it on)."""

from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

IN_APP = "in_app"
REALTIME = "realtime"
EMAIL = "email"
WEBHOOK = "webhook"
CHANNELS = (IN_APP, REALTIME, EMAIL, WEBHOOK)
OPT_IN = (WEBHOOK,)  # open to every type, off until the user turns it on

IMMEDIATE, DAILY, WEEKLY, OFF = "immediate", "daily", "weekly", "off"
FREQUENCIES = (IMMEDIATE, DAILY, WEEKLY, OFF)
DIGESTS = (DAILY, WEEKLY)  # gathered into one email a day or a week


@dataclass(frozen=True)
class NotificationType:
    name: str
    title: str
    body: str
    channels: tuple[str, ...]
    email_template: str
    critical: bool = False
    label: str = ""  # what the type is called in digests and on the unsubscribe page
    # parameter -> its stored values' words in the reader's language ({"bounced": _("...")})
    terms: dict = field(default_factory=dict)

    def sends_on(self, channel: str) -> bool:
        """The channels it is registered with (in_app, email), and the live push wherever the
        feed has it."""
        return channel in self.channels or (channel == REALTIME and IN_APP in self.channels)

    def default(self, channel: str) -> str:
        """At once on the channels it is sent on, off on the others."""
        return IMMEDIATE if self.sends_on(channel) else OFF

    def render(self, params: dict) -> tuple[str, str]:
        """(title, body). A notification stored before its type rendered its own text keeps
        the text it was stored with."""
        words = {
            name: str(values.get(params[name], params[name]))
            for name, values in self.terms.items()
            if isinstance(params.get(name), str)
        }
        params = {**params, **words}
        try:
            return str(self.title).format_map(params), str(self.body).format_map(params)
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
    critical: bool = False,
    label: str = "",
    terms: dict | None = None,
) -> NotificationType:
    if name in _types:
        raise ImproperlyConfigured(f"Notification type {name!r} is registered twice.")
    if unknown := set(channels) - {IN_APP, EMAIL}:
        raise ImproperlyConfigured(
            f"Notification type {name!r}: channels {unknown} are not a type's to choose: a "
            f"type names in_app and email (realtime follows in_app; webhook is the user's)."
        )
    _types[name] = NotificationType(
        name,
        title,
        body,
        tuple(channels),
        email_template,
        critical=critical,
        label=label or name.replace("_", " ").capitalize(),
        terms=terms or {},
    )
    return _types[name]


def get(name: str) -> NotificationType:
    return _types[name]


def find(name: str) -> NotificationType | None:
    return _types.get(name)


def label(type_name: str) -> str:
    """What the type is called, in the active language; a type no longer registered, its name."""
    kind = _types.get(type_name)
    return str(kind.label) if kind else type_name.replace("_", " ").capitalize()


def render(type_name: str, params: dict) -> tuple[str, str]:
    """(title, body) of a notification; one of a type no longer registered keeps its stored
    text, if it has one."""
    if type_name in _types:
        return _types[type_name].render(params)
    return str(params.get("title", type_name)), str(params.get("message", ""))


def registered() -> list[NotificationType]:
    return [_types[name] for name in sorted(_types)]


def choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(_types)]
