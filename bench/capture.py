"""The one place where the bench reaches into the application and switches audit capture on
and off: the product's own, and the peers' (bench/peers). If the application moves a module,
adapt the imports below and nothing else.

What "off" means, for each system (switched between rounds, outside the timed code):

- invoicegen audit: every signal receiver and execute wrapper defined in the `audit` package
  is removed (pre_save/post_save/post_delete and any post_init, the piggyback wrapper on each
  connection and its connection_created receiver, the login and Celery receivers), the
  models whose default manager uses the audited QuerySet get Django's plain QuerySet back,
  and the Model methods that an abstract base of ours overrides (audit's `Audited.from_db`,
  which keeps each loaded row's values, and `refresh_from_db`) are Django's own again.
  `assert_ours_off()` checks that nothing of ours is left. API clients built by
  `api_client(audit=False)` also run without the audit middleware. "On" puts back exactly
  what was there.
- django-pghistory: its triggers on the invoice table are dropped (`pgtrigger.uninstall`,
  DROP TRIGGER and DROP FUNCTION), not merely ignored (`pgtrigger.ignore` would still fire
  the trigger and test a session variable); "on" installs the triggers of one event model.
- django-auditlog: `auditlog.register` / `auditlog.unregister` (its receivers come and go).
- django-simple-history: its post_save/pre_delete/post_delete receivers are connected and
  disconnected; its historical model stays (a table nobody writes to when off).

Each variant also has the request context its system would have in a request, bound around
each request-like unit of work (one update or create, one bulk call), as its middleware would:
our `audit.context.bind(...)`, `pghistory.context(...)`, auditlog's `set_actor(...)`,
simple-history's `HistoricalRecords.context.request`.
"""

import weakref
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from types import SimpleNamespace

from celery import signals as celery_signals
from django.apps import apps
from django.conf import settings
from django.contrib.auth import signals as auth_signals
from django.db import connections, models
from django.db.backends.signals import connection_created
from django.db.models import signals as model_signals
from django.test import Client
from django.test.utils import override_settings

# Application internals the benchmarks use. -------------------------------------------------
from audit import context as audit_context
from audit import partitions
from audit.api.filters import AuditLogFilter
from audit.api.views import NewestFirstCursor
from audit.models import AuditLog
from audit.retention import cleanup_audit_logs
from audit.services import seal_audit_log
from emails.models import EmailLog
from emails.services import queue_email
from invoicegen.accounts.models import User
from invoicegen.accounts.services import create_auth_token
from invoicegen.billing.models import Invoice, InvoiceItem
from invoicegen.billing.services import create_invoice
from notifications import services as notifications
from notifications.models import Notification

__all__ = [
    "AuditLog",
    "AuditLogFilter",
    "EmailLog",
    "Invoice",
    "InvoiceItem",
    "NewestFirstCursor",
    "Notification",
    "User",
    "audit_context",
    "cleanup_audit_logs",
    "create_auth_token",
    "create_invoice",
    "notifications",
    "partitions",
    "queue_email",
    "seal_audit_log",
]

OUR_PACKAGE = "audit"  # receivers, wrappers, middleware and querysets defined here are ours
OUR_MIDDLEWARE_PREFIX = f"{OUR_PACKAGE}."

# The product's capture. --------------------------------------------------------------------

_SIGNALS = [
    model_signals.pre_init,
    model_signals.post_init,
    model_signals.pre_save,
    model_signals.post_save,
    model_signals.pre_delete,
    model_signals.post_delete,
    model_signals.m2m_changed,
    connection_created,
    auth_signals.user_logged_in,
    auth_signals.user_logged_out,
    auth_signals.user_login_failed,
    celery_signals.before_task_publish,
    celery_signals.task_prerun,
    celery_signals.task_postrun,
]


def _is_ours(thing) -> bool:
    module = getattr(thing, "__module__", None) or ""
    return module == OUR_PACKAGE or module.startswith(OUR_MIDDLEWARE_PREFIX)


