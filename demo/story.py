"""The whole system in one story: a user signs up and bills a client, the client downloads the
invoice, an admin steps in, and the audit trail, notifications, outbox and download log say
what happened. Runs through the real API, in process, on whatever database is configured;
emails are captured instead of sent, and it can be run again and again. It drives the API with
Django's test client, so it lives here, outside the apps that ship: `make demo`."""

import base64
import re
import uuid

from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.conf import settings
from django.core import mail
from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import color_style
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from audit import services as audit
from audit.models import AuditLog
from audit.verification import verify_audit_log
from downloads.models import DownloadEvent, SecureDownloadToken
from emails.models import EmailLog
from invoicegen import celery_app
from invoicegen.accounts.models import User
from invoicegen.accounts.services import create_auth_token
from notifications.models import Notification
from webhooks.receiver import Receiver

PASSWORD = "demo-password-correct-horse"  # noqa: S105 (a demo account)
CLIENT = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "demo"}
# The email provider's webhook (Postmark's format) and the basic auth the demo gives it.
WEBHOOK = "/webhooks/email/postmark/tracking/"
WEBHOOK_SECRET = "demo:webhook-secret"  # noqa: S105 (the demo's own)


class StandInProvider(AnymailTestBackend):
    """An email provider that keeps what it is given, as the locmem backend does, and names
    each message as a real provider does: with an id its delivery events will carry."""

    def get_esp_message_id(self, message):
        return f"demo-{uuid.uuid4()}"


