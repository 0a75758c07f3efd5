from django.core.management.base import BaseCommand

from audit.services import seal_audit_log


class Command(BaseCommand):
    help = "Seal settled audit entries into checkpoints chained to the previous one."

    def handle(self, *args, **options):
        sealed = 0
        while checkpoint := seal_audit_log():
            sealed += checkpoint.row_count
            self.stdout.write(f"  sealed #{checkpoint.first_id}..#{checkpoint.last_id}")
        self.stdout.write(self.style.SUCCESS(f"sealed {sealed:,} entries"))
