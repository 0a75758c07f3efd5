from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import archive_format


class Command(BaseCommand):
    help = (
        "Verify an audit archive from its files and the public key alone (no database, no HMAC "
        "key): signatures, each file's SHA-256, the manifest chain, rows and checkpoints."
    )
    requires_system_checks = []  # some of them ask the database

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="The folder holding the archive's months.")
        parser.add_argument(
            "--public-key", required=True, help="Base64, as `audit_archive_key` prints it."
        )

    def handle(self, *args, path, public_key, **options):
        try:
            key = archive_format.public_key(public_key)
        except ValueError as error:
            raise CommandError(f"--public-key: not an Ed25519 public key ({error})") from error
        if not path.is_dir():
            raise CommandError(f"{path}: not a folder")
        report = archive_format.verify_archive(
            archive_format.Folder(path), key, progress=lambda line: self.stdout.write(f"  {line}")
        )
        for note in report.notes:
            self.stdout.write(f"  note: {note}")
        if report.newest:
            month, digest = report.newest
            self.stdout.write(
                f"  newest month {month}, manifest SHA-256 {digest}: the trail's audit.archived "
                "entry of that month names the same, and no later month is recorded"
            )
        for problem in report.problems:
            self.stderr.write(f"  {problem}")
        summary = (
            f"{report.months} month(s), {report.rows:,} entries, "
            f"{report.checkpoints:,} checkpoint(s) recomputed"
        )
        if not report.ok:
            raise CommandError(
                f"audit archive verification FAILED: {len(report.problems)} problem(s); {summary}"
            )
        self.stdout.write(self.style.SUCCESS(f"audit archive OK: {summary}"))
