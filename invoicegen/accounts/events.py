"""Accounts' domain events: one function each, recording the entry (with the change's field
diffs, secrets redacted) and queueing what the account's owner is sent. A service changes the
user, then records its event (see services.py)."""

from audit.registry import domain_event
from audit.services import record_event
from emails.services import queue_email
from invoicegen.accounts.models import User
from notifications.services import notify


def queue_account_email(template_name: str, user: User, **context) -> None:
    queue_email(
        template_name,
        to=user.email,
        context={"name": user.get_short_name(), "user_id": user.pk, **context},
        user=user,
        resource=("user", user.pk),
    )


@domain_event("user.signup", "{actor} signed up", category="auth")
def user_signed_up(user: User, *, actor: User) -> None:
    """Welcome them, and ask them to verify their email (its link is made when it is sent)."""
    record_event("user.signup", target=user, actor=actor)
    queue_account_email("welcome", user)
    queue_account_email("email_verification", user)


@domain_event("user.profile_updated", "{actor} updated their profile", category="account")
def profile_updated(user: User, *, actor) -> None:
    record_event("user.profile_updated", target=user, actor=actor)


@domain_event(
    "user.password_changed", "{actor} changed their password", category="auth", security=True
)
def password_changed(user: User, *, actor) -> None:
    record_event("user.password_changed", target=user, actor=actor)


@domain_event(
    "user.password_reset_requested",
    "Password reset requested for {target}",
    category="auth",
    security=True,
)
def password_reset_requested(user: User | None, *, email: str, actor) -> None:
    """Whether an account has the email or not (the answer is the same): only an account's
    owner gets the link and a notification."""
    record_event(
        "user.password_reset_requested",
        target=user or ("account", email[:64]),
        actor=actor,
        params={"requested_email": email},
        success=user is not None,
    )
    if user is not None:
        queue_account_email("password_reset", user)
        notify(user, "password_reset_requested", resource=user, actor=actor)


@domain_event(
    "user.password_reset", "Password of {target} reset by email link", category="auth",
    security=True,
)  # fmt: skip
def password_reset(user: User, *, actor) -> None:
    record_event("user.password_reset", target=user, actor=actor)


@domain_event(
    "user.email_verified", "{target} verified their email", category="auth", security=True
)
def email_verified(user: User, *, actor) -> None:
    record_event("user.email_verified", target=user, actor=actor)
