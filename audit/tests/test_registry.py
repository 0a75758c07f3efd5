"""The vocabulary: filled by each app, strict about duplicates and unknown names; and the
layers: the backbone names no domain app, core names no app at all."""

import ast
import logging
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from audit import registry, services
from audit.apps import check_actions_in_the_trail_are_registered
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import last_entry_id, only_entry
from invoicegen.billing.models import Invoice

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ["audit", "notifications", "emails", "downloads"]


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ImproperlyConfigured, match="registered twice"):
        registry.register_action("invoice.sent", "invoice", "{actor} sent {target}")


def test_a_name_must_be_dotted_lower_case():
    with pytest.raises(ImproperlyConfigured, match="dotted"):
        registry.register_action("InvoiceSent", "invoice", "sent")


def test_a_model_tracked_twice_is_refused():
    with pytest.raises(ImproperlyConfigured, match="tracked twice"):
        registry.track(Invoice, resource_type="invoice")


def test_a_tracked_model_has_its_plain_actions():
    for verb in registry.VERBS:
        assert registry.is_registered(f"invoice_item.{verb}")


@pytest.mark.django_db
def test_an_unknown_name_raises_where_mistakes_should_be_loud():
    with pytest.raises(registry.UnknownAction, match=r"invoice\.teleported"):
        services.log("invoice.teleported")


@pytest.mark.django_db
def test_in_production_an_unknown_name_is_recorded_under_its_prefix_and_logged(settings, caplog):
    settings.AUDIT_STRICT_ACTIONS = False
    mark = last_entry_id()

    with caplog.at_level(logging.ERROR, logger="audit.registry"):
        services.log("invoice.teleported")

    assert only_entry(mark, "invoice.teleported").category == "invoice"
    assert "invoice.teleported" in caplog.text


@pytest.mark.django_db
def test_the_check_lists_unknown_names_found_in_the_trail(settings):
    settings.AUDIT_STRICT_ACTIONS = False
    AuditLogFactory(action="invoice.sent")
    services.log("invoice.teleported")
    services.log("billing.mystery")
    AuditLogFactory(action="user.login")

    [warning] = check_actions_in_the_trail_are_registered(None, databases=["default"])

    assert warning.id == "audit.W002"
    assert "billing.mystery, invoice.teleported" in warning.msg


@pytest.mark.django_db
def test_the_check_accepts_the_former_admin_names_of_tracked_models(settings):
    settings.AUDIT_STRICT_ACTIONS = False
    services.log("admin.invoice_updated")  # how an admin edit was named before

    assert check_actions_in_the_trail_are_registered(None, databases=["default"]) == []
    assert check_actions_in_the_trail_are_registered(None, databases=None) == []


# Which way imports go


def python_files(*packages: str):
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts):
                yield path


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_backbone_imports_no_domain_app():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(path)
            if name.startswith(("invoicegen.billing", "invoicegen.accounts"))
        )
        for path in python_files(*BACKBONE)
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_core_imports_no_app_of_the_project():
    apps = ("audit", "notifications", "emails", "downloads", "invoicegen.billing")
    apps += ("invoicegen.accounts",)
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.startswith(apps)
        )
        for path in python_files("invoicegen/core")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_backbones_python_names_no_invoice_payment_or_subscription():
    domain = re.compile(r"\b(invoice|payment|subscription)(?!gen)", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files(*BACKBONE)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if domain.search(line)
    ]
    assert found == []


def test_the_check_waits_for_the_trail_to_exist(monkeypatch):
    """`migrate` runs the database checks before it creates any table."""
    from django.db import connections

    monkeypatch.setattr(connections["default"].introspection, "table_names", lambda: [])

    assert check_actions_in_the_trail_are_registered(None, databases=["default"]) == []


def test_a_tracked_model_must_be_audited_with_an_audited_manager(monkeypatch):
    """A plain model, tracked, has neither its loaded values nor its bulk writes captured."""
    from audit.apps import check_tracked_models_capture_bulk_writes
    from invoicegen.accounts.models import AuthToken

    assert check_tracked_models_capture_bulk_writes(None) == []

    tracked = {**registry.tracked_models(), AuthToken: registry.TrackedModel("token")}
    monkeypatch.setattr(registry, "tracked_models", lambda: tracked)
    errors = check_tracked_models_capture_bulk_writes(None)

    assert [(e.id, e.obj) for e in errors] == [("audit.E002", AuthToken), ("audit.E001", AuthToken)]
