import datetime

from django.core.management.base import BaseCommand, CommandError

from audit import archive


def month(text: str) -> datetime.date:
    try:
        return datetime.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise CommandError(f"--month: expected YYYY-MM, got {text!r}") from None


class Command(BaseCommand):
    help = (
        "Write ended, sealed months of the audit trail to the archive storage (signed gzipped "
        "JSON lines), read each back and verify it; by default every month not archived yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", type=month, metavar="YYYY-MM", help="This month only.")

    def handle(self, *args, month=None, **options):
        def progress(rows):
            self.stdout.write(f"  {rows:,} entries written")

        try:
            if month:
                done = archive.archive_month(month, progress=progress)
                archives = [done] if done else []
            else:
                archives = archive.archive_ended_months(progress=progress)
        except archive.ArchiveError as error:
            raise CommandError(str(error)) from error
        for done in archives:
            self.stdout.write(f"  {done.month:%Y-%m}: {done.row_count:,} entries, {done.manifest}")
        self.stdout.write(self.style.SUCCESS(f"archived {len(archives)} month(s)"))
