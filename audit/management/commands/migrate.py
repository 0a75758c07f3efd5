from django.core.management.commands import migrate
from django.db import connections

from audit import roles


class Command(migrate.Command):
    help = (
        "Django's migrate, run as the owner role (DATABASE_OWNER_URL); then the audit trail's "
        "functions are made and the application role (DATABASE_URL) granted what it may do."
    )

    def handle(self, *args, **options):
        with roles.connected_as_owner(options["database"]) as app_role:
            super().handle(*args, **options)
            if not (options["plan"] or options["check_unapplied"]):  # both change nothing
                roles.set_up(connections[options["database"]], app_role=app_role)
