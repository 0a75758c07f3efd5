"""Which models the trail follows, and how their changes are named.

One line per audited model in TRACKED_MODELS. `audit/receivers.py` hears their saves and
deletes; their QuerySet's `update()`, `bulk_update()` and `bulk_create()` (which send no
signals) are captured by `AuditedQuerySet`, which a system check makes sure they use.
Old values come from a snapshot taken when the instance was loaded: no extra SELECT per save.
"""

from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models, transaction

from audit import context as audit_context
from audit import events, services


@dataclass(frozen=True)
class TrackedModel:
    resource_type: str
    label_field: str = "pk"
    created: str | None = None
    status_field: str | None = None
    transitions: dict[str, str] = field(default_factory=dict)
    field_actions: dict[str, str] = field(default_factory=dict)
    # Fields whose change alone makes no entry (bookkeeping, or audited by another event).
    quiet_fields: frozenset[str] = frozenset({"updated_at"})


TRACKED_MODELS = {
    "accounts.User": TrackedModel(
        "user",
        label_field="email",
        field_actions={
            "password": "user.password_changed",
            "email_verified": "user.email_verified",
            "name": "user.profile_updated",
        },
        quiet_fields=frozenset({"last_login"}),
    ),
    "billing.Invoice": TrackedModel(
        "invoice",
        label_field="number",
        status_field="status",
        transitions={
            "finalized": "invoice.finalized",
            "sent": "invoice.sent",
            "paid": "invoice.paid",
            "void": "invoice.voided",
        },
    ),
    "billing.InvoiceItem": TrackedModel("invoice_item", label_field="description"),
    "billing.Payment": TrackedModel("payment", created="payment.processed"),
    "billing.Subscription": TrackedModel(
        "subscription",
        label_field="plan",
        created="subscription.activated",
        status_field="status",
        transitions={
            "active": "subscription.activated",
            "cancelled": "subscription.cancelled",
            "expired": "subscription.expired",
        },
    ),
}


# Every tracked type's plain and admin verbs are part of the vocabulary.
for _spec in TRACKED_MODELS.values():
    for _verb in ("created", "updated", "deleted"):
        for _name, _category, _where in [
            (f"{_spec.resource_type}.{_verb}", _spec.resource_type, ""),
            (f"admin.{_spec.resource_type}_{_verb}", "admin", " in the admin"),
        ]:
            if _name not in events.REGISTRY:
                events.register(_name, _category, f"{{actor}} {_verb} {{target}}{_where}")


def tracked_models() -> dict[type[models.Model], TrackedModel]:
    return {apps.get_model(label): spec for label, spec in TRACKED_MODELS.items()}


def spec_for(model) -> TrackedModel | None:
    return TRACKED_MODELS.get(model._meta.label)


def describe_instance(instance: models.Model) -> tuple[str, str, str]:
    spec = spec_for(instance)
    resource_type = spec.resource_type if spec else instance._meta.model_name
    label = getattr(instance, spec.label_field if spec else "pk", None) or instance.pk
    return resource_type, str(instance.pk), f"{resource_type} {label}"


def _tracked_fields(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def snapshot(instance: models.Model) -> dict:
    """The loaded values of the instance's fields (deferred ones are left out)."""
    deferred = instance.get_deferred_fields()
    return {
        f.attname: getattr(instance, f.attname)
        for f in _tracked_fields(type(instance))
        if f.attname not in deferred
    }


def _shown(name: str, value):
    return services.REDACTED if services.is_sensitive(name) else value


def diff(model, old: dict, new: dict) -> dict[str, list]:
    """{field: [old, new]} for the fields that changed, secrets redacted."""
    changes = {}
    for f in _tracked_fields(model):
        if f.attname in old and f.attname in new and old[f.attname] != new[f.attname]:
            changes[f.name] = [_shown(f.name, old[f.attname]), _shown(f.name, new[f.attname])]
    return changes


def resolve_action(spec: TrackedModel, verb: str, changes: dict) -> str:
    """The semantic name of a change: a hint from the service, a status transition, a field
    of note, or the plain `<type>.<verb>`; in the admin, `admin.<type>_<verb>`."""
    if audit_context.current().origin == "admin":
        return f"admin.{spec.resource_type}_{verb}"
    hint = services.hinted_action(spec.resource_type)
    if hint:
        return hint
    if verb == "created":
        return spec.created or f"{spec.resource_type}.created"
    if verb == "updated":
        if spec.status_field in changes:
            new_status = changes[spec.status_field][1]
            if new_status in spec.transitions:
                return spec.transitions[new_status]
        for field_name, action in spec.field_actions.items():
            if field_name in changes:
                return action
    return f"{spec.resource_type}.{verb}"


def change_entry(instance: models.Model, verb: str, changes: dict) -> dict | None:
    """The entry for a change of a tracked instance; None when only quiet fields changed."""
    spec = spec_for(instance)
    if verb == "updated" and not set(changes) - spec.quiet_fields:
        return None
    # A user acting on their own account before logging in (signup, reset) is the actor.
    is_user = isinstance(instance, get_user_model())
    anonymous = audit_context.current().actor()[0] is None
    return services.entry_values(
        resolve_action(spec, verb, changes),
        target=instance,
        actor=instance if is_user and anonymous and verb != "deleted" else None,
        metadata={"changes": changes} if changes else {},
    )


def record(instance: models.Model, verb: str, changes: dict) -> None:
    entry = change_entry(instance, verb, changes)
    if entry is not None:
        services.insert_entry(entry)


def saved_values(instance: models.Model, update_fields) -> dict:
    """The snapshot of the instance as the database now holds it after a save."""
    old = getattr(instance, "_audit_snapshot", {})
    new = snapshot(instance)
    if update_fields is None:
        return new
    saved = {instance._meta.get_field(name).attname for name in update_fields}
    return {**old, **{name: value for name, value in new.items() if name in saved}}


def update_entry(instance: models.Model, update_fields) -> tuple[dict | None, dict]:
    """The entry for saving changes to a loaded instance, and its new snapshot."""
    new = saved_values(instance, update_fields)
    old = getattr(instance, "_audit_snapshot", {})
    return change_entry(instance, "updated", diff(type(instance), old, new)), new


def created_changes(instance: models.Model) -> dict:
    return {
        f.name: [None, _shown(f.name, getattr(instance, f.attname))]
        for f in _tracked_fields(type(instance))
    }


class AuditedQuerySet(models.QuerySet):
    """Bulk writes that bypass signals, captured as one entry per changed row (Django's
    bulk_update() goes through update())."""

    def update(self, **kwargs):
        with transaction.atomic(using=self.db):
            names = [self.model._meta.get_field(name).attname for name in kwargs]
            before = {row["pk"]: row for row in self.select_for_update().values("pk", *names)}
            count = super().update(**kwargs)
            after = self.model._base_manager.filter(pk__in=before).values("pk", *names)
            for row in after:
                _record_row_change(self.model, before[row["pk"]], row)
        return count

    update.alters_data = True

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            for obj in created:
                record(obj, "created", created_changes(obj))
                obj._audit_snapshot = snapshot(obj)
        return created

    bulk_create.alters_data = True


def _record_row_change(model, old: dict, new: dict) -> None:
    instance = model(**{k: v for k, v in new.items() if k != "pk"}, pk=new["pk"])
    changes = diff(model, old, new)
    if changes:
        record(instance, "updated", changes)
