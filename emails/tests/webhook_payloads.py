"""Delivery events in each provider's documented format, signed or authenticated as that
provider does, for posting to the running app."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

WEBHOOK_USER = ("esp", "hook-secret")
MAILGUN_SIGNING_KEY = "key-mailgun-webhook-signing"


class SendGridSigner:
    """SendGrid's signed event webhook: ECDSA P-256 over the timestamp and the body."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(public).decode()

    def headers(self, body: bytes, *, timestamp: str | None = None) -> dict:
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def url(live_server, provider: str) -> str:
    return f"{live_server.url}/webhooks/email/{provider}/tracking/"


def post_json(live_server, provider: str, payload, *, auth=WEBHOOK_USER, headers=None):
    return requests.post(
        url(live_server, provider),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=auth,
        timeout=10,
    )


def postmark(record_type: str, message_id: str, to: str, **fields) -> dict:
    event = {
        "RecordType": record_type,
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Metadata": {},
        "Tag": "",
    }
    if record_type == "Delivery":
        return {
            **event,
            "Recipient": to,
            "DeliveredAt": "2026-11-30T16:33:54.907Z",
            "Details": "Test delivery webhook details",
            **fields,
        }
    return {
        **event,
        "ID": fields.pop("ID", 4323372036854775807),
        "Type": "HardBounce" if record_type == "Bounce" else "SpamComplaint",
        "Email": to,
        "From": "noreply@invoicegen.local",
        "BouncedAt": "2026-11-30T16:40:00Z",
        "Description": "mailbox unavailable",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your document",
        **fields,
    }


def mailgun(event: str, message_id: str, to: str, *, key: str = MAILGUN_SIGNING_KEY, **data):
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": {
            "event": event,
            "id": uuid.uuid4().hex[:22],
            "timestamp": time.time(),
            "recipient": to,
            "message": {"headers": {"message-id": message_id.strip("<>")}},
            "user-variables": {},
            **data,
        },
    }


def sendgrid(event: str, message_id: str, to: str, **fields) -> dict:
    return {
        "email": to,
        "timestamp": int(time.time()),
        "event": event,
        "sg_event_id": fields.pop("sg_event_id", uuid.uuid4().hex),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": message_id,
        "anymail_id": message_id,
        **fields,
    }


def brevo(event: str, message_id: str, to: str, **fields) -> dict:
    return {
        "event": event,
        "email": to,
        "id": 1234567,
        "date": "2026-11-30 17:00:00",
        "ts": 1796050800,
        "ts_epoch": 1796050800123,
        "message-id": message_id,
        "subject": "Your document",
        "reason": "550 5.1.1 mailbox unavailable",
        **fields,
    }


def sns(ses_event: dict, *, message_id: str | None = None) -> tuple[dict, dict]:
    """An Amazon SES event as Amazon SNS posts it: the SES event JSON in `Message`."""
    message_id = message_id or str(uuid.uuid4())
    body = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2026-11-30T17:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
    }
    headers = {"x-amz-sns-message-type": "Notification", "x-amz-sns-message-id": message_id}
    return body, headers


def ses_bounce(message_id: str, to: str, *, bounce_type: str = "Permanent") -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": to, "diagnosticCode": "smtp; 550 5.1.1"}],
            "timestamp": "2026-11-30T17:00:00.000Z",
            "feedbackId": str(uuid.uuid4()),
        },
        "mail": {
            "timestamp": "2026-11-30T16:59:00.000Z",
            "messageId": message_id,
            "destination": [to],
            "headers": [],
        },
    }


def post_sendgrid(live_server, signer: SendGridSigner, events: list[dict], *, headers=None):
    """A batch of SendGrid events, as SendGrid posts them (signed by `signer`, or `headers`)."""
    body = json.dumps(events).encode()
    return requests.post(
        url(live_server, "sendgrid"),
        data=body,
        headers={"Content-Type": "application/json", **(headers or signer.headers(body))},
        auth=WEBHOOK_USER,
        timeout=10,
    )
