"""`manage.py send_queued_<things>`: an outbox's due rows sent here and now (for a setup with no
broker, or by hand), or handed to the workers (`--dispatch`). Each outbox's command names its
outbox, what its rows are, and how one is delivered."""

from django.core.management.base import BaseCommand, CommandError

from invoicegen.core.outbox import Delivery, Outbox


class SendQueuedCommand(BaseCommand):
    outbox: Outbox
    noun: str  # what the rows are, in the output: "email(s)", "webhook delivery(ies)"

    def deliver(self, row_id: int) -> Delivery:
        """Send this row alone."""
        raise NotImplementedError

    def add_arguments(self, parser):
        parser.add_argument(
            "--dispatch", action="store_true", help="queue them for the workers instead"
        )
        parser.add_argument("--limit", type=int, default=1000, help="rows at most (default 1000)")

    def handle(self, *args, dispatch, limit, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        if dispatch:
            count = self.outbox.redispatch_pending(limit=limit)
            done = f"dispatched {count} {self.noun} to the workers"
            self.stdout.write(self.style.SUCCESS(done))
            return
        ids = list(self.outbox.pending().values_list("pk", flat=True)[:limit])
        outcomes = {}
        for done, row_id in enumerate(ids, start=1):
            status = self.deliver(row_id).status or "skipped"
            outcomes[status] = outcomes.get(status, 0) + 1
            if done % 50 == 0:
                self.stdout.write(f"  {done} of {len(ids)}")
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"{len(ids)} due: {summary or 'nothing to send'}"))
