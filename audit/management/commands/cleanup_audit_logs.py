from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.archive import ArchiveError
from audit.retention import cleanup_audit_logs


class Command(BaseCommand):
    help = (
        "Delete audit entries past their category's retention (AUDIT_RETENTION_DAYS_BY_CATEGORY, "
        "--days for the others), once their month is archived and unless a legal hold keeps "
        "them: a month that goes whole by dropping its partition, the rest in batches of short "
        "transactions (safe to interrupt and re-run). Refuses to go below "
        "AUDIT_MIN_RETENTION_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=settings.AUDIT_RETENTION_DAYS,
            help="delete entries older than this many days, in categories with no retention of "
            "their own (default: AUDIT_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what would be deleted"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.AUDIT_CLEANUP_BATCH_SIZE,
            help="rows deleted per transaction",
        )

    def progress(self, deleted, total):
        self.stdout.write(f"  deleted {deleted:,} of {total:,}")

    def handle(self, *args, days, dry_run, batch_size, **options):
        try:
            result = cleanup_audit_logs(
                days=days, dry_run=dry_run, batch_size=batch_size, progress=self.progress
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        except ArchiveError as error:
            raise CommandError(str(error)) from error
        verb = "would delete" if dry_run else "deleted"
        if result.held:
            self.stdout.write(f"  kept {result.held:,} entries for legal holds")
        for month in result.dropped:
            self.stdout.write(f"  {month} left whole: its partition was dropped")
        if result.unarchived:
            self.stdout.write(f"  kept {result.unarchived:,} entries until their month is archived")
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {result.deleted:,} entries older than {result.cutoff:%Y-%m-%d %H:%M} UTC"
            )
        )
