"""Capture: the field diffs of tracked models (audit/registry.py), from every ORM path.

Saves and deletes are heard by the receivers (audit/receivers.py). `QuerySet.update()`,
`bulk_update()` and `bulk_create()` send no signals: `AuditedQuerySet`, which a system check
makes every tracked model use, captures them set-based (one read of the old values, the write,
one INSERT of every entry). Old values come from a snapshot taken when the instance was loaded:
no extra SELECT per save.

Old values cost nothing when rows are read: a tracked model is `Audited`, which keeps a
reference to the values each instance was loaded with (`from_db`), and the diff is computed only
when it is saved.

A change gets its plain entry (`<type>.updated`) unless a service names it: inside
`service_transaction()` the changes wait for the domain event that the service records, which
takes them into its own entry (`user.password_reset`, with the diff); what no event took gets its
plain entry before the transaction commits. So a change made by a service has exactly one entry,
named by the service, and a change made any other way (the admin, a shell) its plain one.
"""

import functools
import hashlib
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import models, transaction

from audit import registry, services


def describe_instance(instance: models.Model) -> tuple[str, str, str]:
    """(type, id, label): the label is the value of the field the model was tracked with
    (`label_field`, a document's number), "" for a model labelled by its id alone. It is read
    from the values the instance holds: a deferred label field, or one a bulk write's stand-in
    lacks, gives "" instead of a query."""
    spec = registry.spec_for(instance)
    resource_type = spec.resource_type if spec else instance._meta.model_name
    label_field = spec.label_field if spec else "pk"
    label = "" if label_field == "pk" else instance.__dict__.get(label_field)
    return resource_type, str(instance.pk), str(label or "")


