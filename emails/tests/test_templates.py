"""Every email reads as a person would write it: each paragraph of its plain and HTML parts
starts with a capital letter, whichever event it tells of."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from emails import services
from emails.models import EmailLog

CONTEXT = {
    "name": "Ada",
    "minutes": 15,
    "title": "Planned maintenance",
    "message": "Tonight at 22:00 UTC.",
    "invoice_number": "INV-2026-001",
    "invoice_id": 1,
    "issuer": "Grace Hopper",
    "client_name": "Acme Ltd",
    "total": "100.00 USD",
    "due_date": "2030-01-31",
    "to": "ap@acme.example",
}
EVENTS = ["invoice_finalized", "invoice_sent", "invoice_paid"]
BRAND_OR_LINK = re.compile(r"^(invoicegen\b|https?://|\[)")


def templates() -> list[str]:
    folder = Path(settings.BASE_DIR) / "templates" / "email"
    names = sorted(path.stem for path in folder.glob("*.email") if path.stem != "base")
    assert names, folder
    return names


def cases():
    for name in templates():
        events = EVENTS if name == "invoice_notification_user" else [""]
        for event in events:
            yield pytest.param(name, event, id=f"{name}{'-' + event if event else ''}")


def paragraphs(plain: str, html: str) -> list[str]:
    texts = [part.strip() for part in re.split(r"\n\s*\n", plain)]
    for part in re.findall(r"<p[^>]*>(.*?)</p>", html, re.S):
        texts.append(re.sub(r"<[^>]+>", "", part).strip())
    return [text for text in texts if text and not BRAND_OR_LINK.match(text)]


@pytest.mark.parametrize(("name", "event"), list(cases()))
def test_every_paragraph_starts_a_sentence(name, event):
    email = EmailLog(
        template_name=name,
        context={**CONTEXT, "event": event},
        to_email="a@b.example",
        from_email=settings.DEFAULT_FROM_EMAIL,
        message_id="<x@invoicegen.test>",
    )

    message = services.render(email, with_secrets=False)

    assert message.subject[0].isupper(), message.subject
    html = message.alternatives[0][0]
    lower = [text for text in paragraphs(message.body, html) if text[0].islower()]
    assert lower == []
