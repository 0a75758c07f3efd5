import io
import re

import pytest

from audit.models import AuditLog
from demo.story import Story
from downloads.models import DownloadEvent

# The demo commits as a real run does: its emails go out after each commit.
pytestmark = pytest.mark.django_db(transaction=True)


def run_demo() -> str:
    out = io.StringIO()
    Story(out).tell_all()
    return out.getvalue()


def test_the_demo_tells_the_whole_story():
    story = run_demo()

    for action in [
        "user.signup", "user.email_verified", "user.login", "invoice.created",
        "invoice.finalized", "invoice.sent", "download.link_created", "download.succeeded",
        "payment.processed", "invoice.paid", "subscription.activated", "subscription.cancelled",
        "admin.bulk_action", "admin.audit_cleanup",
    ]:  # fmt: skip
        assert action in story
    assert story.count("download: 200 application/pdf") == 3
    assert "3 of 5 downloads used" in story
    assert re.search(r"sent +invoice_notification_client", story)
    assert "verified" in story and ": OK" in story
    downloads = DownloadEvent.objects.filter(kind=DownloadEvent.Kind.DOWNLOAD, granted=True)
    assert downloads.count() == 3
    assert DownloadEvent.objects.filter(kind=DownloadEvent.Kind.VIEWED).count() == 1
    assert re.search(r"viewed +from ", story)


def test_the_demo_registers_a_webhook_receiver_and_prints_its_signed_deliveries():
    story = run_demo()

    received = story.split("The signed webhooks Ada's receiver got")[1].split("\n\n")[0]
    lines = re.findall(r"^ +(msg_\S+) +(\S+) +signature OK", received, flags=re.MULTILINE)
    assert [kind for _, kind in lines] == [
        "invoice.finalized", "invoice.sent", "invoice.viewed", "payment.received", "invoice.paid",
    ]  # fmt: skip
    assert "signature WRONG" not in received


def test_the_demo_prints_the_invoices_timeline_with_its_delivery():
    """sent -> delivered (the provider's event, posted to the webhook) -> viewed -> downloaded
    -> paid, read back through the timeline API."""
    story = run_demo()

    timeline = story.split("The timeline of ")[1]
    kinds = re.findall(r"^ +\S+ (\w+) ", timeline, flags=re.MULTILINE)
    assert kinds == [
        "created", "finalized", "sent", "delivered", "viewed",
        "downloaded", "downloaded", "downloaded", "payment", "paid",
    ]  # fmt: skip
    assert "(webhook: 200)" in story


def test_the_demo_can_run_again():
    run_demo()
    second = run_demo()

    assert ": OK" in second
    assert AuditLog.objects.filter(action="user.signup").count() == 2