@functools.cache
def _tracked_fields(model) -> tuple[models.Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def snapshot(instance: models.Model) -> dict:
    """The current values of the instance's fields (deferred ones are left out)."""
    deferred = instance.get_deferred_fields()
    return {
        f.attname: getattr(instance, f.attname)
        for f in _tracked_fields(type(instance))
        if f.attname not in deferred
    }


def old_values(instance: models.Model) -> dict:
    """The values the database held when the instance was loaded or last saved."""
    state = instance.__dict__
    if "_audit_snapshot" in state:
        return state["_audit_snapshot"]
    if "_audit_loaded" in state:
        names, values = state["_audit_loaded"]
        pk = instance._meta.pk.attname
        return {name: value for name, value in zip(names, values, strict=True) if name != pk}
    return {}


def change_entry(instance: models.Model, verb: str, changes: dict) -> dict | None:
    """The plain entry of a change; None when only quiet fields changed."""
    spec = registry.spec_for(instance)
    if verb == "updated" and not set(changes) - spec.quiet_fields:
        return None
    return services.entry_values(
        f"{spec.resource_type}.{verb}",
        target=instance,
        metadata={"changes": changes} if changes else {},
    )


def saved_values(instance: models.Model, update_fields) -> dict:
    """The snapshot of the instance as the database now holds it after a save: with
    `update_fields`, only those are read from the instance."""
    if update_fields is None:
        return snapshot(instance)
    saved = {instance._meta.get_field(name).attname for name in update_fields}
    return {**old_values(instance), **{name: getattr(instance, name) for name in saved}}


def update_entry(instance: models.Model, update_fields) -> tuple[dict | None, dict]:
    """The plain entry for saving changes to a loaded instance, and its new snapshot."""
    new = saved_values(instance, update_fields)
    old = old_values(instance)
    return change_entry(instance, "updated", diff(type(instance), old, new)), new


# Changes that wait for a service's event


@dataclass
class _Pending:
    instance: models.Model
    verb: str
    changes: dict


class Collector:
    """The changes made inside a service's transaction, by instance, until an event takes them."""

    def __init__(self):
        self.pending: dict[tuple, _Pending] = {}

    def add(self, instance: models.Model, verb: str, changes: dict) -> None:
        key = (instance._meta.concrete_model, instance.pk)
        earlier = self.pending.get(key)
        if earlier is None:
            self.pending[key] = _Pending(instance, verb, changes)
            return
        merged = dict(earlier.changes)
        for name, (old, new) in changes.items():
            merged[name] = [merged[name][0] if name in merged else old, new]
        verb = "deleted" if verb == "deleted" else earlier.verb  # created, then updated: created
        if verb == "updated":
            merged = {name: values for name, values in merged.items() if values[0] != values[1]}
        self.pending[key] = _Pending(instance, verb, merged)

    def take(self, instance: models.Model) -> dict:
        pending = self.pending.pop((instance._meta.concrete_model, instance.pk), None)
        return pending.changes if pending else {}

    def flush(self) -> None:
        entries = [change_entry(p.instance, p.verb, p.changes) for p in self.pending.values()]
        services.insert_entries([entry for entry in entries if entry is not None])


_collector: ContextVar[Collector | None] = ContextVar("audit_collector", default=None)


def collecting() -> Collector | None:
    return _collector.get()


@contextmanager
def _collected():
    if _collector.get() is not None:  # a service called by another: the outer one flushes
        yield
        return
    collector = Collector()
    token = _collector.set(collector)
    try:
        yield
        collector.flush()
    finally:
        _collector.reset(token)


def service_transaction(service):
    """`transaction.atomic` for a domain service whose changes its events name. A change made
    inside a savepoint that rolls back must not be left waiting: services keep such blocks to
    the single write that may fail."""

    @functools.wraps(service)
    def run(*args, **kwargs):
        with transaction.atomic(), _collected():
            return service(*args, **kwargs)

    return run


def capture(instance: models.Model, verb: str, changes: dict) -> None:
    """A tracked instance changed: its plain entry now, or later, if a service may name it."""
    collector = _collector.get()
    if collector is not None:
        collector.add(instance, verb, changes)
        return
    entry = change_entry(instance, verb, changes)
    if entry is not None:
        services.insert_entries([entry])


def take_changes(instance) -> dict:
    """The changes of the instance waiting for the event that is being recorded."""
    collector = _collector.get()
    if collector is None or not isinstance(instance, models.Model):
        return {}
    return collector.take(instance)


# Writes that send no signals


class AuditedQuerySet(models.QuerySet):
    """Bulk writes, captured set-based: a tracked model's default manager must use it."""

    def update(self, **kwargs):
        if _bulk_update_running.get():  # bulk_update() captures what it asks update() to do
            return super().update(**kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            names = [self.model._meta.get_field(name).attname for name in kwargs]
            before = list(self.select_for_update().values("pk", *names, *_label(self.model)))
            count = super().update(**kwargs)
            if any(hasattr(value, "resolve_expression") for value in kwargs.values()):
                after = self.model._base_manager.filter(pk__in=[row["pk"] for row in before])
                after = after.values("pk", *names)
            else:  # the new values are the ones given: no second read
                values = dict(zip(names, kwargs.values(), strict=True))
                after = [{"pk": row["pk"], **values} for row in before]
            _capture_rows(self.model, before, after)
        return count

    update.alters_data = True

    def bulk_update(self, objs, fields, batch_size=None):
        """Django's bulk_update() goes through update(); the new values are the objects'."""
        objs = list(objs)
        names = [self.model._meta.get_field(name).attname for name in fields]
        with transaction.atomic(using=self.db, savepoint=False):
            pks = [obj.pk for obj in objs]
            before = self.model._base_manager.filter(pk__in=pks).select_for_update()
            before = list(before.values("pk", *names, *_label(self.model)))
            token = _bulk_update_running.set(True)
            try:
                count = super().bulk_update(objs, fields, batch_size=batch_size)
            finally:
                _bulk_update_running.reset(token)
            after = [{"pk": obj.pk, **{n: getattr(obj, n) for n in names}} for obj in objs]
            _capture_rows(self.model, before, after)
        return count

    bulk_update.alters_data = True

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            for obj in created:
                obj._audit_snapshot = snapshot(obj)
            _capture_all([(obj, "created", created_changes(obj)) for obj in created])
        return created

    bulk_create.alters_data = True


_bulk_update_running: ContextVar[bool] = ContextVar("audit_bulk_update", default=False)


def _label(model) -> list[str]:
    """The label field a bulk write reads with the old values, for its entries' labels."""
    spec = registry.spec_for(model)
    return [] if spec is None or spec.label_field == "pk" else [spec.label_field]


def _capture_rows(model, before: list[dict], after) -> None:
    old_rows = {row["pk"]: row for row in before}
    changes = []
    for row in after:
        old = old_rows[row["pk"]]
        changed = diff(model, old, row)
        if changed:
            changes.append((_stand_in(model, {**old, **row}), "updated", changed))
    _capture_all(changes)


def _stand_in(model, row: dict) -> models.Model:
    """An instance holding the row's values, to describe it and key its change by: the model's
    __init__ (defaults, signals) for each row of a bulk update would cost more than the
    update itself."""
    instance = model.__new__(model)
    instance.__dict__.update({name: value for name, value in row.items() if name != "pk"})
    setattr(instance, model._meta.pk.attname, row["pk"])
    return instance


def _capture_all(changes: list[tuple]) -> None:
    collector = _collector.get()
    if collector is not None:
        for instance, verb, changed in changes:
            collector.add(instance, verb, changed)
        return
    entries = [change_entry(instance, verb, changed) for instance, verb, changed in changes]
    services.insert_entries([entry for entry in entries if entry is not None])


class Audited(models.Model):
    """The base of a tracked model: its bulk writes are captured (AuditedQuerySet), and each
    instance keeps a reference to the values it was loaded with, the old values of its next
    save's diff, where a snapshot taken at every load would cost every row of every list."""

    objects = AuditedQuerySet.as_manager()

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._audit_loaded = (field_names, values)
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        """What is read again is what the database now holds: the old values of those fields."""
        old = old_values(self)
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        names = fields if fields is not None else [f.attname for f in _tracked_fields(type(self))]
        attnames = {self._meta.get_field(name).attname for name in names}
        deferred = self.get_deferred_fields()
        self._audit_snapshot = {
            **old,
            **{name: getattr(self, name) for name in attnames if name not in deferred},
        }


def _shown(name: str, value):
    if services.is_sensitive(name):
        return services.REDACTED
    if isinstance(value, bytes | memoryview):  # a file's bytes: which file, not its content
        return f"{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()}" if value else ""
    return value


def diff(model, old: dict, new: dict) -> dict[str, list]:
    """{field: [old, new]} for the fields that changed, secrets redacted."""
    changes = {}
    for f in _tracked_fields(model):
        if f.attname in old and f.attname in new and old[f.attname] != new[f.attname]:
            changes[f.name] = [_shown(f.name, old[f.attname]), _shown(f.name, new[f.attname])]
    return changes


def created_changes(instance: models.Model) -> dict:
    return {
        f.name: [None, _shown(f.name, getattr(instance, f.attname))]
        for f in _tracked_fields(type(instance))
    }
