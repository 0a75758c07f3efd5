from django.core.management.base import BaseCommand, CommandError

from audit.services import check_audit_log


class Command(BaseCommand):
    help = (
        "Recompute every audit entry's digest and the checkpoint chain; exit with an error "
        "naming the first bad id if anything was altered, removed or forged."
    )

    def handle(self, *args, **options):
        result = check_audit_log(progress=lambda n: self.stdout.write(f"  checked {n:,}"))
        if not result.ok:
            raise CommandError(
                f"audit trail verification FAILED: first bad id {result.first_bad_id} "
                f"({result.checked:,} entries checked)"
            )
        self.stdout.write(self.style.SUCCESS(f"audit trail OK: {result.checked:,} entries"))
