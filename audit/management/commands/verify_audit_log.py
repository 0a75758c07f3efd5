from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import check_audit_log
from audit.sink import read_copies


class Command(BaseCommand):
    help = (
        "Recompute every audit entry's digest and the checkpoint chain; exit with an error "
        "naming the first bad id if anything was altered, removed or forged."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoints",
            type=Path,
            metavar="FILE",
            help="A checkpoint file written by AUDIT_CHECKPOINT_SINK: every checkpoint in it "
            "must still be in the database, unchanged.",
        )

    def handle(self, *args, checkpoints=None, **options):
        try:
            copies = read_copies(checkpoints) if checkpoints else None
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {checkpoints}: {error}") from error
        result = check_audit_log(
            progress=lambda n: self.stdout.write(f"  checked {n:,}"), copies=copies
        )
        if not result.ok:
            raise CommandError(
                f"audit trail verification FAILED: first bad id {result.first_bad_id} "
                f"({result.checked:,} entries checked)"
            )
        compared = f", {len(copies):,} checkpoint copies" if copies is not None else ""
        self.stdout.write(
            self.style.SUCCESS(f"audit trail OK: {result.checked:,} entries{compared}")
        )
