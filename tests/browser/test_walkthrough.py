"""The whole product in a real browser, as its three people meet it: an owner signs up, clicks
the emailed verification link, sets up their business and bills a client, as an SPA on this
origin would (fetch with a token); the client opens the emailed link and downloads the PDF;
the owner reads the same PDF; staff look at the outbox. `make screens` runs it with
SCREENS_DIR=bench/results/screens to keep its pictures."""

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone
from PIL import Image
from pypdf import PdfReader

from emails.models import EmailLog
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from tests.browser.dashboard import save_dashboard

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = {"email": "maya@northwind.example", "password": "Sturdy-Passphrase-2026", "name": "Maya"}
CLIENT = "accounts@globex.example"
FETCH = """async ([method, path, body, token]) => {
    const headers = {"Content-Type": "application/json"};
    if (token) headers["Authorization"] = "Token " + token;
    const init = {method, headers, body: body === null ? undefined : JSON.stringify(body)};
    const response = await fetch(path, init);
    const text = await response.text();
    return {status: response.status, body: text ? JSON.parse(text) : null};
}"""


@pytest.fixture
def screens(tmp_path) -> Path:
    folder = Path(os.environ.get("SCREENS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def call(page, method: str, path: str, body=None, token=None) -> dict:
    return page.evaluate(FETCH, [method, path, body, token])


def emailed_link(to: str, pattern: str) -> str:
    [link] = {
        link
        for message in mail.outbox
        if message.to == [to]
        for link in re.findall(pattern + r"[^\s\"'<>]+", message.body)
    }
    return link


def logo_data_url() -> str:
    picture = Image.new("RGB", (300, 90), "#14532d")
    picture.paste(Image.new("RGB", (90, 90), "#facc15"), (0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def every_block_of(content: bytes, number: str) -> list[str]:
    """The parts of the invoice missing from its PDF (none, when it is whole)."""
    reader = PdfReader(io.BytesIO(content))
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    parts = [
        "INVOICE", number, "Northwind Studio Ltd", "4 Quay Street", "Tax ID: GB987654321",
        OWNER["email"], "Bill to", "Globex Corporation", "1 Globex Way", CLIENT,
        "Issue date", "Due date Jan 31, 2030", "Description Quantity Unit price Amount",
        "Brand identity 1 £2,400.00 £2,400.00", "Workshop day 2 £650.00 £1,300.00",
        "Subtotal £3,700.00", "Tax (20%) £740.00", "Total £4,440.00", "Balance due £4,440.00",
        "How to pay", "Sort code 20-00-00", "Notes", "Payment within 30 days", "Page 1 of 1",
    ]  # fmt: skip
    missing = [part for part in parts if part not in text]
    return missing + ([] if reader.pages[0].images else ["the logo"])


def picture_of_page_one(pdf: Path, png: Path) -> None:
    pdftoppm = shutil.which("pdftoppm")
    if not pdftoppm:
        if os.environ.get("CI"):
            pytest.fail("poppler-utils is not installed (.ci/run installs it)")
        pytest.skip("pdftoppm is not installed: apt-get install poppler-utils")
    stem = png.with_suffix("")
    subprocess.run([pdftoppm, "-png", "-r", "80", "-singlefile", pdf, stem], check=True, timeout=60)


def test_sign_up_to_a_paid_for_pdf_in_a_browser(live_server, page, settings, screens):
    settings.APP_BASE_URL = live_server.url  # the emailed links lead to this server's pages
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/healthz")

    # The owner signs up and verifies their address through the emailed link.
    assert call(page, "POST", "/api/auth/signup/", OWNER)["status"] == 201
    page.goto(emailed_link(OWNER["email"], re.escape(f"{live_server.url}/verify-email?")))
    page.click("#verify")
    assert page.locator("h1").inner_text() == "Email verified"

    # Their business, an invoice to a client, finalized and sent.
    login = call(page, "POST", "/api/auth/login/", {k: OWNER[k] for k in ("email", "password")})
    token = login["body"]["token"]
    profile = {
        "legal_name": "Northwind Studio Ltd",
        "address": "4 Quay Street\nBristol BS1 4DJ",
        "tax_id": "GB987654321",
        "payment_instructions": "Bank transfer. Sort code 20-00-00, account 12345678",
        "notes": "Payment within 30 days. Thank you!",
        "logo": logo_data_url(),
    }
    assert call(page, "PATCH", "/api/business-profile/", profile, token)["status"] == 200
    draft = call(
        page,
        "POST",
        "/api/invoices/",
        {
            "client_name": "Globex Corporation",
            "client_email": CLIENT,
            "client_address": "1 Globex Way\nCypress Creek",
            "currency": "GBP",
            "due_date": "2030-01-31",
            "tax_rate": "20",
            "items": [
                {"description": "Brand identity", "quantity": "1", "unit_price": "2400.00"},
                {"description": "Workshop day", "quantity": "2", "unit_price": "650.00"},
            ],
        },
        token,
    )
    assert draft["status"] == 201, draft
    invoice = draft["body"]
    assert (invoice["subtotal"], invoice["tax_total"], invoice["total"]) == (
        "3700.00",
        "740.00",
        "4440.00",
    )
    base = f"/api/invoices/{invoice['id']}"
    assert call(page, "POST", f"{base}/finalize/", None, token)["status"] == 200
    assert call(page, "POST", f"{base}/send/", {}, token)["status"] == 202

    # The client opens the emailed link (a landing page that consumes nothing) and downloads.
    page.goto(emailed_link(CLIENT, re.escape(f"{live_server.url}/downloads/")))
    assert invoice["number"] in page.locator("h1").inner_text()
    assert "Northwind Studio Ltd" in page.content()
    page.screenshot(path=screens / "download-landing.png", full_page=True)
    with page.expect_download() as download:
        page.click("#download")
    downloaded = screens / "invoice.pdf"
    download.value.save_as(downloaded)
    assert every_block_of(downloaded.read_bytes(), invoice["number"]) == []

    # The owner reads the same invoice.
    owners = page.request.get(
        f"{live_server.url}{base}/pdf/",
        headers={"Authorization": f"Token {token}", "Accept": "application/pdf"},
    )
    assert owners.status == 200
    assert every_block_of(owners.body(), invoice["number"]) == []
    picture_of_page_one(downloaded, screens / "invoice-pdf.png")
    assert (screens / "invoice-pdf.png").stat().st_size > 10_000

    # Staff see the day on the dashboard, then the client's email in the outbox, rendered as
    # the client saw it.
    staff = UserFactory(email="ops@invoicegen.example", is_staff=True, is_superuser=True)
    save_dashboard(page, live_server.url, staff.email, PASSWORD, screens / "dashboard.png")
    today = timezone.localdate()
    assert page.locator(f"svg.chart title:text-is('{today:%b} {today.day}, granted: 1')").count()
    sent = EmailLog.objects.get(to_email=CLIENT)
    page.goto(f"{live_server.url}/admin/emails/emaillog/{sent.pk}/change/")
    frame = page.frame_locator("iframe").locator("body")
    assert invoice["number"] in frame.inner_text()
    assert "Northwind Studio Ltd" in frame.inner_text()
    page.locator("iframe").scroll_into_view_if_needed()
    page.screenshot(path=screens / "outbox-preview.png", full_page=True)