def _target(receiver):
    return receiver() if isinstance(receiver, weakref.ReferenceType) else receiver


@dataclass
class _Removed:
    receivers: dict = field(default_factory=dict)  # signal -> [entries]
    wrappers: list = field(default_factory=list)
    querysets: dict = field(default_factory=dict)  # manager class -> queryset class
    methods: list = field(default_factory=list)  # (our model base, name, its attribute)
    off: bool = False


_removed = _Removed()


def _audited_managers():
    for model in apps.get_models():
        manager_class = type(model._default_manager)
        if _is_ours(getattr(manager_class, "_queryset_class", None)):
            yield manager_class


def _our_model_bases() -> set:
    """The abstract model classes of ours that models inherit (such as audit's Audited)."""
    return {
        base
        for model in apps.get_models()
        for base in model.__mro__[1:]
        if _is_ours(base) and issubclass(base, models.Model)
    }


def _our_model_methods():
    """(base, name) of each Model method that one of our bases overrides (from_db, ...)."""
    for base in _our_model_bases():
        for name in base.__dict__:
            if name in models.Model.__dict__ and not name.startswith("__"):
                yield base, name


def ours(on: bool) -> None:
    """The product's capture, all of it or none of it."""
    if on == (not _removed.off):
        return
    if not on:
        for signal in _SIGNALS:
            with signal.lock:
                mine = [entry for entry in signal.receivers if _is_ours(_target(entry[1]))]
                signal.receivers = [entry for entry in signal.receivers if entry not in mine]
                signal.sender_receivers_cache.clear()
            _removed.receivers[signal] = mine
        for connection in connections.all():
            wrappers = [w for w in connection.execute_wrappers if _is_ours(w)]
            connection.execute_wrappers[:] = [
                w for w in connection.execute_wrappers if w not in wrappers
            ]
            _removed.wrappers += [w for w in wrappers if w not in _removed.wrappers]
        for manager_class in _audited_managers():
            _removed.querysets[manager_class] = manager_class._queryset_class
            manager_class._queryset_class = models.QuerySet
        for base, name in list(_our_model_methods()):
            _removed.methods.append((base, name, base.__dict__[name]))
            setattr(base, name, models.Model.__dict__[name])  # Django's own, as if not ours
        _removed.off = True
        assert_ours_off()
        return
    for signal, entries in _removed.receivers.items():
        with signal.lock:
            keys = {entry[0] for entry in signal.receivers}
            signal.receivers += [entry for entry in entries if entry[0] not in keys]
            signal.sender_receivers_cache.clear()
    for connection in connections.all():
        for wrapper in _removed.wrappers:
            if connection.vendor == "postgresql" and wrapper not in connection.execute_wrappers:
                connection.execute_wrappers.append(wrapper)
    for manager_class, queryset_class in _removed.querysets.items():
        manager_class._queryset_class = queryset_class
    for base, name, attribute in _removed.methods:
        setattr(base, name, attribute)
    _removed.receivers.clear()
    _removed.querysets.clear()
    _removed.methods.clear()
    _removed.off = False


def assert_ours_off() -> None:
    """Nothing of ours may run: no receiver, wrapper or audited queryset is left."""
    left = [
        (signal, _target(entry[1]))
        for signal in _SIGNALS
        for entry in signal.receivers
        if _is_ours(_target(entry[1]))
    ]
    left += [w for c in connections.all() for w in c.execute_wrappers if _is_ours(w)]
    left += list(_audited_managers())
    left += [
        (base, name)
        for base, name in _our_model_methods()
        if base.__dict__[name] is not models.Model.__dict__[name]
    ]
    assert not left, f"capture is not off: {left}"


def our_context(actor: "User", path: str = "/api/invoices/1/"):
    return audit_context.bind(
        audit_context.AuditContext(
            user_id=actor.pk,
            user_email=actor.email,
            ip_address="203.0.113.7",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
            method="PATCH",
            path=path,
            request_id="bench",
            origin="api",
        )
    )


