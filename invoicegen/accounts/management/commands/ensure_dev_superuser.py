from django.conf import settings
from django.core.management.base import BaseCommand

from invoicegen.accounts.services import create_dev_superuser


class Command(BaseCommand):
    help = (
        "With DEBUG on and no superuser yet, create admin@localhost with a generated password "
        "and print it once. Does nothing otherwise."
    )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no development superuser is created.")
            return
        created = create_dev_superuser()
        if created is None:
            self.stdout.write("A superuser exists already: none created.")
            return
        user, password = created
        self.stdout.write(
            self.style.SUCCESS(
                f"Created superuser {user.email} with password {password} "
                "(shown once; change it in the admin)."
            )
        )
