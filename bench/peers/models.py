"""Tracking models of the peers, for `billing.Invoice` (looked up by label, so that a move of the
product's modules does not break them).

django-pghistory: one event model per configuration, each with its own triggers on the
invoice table, installed and dropped between rounds by bench/capture.py (PGTRIGGER_MIGRATIONS
is off in bench/settings.py, so the product's migrations never see them):

- InvoiceEvent: insert and update events, no context, append-only (pghistory's Protect
  trigger refuses UPDATE/DELETE of events, as the product's trail refuses them);
- InvoiceContextEvent: the same with request context the default way, a foreign key to
  pghistory's Context table, upserted by the trigger (`_pgh_attach_context()`);
- InvoiceJSONContextEvent: the same with context denormalized into each event (a JSON copy
  and the context's UUID), which pghistory's performance guide recommends for write speed;
- InvoiceStatementEvent: no context, statement-level triggers (transition tables), which
  pghistory's performance guide recommends for bulk writes.

django-simple-history: HistoricalInvoice, written by its post_save/post_delete receivers,
which bench/capture.py connects and disconnects.
"""

import pghistory
from django.apps import apps
from simple_history.models import HistoricalRecords

Invoice = apps.get_model("billing", "Invoice", require_ready=False)


def _events(prefix: str):
    return (pghistory.InsertEvent(f"{prefix}insert"), pghistory.UpdateEvent(f"{prefix}update"))


def _obj(name: str):
    return pghistory.ObjForeignKey(related_name=f"pgh_{name}")


pghistory.create_event_model(
    Invoice,
    *_events(""),
    obj_field=_obj("plain"),
    context_field=None,
    append_only=True,
    model_name="InvoiceEvent",
    app_label="peers",
    abstract=False,
)
pghistory.create_event_model(
    Invoice,
    *_events("ctx_"),
    obj_field=_obj("context"),
    context_field=pghistory.ContextForeignKey(),
    append_only=True,
    model_name="InvoiceContextEvent",
    app_label="peers",
    abstract=False,
)
pghistory.create_event_model(
    Invoice,
    *_events("json_"),
    obj_field=_obj("json_context"),
    context_field=pghistory.ContextJSONField(),
    context_id_field=pghistory.ContextUUIDField(),
    append_only=True,
    model_name="InvoiceJSONContextEvent",
    app_label="peers",
    abstract=False,
)
pghistory.create_event_model(
    Invoice,
    *_events("stmt_"),
    obj_field=_obj("statement"),
    context_field=None,
    append_only=True,
    level=pghistory.Statement,
    model_name="InvoiceStatementEvent",
    app_label="peers",
    abstract=False,
)


# django-simple-history's register(), with the historical model in this app.
simple_history_records = HistoricalRecords(app="peers")
simple_history_records.manager_name = "history"
simple_history_records.table_name = None
simple_history_records.module = __name__
simple_history_records.cls = Invoice
simple_history_records.add_extra_methods(Invoice)
simple_history_records.finalize(Invoice)
