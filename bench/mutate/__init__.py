"""Mutation testing of the code that guards evidence and money: `make mutate` (or
`python -m bench.mutate outbox downloads`). Not a test and not in CI: a module takes minutes
to half an hour. Run it after changing one of the modules below or their tests, and before
calling such a change done; it writes bench/results/mutation.json.

Each module is mutated with its own tests only. Every mutant of its sources (operators.py:
decorated functions and module constants included) and the hand-made ones below (what no
operator reaches: SQL in strings, decimal literals, an argument dropped) runs against the tests
that execute the lines it changes, in a copy of the project, on SQLite. A mutant that no test
fails has survived: it is either named in EQUIVALENT, with why no test can tell it from the code
(or why it is not worth one), or it is a test to write.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HandMade:
    source: str
    text: str  # found once in the source
    replacement: str
    why: str  # the bug it stands for


@dataclass(frozen=True)
class Module:
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    hand_made: tuple[HandMade, ...] = ()
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant key -> reason


OUTBOX_SQL = "invoicegen/core/outbox.py"

MODULES = {
    "integrity": Module(
        sources=("audit/integrity.py",),
        tests=("audit/tests/test_integrity.py", "audit/tests/test_verification.py"),
        hand_made=(
            HandMade(
                "audit/integrity.py",
                "hmac.new(_key(), message.encode(), hashlib.sha256)",
                "hmac.new(_key(), None, hashlib.sha256)",
                "a checkpoint's HMAC over nothing: any recount and rehash verifies",
            ),
            HandMade(
                "audit/integrity.py",
                'separators=(",", ":")',
                'separators=(", ", ": ")',
                "the canonical form's separators changed in writer and verifier alike",
            ),
            HandMade(
                "audit/integrity.py",
                '    "resource_label",\n',
                "",
                "a digest field dropped: the admin's label could be rewritten unseen",
            ),
        ),
    ),
    "capture": Module(
        sources=("audit/receivers.py", "audit/tracking.py"),
        tests=(
            "audit/tests/test_capture.py",
            "audit/tests/test_receivers.py",
            "invoicegen/billing/tests/test_services.py",
        ),
    ),
    "outbox": Module(
        sources=(OUTBOX_SQL, "emails/services.py"),
        tests=(
            "emails/tests/test_services.py",
            "emails/tests/test_batches.py",
            "emails/tests/test_tasks.py",
            "emails/tests/test_smtp.py",
        ),
        hand_made=(
            HandMade(
                OUTBOX_SQL,
                "OR (status = 'sending' AND claimed_at < %(lease_over)s)",
                "OR (status IN ('sending', 'sent') AND claimed_at < %(lease_over)s)",
                "the claim takes a sent row once its lease is over: sent twice",
            ),
            HandMade(
                OUTBOX_SQL,
                "(status = 'queued' AND next_attempt_at <= %(now)s)",
                "(status = 'queued')",
                "the claim ignores the backoff: a retry before it is due",
            ),
            HandMade(
                OUTBOX_SQL,
                "WHERE status = 'queued' AND next_attempt_at <= %(now)s AND id <> %(id)s",
                "WHERE status IN ('queued', 'failed') AND id <> %(id)s",
                "a batch takes failed rows and rows not due",
            ),
        ),
    ),
    "downloads": Module(
        sources=("downloads/services.py", "downloads/tokens.py"),
        tests=("downloads/tests/test_services.py", "downloads/tests/test_views.py"),
        hand_made=(
            HandMade(
                "downloads/services.py",
                "filter(token__isnull=True, created_at__lt=cutoff)",
                "filter(created_at__lt=cutoff)",
                "the purge deletes old events of links it keeps",
            ),
            HandMade(
                "downloads/services.py",
                "expires_at__gt=Now(),",
                "",
                "a download after the link expired",
            ),
        ),
        equivalent={
            "downloads/services.py:DownloadDenied.__init__:call_removed:0": (
                "BaseException.__new__ keeps the arguments already: str() is the reason either way"
            ),
            "downloads/services.py:Resource:bool_constant:0": (
                "frozen=False: no code changes a Resource once it is registered"
            ),
            "downloads/services.py:preview_url:number:0": (
                "the signed id holds one colon: split at most once or twice, the same signature"
            ),
            "downloads/services.py:is_owner_preview:return_none:2": (
                "None for False: its one caller reads it in an if"
            ),
            "downloads/tokens.py:new_token:number:0": (
                "33 random bytes for 32: as unguessable, and no reader depends on the length"
            ),
        },
    ),
    "billing": Module(
        sources=("invoicegen/billing/services.py",),
        tests=("invoicegen/billing/tests/test_services.py", "invoicegen/billing/tests/test_api.py"),
        hand_made=(
            HandMade(
                "invoicegen/billing/services.py",
                'MAX_AMOUNT = Decimal("999999999999.99")',
                'MAX_AMOUNT = Decimal("999999999999.98")',
                "the invoice amount limit moved by a cent",
            ),
        ),
    ),
    "webhooks": Module(
        sources=("webhooks/services.py", "webhooks/sending.py"),
        tests=(
            "webhooks/tests/test_services.py",
            "webhooks/tests/test_delivery.py",
            "webhooks/tests/test_api.py",
        ),
    ),
}
