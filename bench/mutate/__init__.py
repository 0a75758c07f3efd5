"""Mutation testing of the code that guards evidence and money: `make mutate` (or
`python -m bench.mutate outbox downloads`). Not a test and not in CI: a module takes minutes
to half an hour. Run it after changing one of the modules below or their tests, and before
calling such a change done; it writes bench/results/mutation.json.

Each module is mutated with its own tests only. Every mutant of its sources (operators.py:
decorated functions and module constants included) and the hand-made ones below (what no
operator reaches: SQL in strings, decimal literals, an argument dropped) runs against the tests
that execute the lines it changes, in a copy of the project, on PostgreSQL and Redis as CI's
first suite (SQLite would leave capture's UPDATE that carries its entry and the locks of the
outbox and billing untested). A mutant that no test
fails has survived: it is either equivalent (no test can tell it from the code: why), or left
(a test could tell, and why it is not worth one; it counts against the score), or it is a test
to write.
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
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant key -> why
    left: dict[str, str] = field(default_factory=dict)  # mutant key -> why no test


OUTBOX_SQL = "invoicegen/core/outbox.py"
TRACKING = "audit/tracking.py"
WEBHOOKS, SENDING = "webhooks/services.py", "webhooks/sending.py"
BILLING = "invoicegen/billing/services.py"

OUTBOX_TESTS = (
    "emails/tests/test_services.py",
    "emails/tests/test_batches.py",
    "emails/tests/test_tasks.py",
    "emails/tests/test_smtp.py",
    "emails/tests/test_providers.py",
    "emails/tests/test_unsubscribe.py",
    "invoicegen/core/tests/test_deadline.py",
    "webhooks/tests/test_delivery.py",
    # the row's columns: a field changed without its migration
    "tests/test_project.py::test_every_model_change_has_its_migration",
)

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
        sources=("audit/receivers.py", TRACKING, "audit/piggyback.py"),
        tests=(
            "audit/tests/test_capture.py",
            "audit/tests/test_receivers.py",
            "audit/tests/test_context.py",
            "invoicegen/billing/tests/test_services.py",
            "invoicegen/billing/tests/test_business_profile.py::test_a_logo_change_is_recorded"
            "_by_size_and_hash_not_by_its_bytes",
        ),
        equivalent={
            f"{TRACKING}:old_values:bool_constant:0": (
                "strict=False: from_db gives as many values as field names"
            ),
            f"{TRACKING}:AuditedQuerySet.update:bool_constant:1": (
                "strict=False: the names are those of the values given, as many"
            ),
            f"{TRACKING}:take_changes:return_none:0": (
                "None for {}: its one caller reads it in an if"
            ),
            **dict.fromkeys(
                (
                    f"{TRACKING}:AuditedQuerySet:bool_constant:1",
                    f"{TRACKING}:AuditedQuerySet:bool_constant:2",
                ),
                "bulk_update() and bulk_create() without alters_data: a template cannot call "
                "them anyway, without their arguments",
            ),
            f"{TRACKING}:_label:bool_Or:0": (
                "every Audited model is tracked (a spec): with and, one labelled by its id "
                "reads pk twice, the same values"
            ),
        },
        left={
            f"{TRACKING}:old_values:return_none:2": (
                "an instance built with an existing row's id and saved unread: no old values, "
                "so no entry at all, a gap in the trail of its own (to fix, not to pin)"
            ),
        },
    ),
    # The outbox machinery in two runs of under half an hour each: the rows' claim, lease,
    # batches and deadlines, and the email outbox's sending on it.
    "outbox": Module(
        sources=(OUTBOX_SQL,),
        tests=OUTBOX_TESTS,
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
        equivalent={
            f"{OUTBOX_SQL}:Delivery:bool_constant:0": "frozen=False: no code assigns to one",
            f"{OUTBOX_SQL}:Outbox._mark_sent:return_none:0": (
                "no row sent means every row failed: the answer is its failure's, not read"
            ),
            f"{OUTBOX_SQL}:Outbox._accepted_before:return_none:1": (
                "None for False: its one caller reads it in an if"
            ),
            f"{OUTBOX_SQL}:Outbox.deliver:compare_Gt:0": (
                "the time taken equals the batch's budget only by a float's chance"
            ),
            f"{OUTBOX_SQL}:_Watch._run:compare_Gt:0": (
                "at exactly 0 s left the wait returns at once, and the next turn cuts the call"
            ),
        },
        left={
            **dict.fromkeys(
                (f"{OUTBOX_SQL}:<module>:number:0", f"{OUTBOX_SQL}:<module>:number:1"),
                "an acceptance remembered 25 h (or 24 h 24 s) for 24 h: longer is no bug; it "
                "must outlast a lease and an outage, which a day does",
            ),
            f"{OUTBOX_SQL}:Outbox._come_back_in:number:1": (
                "only a row that fell due between the claim and this read: back in 2 s, not 1"
            ),
            f"{OUTBOX_SQL}:_skip_locked_sql:return_none:1": (
                "SQLite's branch (this run is PostgreSQL's): CI's SQLite suite fails on it, "
                "its claim's SQL reading 'None'"
            ),
            f"{OUTBOX_SQL}:Outbox.deliver:compare_Gt:1": (
                "a first attempt reads the cache as well, and finds nothing there (its "
                "Message-ID is new): one round trip more, the same outcome"
            ),
        },
    ),
    "emails": Module(
        sources=("emails/services.py",),
        tests=OUTBOX_TESTS,
        equivalent=dict.fromkeys(
            (
                "emails/services.py:is_permanent:compare_Lt:0",
                "emails/services.py:is_permanent:compare_Lt:1",
                "emails/services.py:is_permanent:number:1",
                "emails/services.py:is_permanent:number:3",
            ),
            "a reply code's first digit is 2 to 5 (RFC 5321 4.2): no server answers 600",
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
        sources=(BILLING,),
        tests=(
            *(
                f"invoicegen/billing/tests/test_{name}.py"
                for name in (
                    "services",
                    "api",
                    "business_profile",
                    "events",
                    "languages",
                    "reminders",
                    "sending_limits",
                    "tasks",
                    "timeline",
                    "webhooks",
                )
            ),
            "downloads/tests/test_api.py",
            "audit/tests/test_capture.py",  # a refused payment's entry
        ),
        hand_made=(
            HandMade(
                BILLING,
                'MAX_AMOUNT = Decimal("999999999999.99")',
                'MAX_AMOUNT = Decimal("999999999999.98")',
                "the invoice amount limit moved by a cent",
            ),
        ),
        equivalent={
            f"{BILLING}:create_invoice:bool_constant:0": (
                "force_insert=False: an invoice without a primary key is inserted either way"
            ),
            **dict.fromkeys(
                (
                    f"{BILLING}:record_invoice_view:return_none:0",
                    f"{BILLING}:record_invoice_download:return_none:0",
                ),
                "downloads calls it for its effect (typed to return None): what it returns is "
                "never read",
            ),
            f"{BILLING}:owners_timezone:return_none:1": (
                "None is the current time zone, UTC (TIME_ZONE): the day is the same"
            ),
            **dict.fromkeys(
                (
                    f"{BILLING}:send_due_reminders:number:0",
                    f"{BILLING}:send_due_reminders:number:1",
                ),
                "a day more of due dates read: remind_invoice finds no step due on it",
            ),
        },
        left={
            f"{BILLING}:_send_invoice:bool_constant:0": (
                "FOR UPDATE for FOR NO KEY UPDATE (PostgreSQL's): the sends are serialised "
                "either way; the stronger lock only holds back rows referring to the account"
            ),
            f"{BILLING}:renew_subscription:compare_LtE:0": (
                "only a renewal at the microsecond the period ends: the new period keeps the "
                "old start, with the same end"
            ),
        },
    ),
    "webhooks": Module(
        sources=(WEBHOOKS, SENDING),
        tests=(
            "webhooks/tests/test_services.py",
            "webhooks/tests/test_delivery.py",
            "webhooks/tests/test_api.py",
            "webhooks/tests/test_commands.py",
            "webhooks/tests/test_notification_channel.py",
        ),
        equivalent={
            f"{WEBHOOKS}:send_notification:return_none:1": (
                "the notification channel calls it for its effect: what it returns is never read"
            ),
            f"{WEBHOOKS}:new_message_id:number:0": (
                "19 random bytes for 18: as unique, within the column's 40 characters; no "
                "reader depends on the length"
            ),
            **dict.fromkeys(
                (f"{WEBHOOKS}:recover_failed:number:1", f"{WEBHOOKS}:recover_failed:number:2"),
                "51 payloads read at a time for 50: the same replays, in the same order",
            ),
            f"{WEBHOOKS}:_end_attempt:number:0": "a duration 0.1% longer: finer than a test times",
            f"{SENDING}:Answer:bool_constant:0": "frozen=False: no code assigns to an Answer",
            f"{SENDING}:allowed:return_none:1": "None for False: read as a condition",
            f"{SENDING}:_connect:compare_LtE:0": "exactly 0 s left only by a float's chance",
            f"{SENDING}:_connect:number:1": "TCP_NODELAY 2 for 1: any non-zero value turns it on",
            f"{SENDING}:post:call_removed:3": (
                "the connection closes this very socket (http), or the TLS socket it was handed "
                "to (https)"
            ),
        },
        left={
            f"{WEBHOOKS}:<module>:number:0": (
                "501 replays a call for 500: `more` pages the rest either way; the paging is "
                "tested with a bound of 2"
            ),
            f"{WEBHOOKS}:<module>:number:1": (
                "a purge batch of 1,001 for 1,000: the same rows go; the batches are tested with 2"
            ),
            f"{WEBHOOKS}:_send:number:0": (
                "no failure of a send says more than 500 characters (a host name has at most "
                "253): the cut guards the column"
            ),
            **dict.fromkeys(
                (f"{SENDING}:post:number:{n}" for n in range(4)),
                "a URL without a port goes to 443 or 80 (and its Host names none): a test would "
                "listen on a privileged port",
            ),
            f"{SENDING}:_connect:call_removed:2": (
                "only a latency (Nagle holds the body for the receiver's delayed ACK, 40 ms): no "
                "outcome changes"
            ),
        },
    ),
}