def api_client(*, audit: bool) -> Client:
    """A test client; without `audit`, without our middleware either."""
    client = Client()
    if not audit:
        middleware = [m for m in settings.MIDDLEWARE if not m.startswith(OUR_MIDDLEWARE_PREFIX)]
        with override_settings(MIDDLEWARE=middleware):
            client.handler.load_middleware()
    return client


# The peers. --------------------------------------------------------------------------------


def auditlog(on: bool) -> None:
    from auditlog.registry import auditlog as registry

    if on and not registry.contains(Invoice):
        registry.register(Invoice)
    elif not on and registry.contains(Invoice):
        registry.unregister(Invoice)


def auditlog_context(actor):
    from auditlog.context import set_actor

    return set_actor(actor, remote_addr="203.0.113.7")


_SIMPLE_HISTORY_SIGNALS = ("post_save", "pre_delete", "post_delete")


def simple_history(on: bool) -> None:
    from bench.peers.models import Invoice as Tracked
    from bench.peers.models import simple_history_records as records

    for name in _SIMPLE_HISTORY_SIGNALS:
        signal = getattr(model_signals, name)
        if on:
            signal.connect(getattr(records, name), sender=Tracked, weak=False)
        else:
            signal.disconnect(getattr(records, name), sender=Tracked)


@contextmanager
def simple_history_context(actor):
    """What its HistoryRequestMiddleware does: the request (and so its user) in a local."""
    from simple_history.models import HistoricalRecords

    HistoricalRecords.context.request = SimpleNamespace(user=actor)
    try:
        yield
    finally:
        del HistoricalRecords.context.request


PGHISTORY_MODELS = {
    "plain": "peers.InvoiceEvent",
    "context": "peers.InvoiceContextEvent",
    "json context": "peers.InvoiceJSONContextEvent",
    "statement": "peers.InvoiceStatementEvent",
}
_pghistory_mode: list = ["unknown"]


def _pghistory_uris(event_model=None, *, protect=False) -> list[str]:
    import pgtrigger

    uris = []
    for model, trigger in pgtrigger.registered():
        if protect:
            if model._meta.label in PGHISTORY_MODELS.values():
                uris.append(f"{model._meta.label}:{trigger.name}")
        elif model is Invoice and (
            event_model is None or getattr(trigger, "event_model", None) is event_model
        ):
            uris.append(f"{model._meta.label}:{trigger.name}")
    return uris


def pghistory(mode: str | None) -> None:
    """Install the triggers of one event model (or none) on the invoice table."""
    import pgtrigger

    if _pghistory_mode[0] == mode:
        return
    pgtrigger.uninstall(*_pghistory_uris())
    if mode is not None:
        pgtrigger.install(*_pghistory_uris(protect=True))  # the events' append-only guard
        pgtrigger.install(*_pghistory_uris(apps.get_model(PGHISTORY_MODELS[mode])))
    _pghistory_mode[0] = mode


def pghistory_events(mode: str) -> int:
    return apps.get_model(PGHISTORY_MODELS[mode]).objects.count()


def pghistory_context(actor, path: str = "/api/invoices/1/"):
    import pghistory as history

    return history.context(
        user=actor.pk,
        url=path,
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
        method="PATCH",
        request_id="bench",
    )


# The variants, each a configuration of all systems and a context per unit of work. ----------


@dataclass(frozen=True)
class Variant:
    name: str
    ours: bool = False
    pghistory: str | None = None
    auditlog: bool = False
    simple_history: bool = False
    context: Callable = field(default=lambda actor: nullcontext(), compare=False)
    store: str | None = None  # where its records go (store_counts())

    def configure(self) -> None:
        ours(self.ours)
        pghistory(self.pghistory)
        auditlog(self.auditlog)
        simple_history(self.simple_history)


