from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit import subjects


class Command(BaseCommand):
    help = (
        "Erase a user's personal data from the audit trail: destroy the keys it is sealed "
        "under, so that their entries show [erased] while the trail and its archives still "
        "verify. Refused while a legal hold keeps any of their entries."
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", type=int, required=True, metavar="ID", help="The user's id.")
        parser.add_argument(
            "--basis", required=True, help="Why: the request, or the law it answers."
        )

    def handle(self, *args, user, basis, **options):
        if not 0 < user < 2**63:
            raise CommandError("--user: not a user id")
        try:
            erasure = subjects.erase_subject(user, basis=basis)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        except subjects.Held as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"  keys destroyed: {erasure['keys']}")
        if erasure["unsealed"]:
            self.stdout.write(
                self.style.WARNING(
                    f"  {erasure['unsealed']:,} older entries, written before personal data "
                    "was sealed, keep theirs: their digests cover it"
                )
            )
        self.stdout.write(self.style.SUCCESS(f"erased user {user}'s data in the audit trail"))
