"""A Python client generated from the served API schema by openapi-python-client (its config in
clients/python) generates without a warning and walks the SPA's flows against the running app.

The generator drops what it cannot read with a warning (an operation, a response, a body), and
the client it makes parses every answer into the model the schema names, failing on a field of
the wrong type or an undeclared status: so a schema that a Python integrator cannot generate a
working client from fails here, not in their code.
"""

import csv
import importlib
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from invoicegen.accounts.services import create_auth_token

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = Path(__file__).resolve().parent.parent / "clients" / "python" / "config.yml"
PACKAGE = "invoicegen_client"
GENERATOR_TIMEOUT = 300  # seconds; it takes a few
VERIFY_LINK = re.compile(r"\S+/verify-email\?uid=\S+")


@dataclass
class Generated:
    schema: dict
    output: str
    returncode: int

    def module(self, name: str) -> ModuleType:
        if self.returncode != 0:
            pytest.fail(f"the client was not generated:\n{self.output}")
        return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The client, generated once from the schema the app serves, importable as PACKAGE."""
    directory = tmp_path_factory.mktemp("python-client")
    response = Client().get("/api/schema.json")
    assert response.status_code == 200, response.content[:500]
    schema_file = directory / "openapi.json"
    schema_file.write_bytes(response.content)
    # The generator's post hooks run ruff by name: the one installed beside the generator.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(schema_file),
            "--config",
            str(CONFIG),
            "--output-path",
            str(directory / PACKAGE),
            "--meta",
            "none",
        ],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=GENERATOR_TIMEOUT,
        check=False,
    )
    sys.path.insert(0, str(directory))
    yield Generated(json.loads(response.content), result.stdout, result.returncode)
    sys.path.remove(str(directory))
    for name in [name for name in sys.modules if name.partition(".")[0] == PACKAGE]:
        del sys.modules[name]


def test_the_client_generates_without_a_warning(generated):
    assert generated.returncode == 0, generated.output
    # Each piece the generator could not make is a "Warning" block in its output.
    assert "warning" not in generated.output.lower(), generated.output


def _verification_link(outbox: list, address: str) -> tuple[str, str]:
    # The app sends it when the signup commits, in the server's thread: polled.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in list(outbox):
            found = VERIFY_LINK.search(message.body)
            if address in message.to and found:
                query = parse_qs(urlsplit(found.group()).query)
                return query["uid"][0], query["token"][0]
        time.sleep(0.05)
    pytest.fail(f"no verification email reached {address}")


def _expect(response, status: int, parsed_type: type):
    """The parsed answer, once its status and model are the ones expected."""
    body = response.content[:2000]
    assert response.status_code == status, f"HTTP {response.status_code}: {body!r}"
    assert isinstance(response.parsed, parsed_type), f"{type(response.parsed)}: {body!r}"
    return response.parsed


@pytest.fixture
def connect(generated, live_server):
    """Clients of the generated package to the live server (with a token: authenticated),
    closed at the end: a connection left open keeps a server thread, and its database session,
    alive past the test."""
    client_module = generated.module("client")
    made = []

    def make(token: str | None = None):
        # An undeclared status raises instead of parsing into None.
        options = {"base_url": live_server.url, "raise_on_unexpected_status": True}
        if token is None:
            client = client_module.Client(**options)
        else:
            # DRF's token authentication wants the word Token, not the default Bearer.
            client = client_module.AuthenticatedClient(token=token, prefix="Token", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.get_httpx_client().close()


def test_the_spa_flows_pass_against_the_running_app(generated, connect, superuser, mailoutbox):
    models = generated.module("models")
    types = generated.module("types")

    def api(name: str) -> ModuleType:
        return generated.module(f"api.{name}")

    # Signup, login and the email link are typed for an AuthenticatedClient only (their
    # security lists the token beside anonymous access), but take any client.
    anonymous = connect()

    email = "python-client@example.com"
    password = "Quiet-harbour-python-7"

    # --- Accounts ---------------------------------------------------------------------------

    signup = _expect(
        api("auth.signup").sync_detailed(
            client=anonymous,
            body=models.SignupRequest(email=email, password=password, name="Ada Client"),
        ),
        201,
        models.SignupResponse,
    )
    assert signup.email == email
    assert signup.email_verified is False

    login = _expect(
        api("auth.login").sync_detailed(
            client=anonymous, body=models.LoginRequest(email=email, password=password)
        ),
        200,
        models.LoginResponse,
    )
    assert login.user.id == signup.id
    assert login.user.is_staff is False
    assert login.token
    user = connect(login.token)

    # Sending an invoice needs a verified address: the SPA posts the emailed link's uid and token.
    uid, token = _verification_link(mailoutbox, email)
    verified = api("auth.verify_email").sync_detailed(
        client=anonymous, body=models.EmailLinkRequest(uid=uid, token=token)
    )
    assert verified.status_code == 204, verified.content

    me = _expect(api("auth.get_current_user").sync_detailed(client=user), 200, models.User)
    assert me.email == email
    assert me.email_verified is True

    renamed = _expect(
        api("auth.update_current_user").sync_detailed(
            client=user, body=models.PatchedUserRequest(name="Ada Lovelace")
        ),
        200,
        models.User,
    )
    assert renamed.name == "Ada Lovelace"

    # --- Invoices, up to their payment ------------------------------------------------------

    due_date = date.today() + timedelta(days=30)
    created = _expect(
        api("invoices.create_invoice").sync_detailed(
            client=user,
            body=models.InvoiceInputRequest(
                client_name="Analytical Engines Ltd",
                client_email="billing@example.com",
                due_date=due_date,
                items=[
                    models.InvoiceItemRequest(
                        description="Design review", quantity="2", unit_price="150.00"
                    ),
                    models.InvoiceItemRequest(
                        description="Punched cards", quantity="10", unit_price="1.25"
                    ),
                ],
            ),
        ),
        201,
        models.Invoice,
    )
    assert created.status == "draft"
    assert created.total == "312.50"
    assert created.due_date == due_date
    assert [item.description for item in created.items] == ["Design review", "Punched cards"]

    # One field to order by: the client sends a list as the parameter repeated, not the
    # comma-separated value the schema says (explode: false), and the server reads the last.
    drafts = _expect(
        api("invoices.list_invoices").sync_detailed(
            client=user, status="draft", ordering=["-created_at"], page_size=10
        ),
        200,
        models.PaginatedInvoiceList,
    )
    assert [invoice.id for invoice in drafts.results] == [created.id]
    assert drafts.count == 1

    finalized = _expect(
        api("invoices.finalize_invoice").sync_detailed(created.id, client=user),
        200,
        models.Invoice,
    )
    assert finalized.status == "finalized"
    assert re.fullmatch(r"INV-\d{4}-\d{3,}", finalized.number), finalized.number
    assert finalized.finalized_at is not None

    # --- Errors a SPA shows: a conflict and field errors -------------------------------------

    conflict = _expect(
        api("invoices.update_invoice").sync_detailed(
            created.id,
            client=user,
            body=models.PatchedInvoiceInputRequest(client_name="Too late"),
        ),
        409,
        models.Error,
    )
    assert conflict.detail

    invalid = _expect(
        api("invoices.create_invoice").sync_detailed(
            client=user,
            body=models.InvoiceInputRequest(
                client_name="Nobody",
                client_email="not-an-email",
                due_date=due_date,
                items=[
                    models.InvoiceItemRequest(description="Nothing", quantity="1", unit_price="1")
                ],
            ),
        ),
        400,
        models.FieldErrors,
    )
    assert invalid.additional_keys == ["client_email"]
    assert all(isinstance(message, str) for message in invalid["client_email"])

    # --- Sending, paying, the PDF ------------------------------------------------------------

    sent = _expect(
        api("invoices.send_invoice").sync_detailed(created.id, client=user),
        202,
        models.Invoice,
    )
    assert sent.status == "sent"
    assert sent.balance_due == "312.50"

    payment = _expect(
        api("invoices.record_payment").sync_detailed(
            created.id,
            client=user,
            body=models.PaymentRequest(amount=sent.balance_due, method="bank_transfer"),
        ),
        201,
        models.Payment,
    )
    assert payment.amount == sent.balance_due
    assert payment.method == "bank_transfer"

    paid = _expect(
        api("invoices.get_invoice").sync_detailed(created.id, client=user), 200, models.Invoice
    )
    assert paid.status == "paid"
    assert paid.balance_due == "0.00"
    assert paid.paid_at is not None

    pdf = api("invoices.get_invoice_pdf").sync_detailed(created.id, client=user)
    assert pdf.status_code == 200, pdf.content[:500]
    assert pdf.headers["content-type"] == "application/pdf"
    assert isinstance(pdf.parsed, types.File), type(pdf.parsed)
    assert pdf.parsed.payload.read().startswith(b"%PDF")

    # --- Download links ----------------------------------------------------------------------

    link = _expect(
        api("invoices.create_download_link").sync_detailed(
            created.id,
            client=user,
            body=models.DownloadLinkInputRequest(expires_in_hours=2, max_downloads=3),
        ),
        201,
        models.NewDownloadLink,
    )
    assert urlsplit(link.url).path.startswith("/downloads/")
    assert link.max_downloads == 3

    links = _expect(
        api("invoices.list_download_links").sync_detailed(created.id, client=user), 200, list
    )
    assert all(isinstance(each, models.DownloadLink) for each in links)
    # Sending the invoice made a link of its own, the one its email carries.
    [listed] = [each for each in links if each.id == link.id]
    assert listed.revoked_at is None

    revoked = api("invoices.revoke_download_link").sync_detailed(created.id, link.id, client=user)
    assert revoked.status_code == 204, revoked.content
    after = _expect(
        api("invoices.list_download_links").sync_detailed(created.id, client=user), 200, list
    )
    assert {each.id: each.revoked_at is not None for each in after} == {
        each.id: each.id == link.id for each in links
    }

    # --- Notifications -----------------------------------------------------------------------

    unread = _expect(
        api("notifications.list_notifications").sync_detailed(
            client=user, is_read=False, page_size=50
        ),
        200,
        models.PaginatedNotificationList,
    )
    assert "invoice_paid" in [each.type_ for each in unread.results]
    assert all(not each.is_read for each in unread.results)

    count = _expect(
        api("notifications.count_unread_notifications").sync_detailed(client=user),
        200,
        models.UnreadCount,
    )
    assert count.unread_count == unread.count

    read = _expect(
        api("notifications.mark_notification_read").sync_detailed(
            unread.results[0].id, client=user
        ),
        200,
        models.Notification,
    )
    assert read.is_read is True
    assert read.read_at is not None

    marked = _expect(
        api("notifications.mark_all_notifications_read").sync_detailed(client=user),
        200,
        models.Marked,
    )
    assert marked.marked == count.unread_count - 1
    none_left = _expect(
        api("notifications.count_unread_notifications").sync_detailed(client=user),
        200,
        models.UnreadCount,
    )
    assert none_left.unread_count == 0

    # --- Subscription ------------------------------------------------------------------------

    missing = _expect(
        api("subscription.get_subscription").sync_detailed(client=user), 404, models.Error
    )
    assert missing.detail

    subscribed = _expect(
        api("subscription.activate_subscription").sync_detailed(
            client=user, body=models.ActivateSubscriptionRequest(plan="pro")
        ),
        201,
        models.Subscription,
    )
    assert (subscribed.plan, subscribed.status) == ("pro", "active")

    subscription = _expect(
        api("subscription.get_subscription").sync_detailed(client=user),
        200,
        models.Subscription,
    )
    assert subscription.plan == "pro"

    renewed = _expect(
        api("subscription.renew_subscription").sync_detailed(client=user),
        200,
        models.Subscription,
    )
    assert renewed.current_period_end > subscribed.current_period_end

    cancelled = _expect(
        api("subscription.cancel_subscription").sync_detailed(client=user),
        200,
        models.Subscription,
    )
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None

    # --- Staff: the audit trail --------------------------------------------------------------

    forbidden = _expect(api("audit.list_audit_logs").sync_detailed(client=user), 403, models.Error)
    assert forbidden.detail

    staff = connect(create_auth_token(superuser))

    # A cursor page's `next` is a full URL: its `cursor` is what the next call passes.
    seen: list[int] = []
    cursor = types.UNSET
    for number in range(1, 4):
        page = _expect(
            api("audit.list_audit_logs").sync_detailed(client=staff, page_size=2, cursor=cursor),
            200,
            models.PaginatedAuditLogList,
        )
        assert len(page.results) == 2, f"page {number}"
        seen += [entry.id for entry in page.results]
        assert page.next_, f"no page after page {number}"
        [cursor] = parse_qs(urlsplit(page.next_).query)["cursor"]
    assert seen == sorted(set(seen), reverse=True), "pages repeat or are not newest first"

    invoice_entries = _expect(
        api("audit.list_audit_logs").sync_detailed(
            client=staff, action="invoice.", user=signup.id, page_size=50
        ),
        200,
        models.PaginatedAuditLogList,
    )
    actions = [entry.action for entry in invoice_entries.results]
    assert all(action.startswith("invoice.") for action in actions), actions
    assert all(entry.user == signup.id for entry in invoice_entries.results)
    for action in ["invoice.created", "invoice.finalized", "invoice.sent", "invoice.paid"]:
        assert action in actions

    # The smallest retention the schema allows, in a dry run: nothing is deleted.
    [days] = [
        parameter["schema"]["minimum"]
        for parameter in generated.schema["paths"]["/api/audit/cleanup/"]["delete"]["parameters"]
        if parameter["name"] == "days"
    ]
    cleanup = _expect(
        api("audit.cleanup_audit_logs").sync_detailed(client=staff, days=days, dry_run=True),
        200,
        models.CleanupResult,
    )
    assert cleanup.dry_run is True
    assert cleanup.deleted == 0
    assert date.today() - cleanup.cutoff.date() >= timedelta(days=days)

    verification = _expect(
        api("audit.verify_audit_logs").sync_detailed(client=staff),
        200,
        models.Verification,
    )
    assert verification.ok is True, verification
    assert verification.checked > 0
    assert verification.first_bad_id is None

    jsonl = api("audit.export_audit_logs").sync_detailed(
        client=staff, format_="jsonl", user=signup.id
    )
    assert jsonl.status_code == 200, jsonl.content[:500]
    assert jsonl.parsed == jsonl.content.decode()  # declared text: parsed as text
    lines = jsonl.content.decode().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries
    assert all(isinstance(entry, dict) and "action" in entry for entry in entries), lines[:3]

    exported = api("audit.export_audit_logs").sync_detailed(
        client=staff, format_="csv", user=signup.id
    )
    assert exported.status_code == 200, exported.content[:500]
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.parsed == exported.content.decode()
    header, *rows = csv.reader(io.StringIO(exported.content.decode()))
    assert "action" in header
    assert len(rows) == len(entries)