class Story:
    """The whole lifecycle once, signup to audit verification, told on `out`."""

    def __init__(self, out):
        self.stdout = OutputWrapper(out)
        self.style = color_style()

    def tell_all(self) -> None:
        previous_eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True  # tasks run here, after each commit
        mail.outbox = []
        try:
            # Ada's webhook receiver listens on this machine, over http: allowed for the story.
            with (
                override_settings(
                    EMAIL_BACKEND="demo.story.StandInProvider",
                    ANYMAIL={**settings.ANYMAIL, "WEBHOOK_SECRET": [WEBHOOK_SECRET]},
                    ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "localhost"],
                    WEBHOOK_ALLOW_PRIVATE_NETWORKS=True,
                    WEBHOOK_ALLOW_HTTP_LOOPBACK=True,
                ),
                Receiver() as self.receiver,
            ):
                self.story()
        finally:
            celery_app.conf.task_always_eager = previous_eager

    def say(self, text: str) -> None:
        self.stdout.write(text)

    def step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n{text}"))

    def story(self):
        mark = AuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
        run = uuid.uuid4().hex[:6]
        email = f"ada.{run}@example.com"
        api = APIClient(**CLIENT)

        self.step(f"1. Ada signs up as {email}, verifies her email, logs in, adds a webhook")
        _ok(api.post("/api/auth/signup/", {"email": email, "password": PASSWORD, "name": "Ada"}))
        verify = _link(mail.outbox[-1], r"verify-email\?uid=([^&]+)&token=([^\s\"<]+)")
        _ok(api.post("/api/auth/verify-email/", {"uid": verify[0], "token": verify[1]}))
        token = _ok(api.post("/api/auth/login/", {"email": email, "password": PASSWORD})).json()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token['token']}")
        endpoint = _ok(
            api.post(
                "/api/webhooks/endpoints/",
                {"url": self.receiver.url, "event_types": ["invoice.*", "payment.*"]},
                format="json",
            )
        ).json()
        self.receiver.secret = endpoint["secret"]
        self.say(f"   her webhook endpoint: {endpoint['url']} (invoice.*, payment.*)")

        self.step("2. She bills a client: create, finalize, send")
        invoice = _ok(
            api.post(
                "/api/invoices/",
                {
                    "client_name": "Globex Ltd",
                    "client_email": f"billing.{run}@globex.example",
                    "currency": "EUR",
                    "due_date": (timezone.localdate() + timezone.timedelta(days=30)).isoformat(),
                    "items": [
                        {"description": "Design sprint", "quantity": "3", "unit_price": "800.00"},
                        {"description": "Hosting", "quantity": "1", "unit_price": "49.90"},
                    ],
                },
                format="json",
            )
        ).json()
        number, total = invoice["number"], invoice["total"]
        _ok(api.post(f"/api/invoices/{invoice['id']}/finalize/"))
        _ok(api.post(f"/api/invoices/{invoice['id']}/send/", {}, format="json"))
        self.say(f"   {number}, total {total} EUR, sent to the client")
        self.deliver(invoice["id"])

        self.step("3. The client opens the emailed link and downloads the PDF three times")
        url = _link(mail.outbox[-1], r"(https?://\S+/downloads/[A-Za-z0-9_-]+/)")[0]
        path = url.split("://", 1)[1].split("/", 1)[1]
        browser = Client(**CLIENT)
        landing = browser.get(f"/{path}")
        self.say(f"   landing page: {landing.status_code} (a preview consumes nothing)")
        for _ in range(3):
            response = browser.post(f"/{path}")
            self.say(f"   download: {response.status_code} {response['Content-Type']}")

        self.step("4. The client pays; Ada upgrades to Pro, then cancels")
        _ok(
            api.post(
                f"/api/invoices/{invoice['id']}/payments/",
                {"amount": total, "method": "bank_transfer"},
                format="json",
            )
        )
        _ok(api.post("/api/subscription/", {"plan": "pro"}))
        _ok(api.post("/api/subscription/cancel/"))

        self.step("5. An admin sends Ada a message from the admin, and previews a cleanup")
        admin, _ = User.objects.get_or_create(
            email="demo-admin@example.com",
            defaults={"name": "Demo admin", "is_staff": True, "is_superuser": True},
        )
        admin_browser = Client(**CLIENT)
        admin_browser.force_login(admin)
        ada = User.objects.get(email=email)
        admin_browser.post(
            "/admin/accounts/user/",
            {
                "action": "send_message",
                "_selected_action": [ada.pk],
                "apply": "Send",
                "title": "Welcome aboard",
                "message": "Thanks for choosing invoicegen.",
            },
        )
        staff_api = APIClient(**CLIENT)
        staff_api.credentials(HTTP_AUTHORIZATION=f"Token {create_auth_token(admin)}")
        preview = _ok(staff_api.delete("/api/audit/cleanup/?days=365&dry_run=true")).json()
        self.say(f"   cleanup dry run: {preview['deleted']} entries older than 365 days")

        self.tell(mark, ada, number)
        self.tell_timeline(api, invoice["id"], number)

    def deliver(self, invoice_id: int) -> None:
        """The provider tells the app that the client's mail server took the email: a
        Postmark delivery event, posted to the webhook with its basic auth."""
        email = EmailLog.objects.filter(
            resource_type="invoice", resource_id=str(invoice_id), on_behalf_of__isnull=False
        ).latest("id")
        event = {
            "RecordType": "Delivery",
            "MessageID": email.provider_message_id,
            "Recipient": email.to_email,
            "DeliveredAt": timezone.now().isoformat(),
            "Details": "smtp;250 2.0.0 OK",
            "ServerID": 1,
            "MessageStream": "outbound",
        }
        secret = base64.b64encode(WEBHOOK_SECRET.encode()).decode()
        webhook = Client(**CLIENT, HTTP_AUTHORIZATION=f"Basic {secret}")
        _ok(webhook.post(WEBHOOK, event, content_type="application/json"))
        self.say(f"   the provider reports it delivered to {email.to_email} (webhook: 200)")

    def tell_timeline(self, api, invoice_id: int, number: str) -> None:
        self.step(f"The timeline of {number}, as Ada's app reads it")
        url = f"/api/invoices/{invoice_id}/timeline/"
        while url:
            page = _ok(api.get(url)).json()
            for item in page["results"]:
                kind, when = item["type"], item["occurred_at"][:19]
                where = f"from {item['ip_address']}" if kind in ("viewed", "downloaded") else ""
                self.say(f"   {when} {kind:<12} {where or item['description']}")
            url = page["next"]

    def tell(self, mark: int, ada: User, number: str) -> None:
        self.step("The audit trail of this run (who, what, from where)")
        for entry in AuditLog.objects.filter(id__gt=mark).order_by("id"):
            target = f"{entry.resource_type} {entry.resource_id}".strip()
            self.say(
                f"   #{entry.id:<5} {entry.action:<30} {entry.user_email or '-':<28} "
                f"{target:<16} {entry.ip_address or '-':<15} {entry.method:<6} {entry.path}"
            )

        self.step("Ada's notifications")
        for notification in Notification.objects.filter(user=ada, in_app=True).order_by("id"):
            state = "read" if notification.read_at else "unread"
            self.say(f"   [{state:<6}] {notification.type:<24} {notification.title}")

        self.step("The outbox")
        recipients = [ada.email, *(m.to[0] for m in mail.outbox)]
        for email in EmailLog.objects.filter(to_email__in=recipients).order_by("id"):
            self.say(
                f"   {email.status:<7} {email.template_name:<28} to {email.to_email:<30} "
                f"attempts {email.attempts}"
            )

        self.step(f"The download link of {number}")
        link = SecureDownloadToken.objects.filter(email__to_email__in=recipients).last()
        self.say(
            f"   token {link.token_hash[:12]}… (only its hash is stored): "
            f"{link.download_count} of {link.max_downloads} downloads used, "
            f"expires {link.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        for event in DownloadEvent.objects.filter(token=link).order_by("id"):
            what = event.kind if event.kind == DownloadEvent.Kind.VIEWED else event.reason
            self.say(f"   {event.created_at:%H:%M:%S} {what:<9} from {event.ip_address}")

        self.step("The signed webhooks Ada's receiver got (standardwebhooks checks each)")
        for received in self.receiver.received:
            verified = "signature OK" if received.verified else "signature WRONG"
            self.say(
                f"   {received.headers['webhook-id']}  {received.payload['type']:<18} {verified}"
                f"  (webhook-timestamp {received.headers['webhook-timestamp']})"
            )

        self.step("Sealing and verifying the whole trail")
        while audit.seal_audit_log():
            pass
        result = verify_audit_log()
        style = self.style.SUCCESS if result.ok else self.style.ERROR
        self.say(style(f"   verified {result.checked} entries: {'OK' if result.ok else 'BROKEN'}"))


def _ok(response):
    if response.status_code >= 400:
        body = response.content.decode(errors="replace")[:500]
        raise CommandError(
            f"{response.request['PATH_INFO']} answered {response.status_code}: {body}"
        )
    return response


def _link(message, pattern: str) -> tuple[str, ...]:
    found = re.search(pattern, message.body)
    if found is None:
        raise RuntimeError(f"no link in the email {message.subject!r}")
    return found.groups()
