"""The trail's vocabulary and the models it follows, filled by each app in its `ready()`.

An action is a stable dotted name (`user.signup`), a category, a human template and whether it
is a security event. Entries keep the name verbatim, so a name is never renamed or reused. Each
name is registered once: a second registration stops the process at startup. Recording a name
nobody registered is a bug: it raises where bugs should be loud (`AUDIT_STRICT_ACTIONS`, on in
DEBUG and tests) and, in production, is logged and recorded under its prefix, since an entry
must never be lost; `manage.py check --database default` lists such names found in the trail.

A tracked model has its changes captured as field diffs from every ORM path (audit/tracking.py),
as `<type>.created`, `<type>.updated` and `<type>.deleted`, unless a service names the change.
"""

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

logger = logging.getLogger(__name__)

NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
VERBS = ("created", "updated", "deleted")


class UnknownAction(LookupError):
    """An action nobody registered (AUDIT_STRICT_ACTIONS)."""


@dataclass(frozen=True)
class Action:
    name: str
    category: str
    template: str
    security: bool = False

    def describe(self, **values) -> str:
        try:
            return self.template.format_map(_Blank(values))
        except (ValueError, IndexError):  # a malformed value never stops an entry
            return self.template


class _Blank(dict):
    def __missing__(self, key):
        return ""


_actions: dict[str, Action] = {}


def register_action(name: str, category: str, template: str, *, security: bool = False) -> Action:
    if not NAME.fullmatch(name):
        raise ImproperlyConfigured(f"Audit action {name!r} is not a dotted lower-case name.")
    if name in _actions:
        raise ImproperlyConfigured(f"Audit action {name!r} is registered twice.")
    _actions[name] = Action(name, category, template, security)
    return _actions[name]


def domain_event(name: str, template: str, *, category: str = "", security: bool = False):
    """Declare the function that records a domain event, and register its action (at import,
    which each app's ready() triggers): the event and its name live in one place."""
    register_action(name, category or name.split(".", 1)[0], template, security=security)
    return lambda record: record


def action(name: str) -> Action:
    if name in _actions:
        return _actions[name]
    if settings.AUDIT_STRICT_ACTIONS:
        raise UnknownAction(f"Audit action {name!r} is not registered.")
    logger.error("audit action %r is not registered; recorded under its prefix", name)
    return Action(name, name.split(".", 1)[0], name)


def is_registered(name: str) -> bool:
    return name in _actions


def categories() -> list[str]:
    return sorted({action.category for action in _actions.values()})


def prefixes() -> list[str]:
    return sorted({name.split(".", 1)[0] for name in _actions})


def security_actions() -> list[str]:
    return sorted(name for name, action in _actions.items() if action.security)


@dataclass(frozen=True)
class TrackedModel:
    resource_type: str
    label_field: str = "pk"
    # Fields whose change alone makes no entry (bookkeeping).
    quiet_fields: frozenset[str] = frozenset({"updated_at"})


_tracked: dict[type[models.Model], TrackedModel] = {}


def track(
    model: type[models.Model],
    *,
    resource_type: str,
    label_field: str = "pk",
    quiet_fields: tuple[str, ...] = ("updated_at",),
) -> None:
    """Follow the model's changes. Its `<type>.created/updated/deleted` actions are registered
    here unless the app registered them first (with a template or security flag of its own)."""
    from audit import receivers

    if model in _tracked:
        raise ImproperlyConfigured(f"{model._meta.label} is tracked twice.")
    _tracked[model] = TrackedModel(resource_type, label_field, frozenset(quiet_fields))
    for verb in VERBS:
        name = f"{resource_type}.{verb}"
        if name not in _actions:
            register_action(name, resource_type, f"{{actor}} {verb} {{target}}")
    receivers.connect_model_receivers(model)


def tracked_models() -> dict[type[models.Model], TrackedModel]:
    return dict(_tracked)


def spec_for(model) -> TrackedModel | None:
    return _tracked.get(model._meta.concrete_model)


def is_former_admin_name(name: str) -> bool:
    """Before actions were named independently of their origin, a tracked model's change in the
    admin was `admin.<type>_<verb>`: names of old entries, never recorded again."""
    prefix, _, rest = name.partition(".")
    types = {spec.resource_type for spec in _tracked.values()}
    return prefix == "admin" and any(rest in {f"{t}_{verb}" for verb in VERBS} for t in types)
