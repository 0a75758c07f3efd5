from django.core.management.base import BaseCommand, CommandError

from emails import services


class Command(BaseCommand):
    help = (
        "Send the outbox rows that are due (queued, or stuck in sending past their lease), "
        "here and now; with --dispatch, hand them to the Celery workers instead."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dispatch", action="store_true", help="queue them for the workers instead"
        )
        parser.add_argument("--limit", type=int, default=1000, help="rows at most (default 1000)")

    def handle(self, *args, dispatch, limit, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        if dispatch:
            count = services.redispatch_pending(limit=limit)
            self.stdout.write(self.style.SUCCESS(f"dispatched {count} email(s) to the workers"))
            return
        ids = list(services.pending_emails().values_list("pk", flat=True)[:limit])
        outcomes = {}
        for done, email_id in enumerate(ids, start=1):
            status = services.deliver_email(email_id, batch=1).status or "skipped"
            outcomes[status] = outcomes.get(status, 0) + 1
            if done % 50 == 0:
                self.stdout.write(f"  {done} of {len(ids)}")
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"{len(ids)} due: {summary or 'nothing to send'}"))
