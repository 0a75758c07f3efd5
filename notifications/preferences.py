"""Each user's choice of how often each notification type reaches them on each channel: at once
(`immediate`), in a daily or weekly digest email (`daily`, `weekly`: emails only), or not at all
(`off`). The matrix covers every registered type and channel; what the user did not choose is
the type's default (notifications/types.py): only their choices are stored, so that a choice
stays theirs whatever the defaults become. A critical type cannot be switched off, nor held for
a digest, on a channel it is sent on."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from audit import services as audit
from notifications import types
from notifications.models import Notification, NotificationPreference


def matrix(user) -> dict[str, dict[str, str]]:
    """type -> channel -> frequency, for every registered type and channel."""
    chosen = {
        (row.type, row.channel): row.frequency
        for row in NotificationPreference.objects.filter(user=user)
    }
    return {
        kind.name: {
            channel: chosen.get((kind.name, channel), kind.default(channel))
            for channel in types.CHANNELS
        }
        for kind in types.registered()
    }


def frequencies(user, kind: types.NotificationType, channels: tuple[str, ...]) -> dict[str, str]:
    """channel -> frequency of one type on the channels a notification asks for (one query),
    as the matrix shows it: what the user chose, else the type's default. A critical type goes
    at once on every channel asked for, whatever was stored."""
    if kind.critical:
        return dict.fromkeys(channels, types.IMMEDIATE)
    chosen = dict(
        NotificationPreference.objects.filter(user=user, type=kind.name).values_list(
            "channel", "frequency"
        )
    )
    return {channel: chosen.get(channel, kind.default(channel)) for channel in channels}


def not_live(user) -> list[str]:
    """The types whose notifications are not pushed live to the user, as notify() decides
    (the matrix's `realtime`; a critical type always is)."""
    return [
        name
        for name, row in matrix(user).items()
        if row[types.REALTIME] == types.OFF and not types.get(name).critical
    ]


def critical_types() -> list[str]:
    return [kind.name for kind in types.registered() if kind.critical]


def allowed(kind: types.NotificationType, channel: str) -> tuple[str, ...]:
    """The frequencies a user may choose for a type on a channel. A critical type is about the
    account's own safety: it goes at once where it is sent, and never to a webhook endpoint."""
    if kind.critical and kind.sends_on(channel):
        return (types.IMMEDIATE,)
    if kind.critical and channel == types.WEBHOOK:
        return (types.OFF,)
    if channel == types.EMAIL:
        return types.FREQUENCIES
    return (types.IMMEDIATE, types.OFF)


def refusals(wanted: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """type -> what is wrong with its row of the matrix; empty when the matrix can be applied.
    The shape (known types and channels, valid frequencies) is the API's to check."""
    wrong = {}
    for name, row in wanted.items():
        kind = types.get(name)
        for channel, frequency in row.items():
            if frequency not in (choices := allowed(kind, channel)):
                why = "the type is critical" if kind.critical else "digests are emails"
                wrong.setdefault(name, []).append(
                    f"{channel} is {' or '.join(choices)} ({why}), not {frequency}."
                )
    return wrong


@transaction.atomic
def set_matrix(user, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Replace the user's choices by `wanted` (any part of the matrix; the rest goes back to
    its defaults), audited with what changed. Raises ValidationError (by type) for a row that
    cannot be applied. Returns the whole matrix."""
    if wrong := refusals(wanted):
        raise ValidationError(wrong)
    before, after = _store(user, wanted, replace=True)
    changed = {
        f"{name}.{channel}": [before[name][channel], frequency]
        for name, row in after.items()
        for channel, frequency in row.items()
        if before[name][channel] != frequency
    }
    if changed:
        audit.log(
            "notification.preferences_updated",
            actor=user,
            target=("user", user.pk),
            metadata={"changed": changed},
        )
    return after


def _lock(user) -> None:
    """One change of a user's matrix at a time: a second waits, then reads what the first did
    (in the caller's transaction)."""
    type(user).objects.select_for_update().only("pk").get(pk=user.pk)


def _store(user, wanted: dict[str, dict[str, str]], *, replace: bool) -> tuple[dict, dict]:
    """Store `wanted` (replacing every other choice, or keeping them); the matrix (before,
    after). What waits for a digest follows its type's new email frequency: into the other
    digest, or out of digests (it is in the feed already)."""
    _lock(user)
    before = matrix(user)
    stored = NotificationPreference.objects.filter(user=user)
    chosen = {
        (t, c): (pk, f) for pk, t, c, f in stored.values_list("pk", "type", "channel", "frequency")
    }
    if replace:
        kept = {(name, channel) for name, row in wanted.items() for channel in row}
        stored.filter(pk__in=[pk for key, (pk, _) in chosen.items() if key not in kept]).delete()
    NotificationPreference.objects.bulk_create(
        [
            NotificationPreference(user=user, type=name, channel=channel, frequency=frequency)
            for name, row in wanted.items()
            for channel, frequency in row.items()
            if chosen.get((name, channel), (None, None))[1] != frequency  # a choice kept stays
        ],
        update_conflicts=True,
        unique_fields=["user", "type", "channel"],
        update_fields=["frequency", "updated_at"],
    )
    after = matrix(user)
    for name, row in after.items():
        if (email := row[types.EMAIL]) != before[name][types.EMAIL]:
            Notification.objects.filter(
                user=user, type=name, digested_in__isnull=True, digest__in=types.DIGESTS
            ).update(digest=email if email in types.DIGESTS else "")
    return before, after


# One-click unsubscribe (emails/unsubscribe.py): an email's topic is its notification type, or
# the digest it is.
DIGEST_TOPICS = {f"digest.{frequency}": frequency for frequency in types.DIGESTS}
DIGEST_LABELS = {
    types.DAILY: gettext_lazy("your daily notification digest"),
    types.WEEKLY: gettext_lazy("your weekly notification digest"),
}


def topic_label(topic: str) -> str | None:
    """What an unsubscribe link of this topic stops; None if it cannot be stopped."""
    if topic in DIGEST_TOPICS:
        return DIGEST_LABELS[DIGEST_TOPICS[topic]]
    if (kind := types.find(topic)) is None or kind.critical:
        return None
    # Lazy: the page renders it in the language of the email it came from.
    return format_lazy(gettext_lazy("emails about “{type}”"), type=kind.label)


@transaction.atomic
def stop_emails(user, topic: str) -> bool:
    """Switch the topic's emails off (a type; a digest: every type it gathers), keeping the
    user's other choices; False when they were off already. Two at once take turns."""
    _lock(user)
    current = matrix(user)
    if topic in DIGEST_TOPICS:
        names = [n for n, row in current.items() if row[types.EMAIL] == DIGEST_TOPICS[topic]]
    else:
        names = [topic]
    wanted = {
        name: {types.EMAIL: types.OFF}
        for name in names
        if current[name][types.EMAIL] != types.OFF
        and types.OFF in allowed(types.get(name), types.EMAIL)
    }
    if not wanted:
        return False
    before, after = _store(user, wanted, replace=False)
    return before != after