OFF = Variant("capture off")
OURS = Variant("invoicegen audit", ours=True, context=our_context, store="invoicegen audit")
PGHISTORY = Variant("pghistory", pghistory="plain", store="pghistory plain")
PGHISTORY_STATEMENT = Variant(
    "pghistory, statement-level", pghistory="statement", store="pghistory statement"
)
PGHISTORY_CONTEXT = Variant(
    "pghistory + context (FK)",
    pghistory="context",
    context=pghistory_context,
    store="pghistory context",
)
PGHISTORY_JSON_CONTEXT = Variant(
    "pghistory + context (JSON)",
    pghistory="json context",
    context=pghistory_context,
    store="pghistory json context",
)
AUDITLOG = Variant(
    "django-auditlog", auditlog=True, context=auditlog_context, store="django-auditlog"
)
SIMPLE_HISTORY = Variant(
    "django-simple-history",
    simple_history=True,
    context=simple_history_context,
    store="django-simple-history",
)

SINGLE_ROW_VARIANTS = [
    OFF,
    OURS,
    PGHISTORY,
    PGHISTORY_CONTEXT,
    PGHISTORY_JSON_CONTEXT,
    AUDITLOG,
    SIMPLE_HISTORY,
]
BULK_VARIANTS = [OFF, OURS, PGHISTORY, PGHISTORY_STATEMENT, PGHISTORY_JSON_CONTEXT]


def all_off() -> None:
    OFF.configure()


def store_counts() -> dict[str, int]:
    """How many records each system holds."""
    from auditlog.models import LogEntry

    counts = {
        "invoicegen audit": AuditLog.objects.count(),
        "django-auditlog": LogEntry.objects.count(),
        "django-simple-history": apps.get_model("peers", "HistoricalInvoice").objects.count(),
    }
    for mode, label in PGHISTORY_MODELS.items():
        counts[f"pghistory {mode}"] = apps.get_model(label).objects.count()
    return counts


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The stores whose count changed, by how much."""
    return {store: after[store] - before[store] for store in after if after[store] != before[store]}


def newest_record_context(variant: Variant) -> object:
    """The actor or context that the variant's newest record carries (None: none)."""
    from auditlog.models import LogEntry

    if variant.store == "invoicegen audit":
        newest = AuditLog.objects.order_by("-id").first()  # its personal data is stored sealed
        return newest and (newest.user_email, newest.ip_address)
    if variant.store == "django-auditlog":
        return LogEntry.objects.order_by("-id").values_list("actor_id", "remote_addr").first()
    if variant.store == "django-simple-history":
        model = apps.get_model("peers", "HistoricalInvoice")
        return model.objects.order_by("-history_id").values_list("history_user_id").first()
    if variant.pghistory == "context":
        model = apps.get_model(PGHISTORY_MODELS["context"])
        return model.objects.order_by("-pgh_id").values_list("pgh_context__metadata").first()
    if variant.pghistory == "json context":
        model = apps.get_model(PGHISTORY_MODELS["json context"])
        return model.objects.order_by("-pgh_id").values_list("pgh_context").first()
    return None


def make_notification(user, n: int, *, read: bool = False):
    """An unsaved in-app notification (whichever way the model stores its text)."""
    from django.utils import timezone

    fields = {f.name for f in Notification._meta.concrete_fields}
    text = {"title": f"Notice {n}", "message": "Hello."}
    values = text if "title" in fields else {"params": text}
    return Notification(
        user=user,
        type="admin_message",
        read_at=timezone.now() if read and "read_at" in fields else None,
        **values,
    )


def new_invoice_items(invoice, count: int) -> list:
    from decimal import Decimal

    return [
        InvoiceItem(
            invoice=invoice,
            position=position,
            description=f"Work {position}",
            quantity=Decimal(1),
            unit_price=Decimal(50),
            amount=Decimal(50),
        )
        for position in range(count)
    ]


def purge_task_queue() -> None:
    from invoicegen import celery_app

    celery_app.control.purge()
