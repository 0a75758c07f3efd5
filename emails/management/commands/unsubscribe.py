from django.core.management.base import BaseCommand, CommandError

from emails import unsubscribe


class Command(BaseCommand):
    help = (
        "Apply unsubscribe requests that came by email to EMAIL_UNSUBSCRIBE_ADDRESS (the mailto "
        'of List-Unsubscribe): give each message\'s subject ("unsubscribe <token>") or token. '
        "The same as the one-click link: audited, and nothing when it was done already."
    )

    def add_arguments(self, parser):
        parser.add_argument("subjects", nargs="+", help="a subject line, or the token alone")

    def handle(self, *args, subjects, **options):
        refused = 0
        for subject in subjects:
            token = subject.strip().removeprefix("unsubscribe").strip()
            try:
                wanted = unsubscribe.read_token(token)
            except (unsubscribe.InvalidToken, unsubscribe.UnknownRecipient) as error:
                refused += 1
                why = "no such account" if isinstance(error, unsubscribe.UnknownRecipient) else ""
                self.stderr.write(f"refused {token[:20]}...: {why or 'not a token of ours'}")
                continue
            done = unsubscribe.unsubscribe(wanted)
            who = wanted.user.email if wanted.user else wanted.address
            state = "unsubscribed" if done else "already unsubscribed"
            self.stdout.write(f"{who}: {state} from {wanted.topic}")
        if refused:
            raise CommandError(f"{refused} of {len(subjects)} refused")
