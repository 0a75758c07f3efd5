import argparse
import datetime
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.api.serializers import MONTH
from audit.services import check_audit_log
from audit.sink import read_copies


def _month(text: str) -> datetime.date:
    if not re.fullmatch(MONTH, text):
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM, 1970 to 2999): {text!r}")
    return datetime.date.fromisoformat(f"{text}-01")


class Command(BaseCommand):
    help = (
        "Verify the audit trail month by month: every entry's digest, the checkpoint chain, "
        "and archived months against their archives; exit with an error naming the first bad "
        "id if anything was altered, removed or forged."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoints",
            type=Path,
            metavar="FILE",
            help="A checkpoint file written by AUDIT_CHECKPOINT_SINK: every checkpoint in it "
            "must still be in the database, unchanged.",
        )
        parser.add_argument(
            "--since",
            type=_month,
            metavar="YYYY-MM",
            help="Check the entries of this month and later only (and the whole chain).",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help="Check N months at once, each in its own process (PostgreSQL).",
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Continue the last run with the same --since that did not finish, with the "
            "months it has not checked.",
        )

    def handle(self, *args, checkpoints=None, since=None, jobs=1, resume=False, **options):
        if not 1 <= jobs <= 64:
            raise CommandError("--jobs must be between 1 and 64")
        try:
            copies = read_copies(checkpoints) if checkpoints else None
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {checkpoints}: {error}") from error
        result = check_audit_log(
            progress=lambda text: self.stdout.write(f"  {text}"),
            copies=copies,
            since=since,
            jobs=jobs,
            resume=resume,
        )
        if not result.ok:
            raise CommandError(
                f"audit trail verification FAILED: first bad id {result.first_bad_id} "
                f"({result.checked:,} entries checked)"
            )
        compared = f", {len(copies):,} checkpoint copies" if copies is not None else ""
        part = f" from {result.since:%Y-%m}" if result.since else ""
        self.stdout.write(
            self.style.SUCCESS(f"audit trail OK: {result.checked:,} entries{part}{compared}")
        )
