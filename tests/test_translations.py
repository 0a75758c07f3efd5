"""What reaches a person speaks their language: every catalog has every message the code and
templates say (the build fails on one it lacks), every customer-facing template renders in every
language with nothing left in English, and a message a catalog lacks falls back to English with
one warning (invoicegen/core/i18n.py)."""

import logging
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.html import strip_tags
from django.utils.translation import gettext

from invoicegen.core.i18n import untranslated

ROOT = Path(settings.BASE_DIR)
LANGUAGES = [code for code, _ in settings.LANGUAGES if code != "en"]
TEMPLATES = ROOT / "templates"


@pytest.fixture
def reported(caplog):
    """The warnings of untranslated messages logged from now on (each is logged once a
    process: forget those logged before)."""
    untranslated.reported.clear()
    caplog.set_level(logging.WARNING, logger="invoicegen.i18n")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "invoicegen.i18n"]


def test_every_catalog_is_compiled_as_it_is_now():
    """`make` compiles them (gettext's msgfmt): a catalog not compiled speaks English."""
    stale = [
        str(po.relative_to(ROOT))
        for po in ROOT.glob("locale/*/LC_MESSAGES/django.po")
        if not po.with_suffix(".mo").exists()
        or po.with_suffix(".mo").stat().st_mtime < po.stat().st_mtime
    ]
    assert stale == [], "run `make messages` (it needs gettext: apt-get install gettext)"


def test_a_message_no_catalog_has_is_english_and_logged_once_a_language(reported):
    with translation.override("de"):
        first, again = gettext("Nobody translated this"), gettext("Nobody translated this")
    with translation.override("fr"):
        gettext("Nobody translated this")
    with translation.override("en"):
        gettext("Nobody translated this")

    assert first == again == "Nobody translated this"
    assert reported() == [
        "No de translation of 'Nobody translated this': it is shown in English.",
        "No fr translation of 'Nobody translated this': it is shown in English.",
    ]


def test_a_translated_message_is_not_logged(reported):
    with translation.override("de"):
        assert gettext("Invoice paid") != "Invoice paid"
    assert reported() == []


@pytest.mark.skipif(
    not shutil.which("xgettext") or not shutil.which("make"), reason="needs gettext and make"
)
def test_every_catalog_has_every_message(tmp_path):
    """`make update-messages` on a copy of the project finds no message a catalog lacks (new,
    empty or fuzzy)."""
    copy = tmp_path / "project"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "node_modules", "results", "__pycache__", "*.mo", "db.sqlite3*"
        ),
    )
    run = subprocess.run(
        [shutil.which("make"), "-s", "-o", "install", "update-messages", f"PY={sys.executable}"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lacking = {}
    for language in LANGUAGES:
        with open(copy / "locale" / language / "LC_MESSAGES" / "django.po", "rb") as po:
            lacking[language] = [message.id for message in read_po(po) if _lacks(message)]
    assert lacking == {language: [] for language in LANGUAGES}


def _lacks(message) -> bool:
    """A message (not the header) with no translation, one plural form missing, or fuzzy."""
    forms = message.string if isinstance(message.string, tuple) else (message.string,)
    return bool(message.id) and (message.fuzzy or not all(forms))


# Every customer-facing template, in every language

LINK = SimpleNamespace(downloads_left=3, expires_at=timezone.now())
CONTEXT = {
    "name": "Ada",
    "title": "Quarterly update",
    "message": "The office is closed on Friday.",
    "invoice_number": "INV-2026-007",
    "issuer": "Northwind Studio",
    "client_name": "Globex",
    "total": "1.234,56 €",
    "balance_due": "234,56 €",
    "due_date": "10.12.2026",
    "when_due": "…",
    "to": "ap@globex.example",
    "download_url": "https://app.example/downloads/x/",
    "verify_url": "https://app.example/verify-email?uid=1&token=x",
    "reset_url": "https://app.example/reset-password?uid=1&token=x",
    "app_base_url": "https://app.example",
    "frequency": "daily",
    "groups": [{"label": "Rechnung bezahlt", "count": 2, "items": ["…", "…"]}],
    "plan": "Pro",
    "period_ends": "31.12.2026",
    "event": "invoice_paid",
    "link": LINK,
    "fields": [("…", "Globex")],
    "stop": SimpleNamespace(label="…", user=None, address="ap@globex.example", sender=None),
}
STATES = {
    "emails/unsubscribe.html": [
        {"state": state} for state in ("confirm", "done", "invalid", "unknown", "throttled")
    ],
    "downloads/denied.html": [
        {"reason": reason} for reason in ("unknown", "expired", "revoked", "exhausted", "throttled")
    ],
    "email/notification_digest.email": [{"count": 1}, {"count": 3}],
}
PAGES = sorted(
    str(path.relative_to(TEMPLATES))
    for folder in ("email", "accounts", "downloads", "emails", "notifications")
    for path in (TEMPLATES / folder).iterdir()
    if path.name not in ("base.email", "base.html")
)


def values(value) -> list[str]:
    """Every string in a context value (lists, pairs, objects)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict | SimpleNamespace):
        value = vars(value).values() if isinstance(value, SimpleNamespace) else value.values()
    if isinstance(value, list | tuple | type({}.values())):
        return [text for item in value for text in values(item)]
    return []


def texts(html: str) -> set[str]:
    """The lines of text a reader sees, without the context's values, the links, the product's
    name and a page's style and script: what is left must be in the reader's language."""
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.DOTALL)
    text = unescape(strip_tags(text))
    text = re.sub(r"https?://\S+", " ", text)
    for value in sorted([*values(CONTEXT), "invoicegen"], key=len, reverse=True):
        text = text.replace(value, " ")
    return {
        " ".join(line.split())
        for line in text.splitlines()
        if len(re.findall(r"[^\W\d_]{3,}", line)) >= 2
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", PAGES)
def test_every_template_speaks_every_language(template, language, reported):
    for state in STATES.get(template, [{}]):
        context = {**CONTEXT, **state}
        with translation.override("en"):
            english = texts(render_to_string(template, context))
        with translation.override(language):
            translated = texts(render_to_string(template, context))

        assert english - translated, f"{template} {state} is the same in {language}"
        assert not english & translated, f"left in English in {language}: {english & translated}"
    assert reported() == []


def test_what_was_logged_stays_bounded_in_a_long_lived_process(reported, monkeypatch):
    monkeypatch.setattr("invoicegen.core.i18n.MAX_REPORTED", 3)
    with translation.override("de"):
        for n in range(10):
            gettext(f"Free text {n}")

    assert len(untranslated.reported) <= 3
    assert len(reported()) == 10
