"""The events endpoints may subscribe to, registered by the apps that send them (in their
`ready()`), each with what it means. An endpoint names events, a group of them (`group.*`,
the names before the first dot) or every one (`*`)."""

from django.core.exceptions import ImproperlyConfigured

ALL = "*"
_types: dict[str, str] = {}


def register_event_type(name: str, description: str) -> None:
    if name in _types:
        raise ImproperlyConfigured(f"Webhook event type {name!r} is registered twice.")
    _types[name] = description


def registered() -> dict[str, str]:
    return dict(sorted(_types.items()))


def is_registered(name: str) -> bool:
    return name in _types


def groups() -> set[str]:
    return {name.split(".", 1)[0] + ".*" for name in _types}


def patterns() -> list[str]:
    """What an endpoint may subscribe with."""
    return [ALL, *sorted(groups()), *sorted(_types)]


def is_known(pattern: str) -> bool:
    return pattern in patterns()


def matches(patterns: list[str], name: str) -> bool:
    group = name.split(".", 1)[0] + ".*"
    return any(pattern in (ALL, name, group) for pattern in patterns)
