"""Personal data in the trail, sealed under a key per person, so that erasing a person breaks
no digest (GDPR's right to erasure against an append-only, hash-chained trail).

An entry's personal data is its actor's email, address and user agent, and, in an entry about
a user (the AUTH_USER_MODEL), that user's label (their email) and the values of their changed
fields. Each person's part is encrypted (AES-256-GCM) under that person's SubjectKey and stored
in the entry's `sealed` column, `enc1.<key id>.<nonce and ciphertext>` per part; the plain
columns then hold none of it, and the description is written without it. Digests, checkpoints
and archives cover the ciphertext. Erasing a person destroys their keys: their entries still
verify, and show `[erased]` where the data was.

Entries are read through reveal(), which every reading of entries as model instances goes
through (audit/models.py EntryQuerySet): the API, the admin, the exports and the timelines.
Keyed hashes of the actor's email and address (`email_hash`, `ip_hash`) keep both searchable;
a search by email finds only people whose key is live.

Subject keys are sealed themselves under a key derived from AUDIT_HMAC_KEY: a copy of the
database alone reads nothing. Entries written before sealing existed stay as they were (their
digests cover the plain text); an erasure reports how many of them name the person.
"""

import base64
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from functools import cache, partial

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.utils import timezone

from audit import context as audit_context
from audit import registry, roles
from audit.models import AuditLog, SubjectKey
from invoicegen.core.exceptions import ConflictError

ERASED = "[erased]"
PREFIX = "enc1"
ACTOR_FIELDS = ("user_email", "ip_address", "user_agent")
BLANK = {"user_email": "", "ip_address": None, "user_agent": "", "resource_label": ""}
NONCE = 12
STORED_ONLY = ("sealed", "email_hash", "ip_hash")  # columns no reading shows
DESCRIPTION_LENGTH = 1000
MAX_SEARCHED_USERS = 1000  # a search by the start of an email names at most this many
HELD = "A legal hold keeps this person's entries: release it before erasing them."


@cache
def _derived(hmac_key: str, purpose: bytes) -> bytes:
    """A key of its own for each purpose, from AUDIT_HMAC_KEY (once per process)."""
    return hmac.digest(hmac_key.encode(), purpose, "sha256")


@cache
def _wrapping(hmac_key: str) -> AESGCM:
    return AESGCM(_derived(hmac_key, b"audit subject keys"))


def search_hash(text: str) -> str:
    """What `email_hash` and `ip_hash` hold: a keyed hash, so that a copy of the database does
    not tell whose entries they are by hashing guesses."""
    key = _derived(settings.AUDIT_HMAC_KEY, b"audit search index")
    return hmac.digest(key, text.strip().lower().encode(), "sha256")[:16].hex()


@cache
def user_resource_type() -> str:
    model = get_user_model()
    spec = registry.spec_for(model)
    return spec.resource_type if spec else model._meta.model_name


def _subject_of_target(values: dict) -> int | None:
    if values["resource_type"] != user_resource_type():
        return None
    resource_id = values["resource_id"]
    return int(resource_id) if resource_id.isdigit() and len(resource_id) <= 18 else None


def _live_keys(subjects: set[int]) -> dict[int, tuple[int, AESGCM]]:
    """The live key of each subject, made for those who have none."""
    now = time.monotonic()
    found = {subject: key for subject in subjects if (key := _recalled(subject, now))}
    if unknown := subjects - found.keys():
        read = _read_live(unknown, keep_at=now)
        if missing := unknown - read.keys():
            _lock_subjects(missing)
            # Two writers making one person's key: one wins, and the other reads it.
            SubjectKey.objects.bulk_create(
                [SubjectKey(subject=subject, wrapped=_wrap(subject)) for subject in missing],
                ignore_conflicts=True,
            )
            read |= _read_live(missing)
        found |= read
    return found


# Keys this process wrote with lately, so that an audited write costs no query for its key:
# a few, for KEY_KEPT_SECONDS, and only on PostgreSQL, where a key is kept once it is surely
# committed (made before this transaction began: a key made in a transaction rolled back is
# none). Reading entries never uses them (an erased key is never read), and the process that
# erases forgets them; another may seal a few entries under a key erased meanwhile, which then
# read as erased too.
KEY_KEPT_SECONDS = 60
KEYS_KEPT = 1024
_kept: OrderedDict[int, tuple[float, tuple[int, AESGCM]]] = OrderedDict()
_kept_lock = threading.Lock()


def _recalled(subject: int, now: float) -> tuple[int, AESGCM] | None:
    with _kept_lock:
        kept = _kept.get(subject)
        if kept is None or now - kept[0] > KEY_KEPT_SECONDS:
            return None
        return kept[1]


def _remember(keys: dict[int, tuple[int, AESGCM]], at: float) -> None:
    with _kept_lock:
        for subject, key in keys.items():
            _kept[subject] = (at, key)
            _kept.move_to_end(subject)
        while len(_kept) > KEYS_KEPT:
            _kept.popitem(last=False)


def forget_keys(subjects: tuple[int, ...] | None = None) -> None:
    """Drop the kept keys of these subjects (None: all)."""
    with _kept_lock:
        for subject in list(_kept) if subjects is None else subjects:
            _kept.pop(subject, None)


def _lock_subjects(subjects: set[int]) -> None:
    """On PostgreSQL, wait for an erasure of any of them to end, and hold it off until this
    transaction ends: a key made meanwhile would outlive the erasure (audit/roles.py)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for subject in sorted(subjects):
            cursor.execute(f"SELECT pg_advisory_xact_lock({roles.SUBJECT_LOCK_SQL})", [subject])


def _read_live(subjects: set[int], *, keep_at: float | None = None) -> dict:
    keys = SubjectKey.objects.filter(subject__in=subjects, erased_at=None).annotate(
        settled=ExpressionWrapper(Q(created_at__lt=Now()), output_field=BooleanField())
    )
    read, settled = {}, {}
    for key_id, subject, wrapped, made_before in keys.values_list(
        "id", "subject", "wrapped", "settled"
    ):
        read[subject] = (key_id, _unwrap(subject, bytes(wrapped)))
        if made_before:
            settled[subject] = read[subject]
    if keep_at is not None and connection.vendor == "postgresql":
        _remember(settled, keep_at)
    return read


def _wrap(subject: int) -> bytes:
    nonce = os.urandom(NONCE)
    key = AESGCM.generate_key(256)
    return nonce + _wrapping(settings.AUDIT_HMAC_KEY).encrypt(nonce, key, b"%d" % subject)


def _unwrap(subject: int, wrapped: bytes) -> AESGCM:
    wrapping = _wrapping(settings.AUDIT_HMAC_KEY)
    return AESGCM(wrapping.decrypt(wrapped[:NONCE], wrapped[NONCE:], b"%d" % subject))


class _Sealer:
    """Seals the parts of a batch of entries. The same data under the same key is sealed once
    a batch (a bulk write's entries share their actor's): equal ciphertexts tell only that
    entries of one write hold the same data, and a nonce is never used for two texts."""

    def __init__(self, keys: dict[int, tuple[int, AESGCM]]):
        self.keys = keys
        self.sealed: dict[tuple[int, str], str] = {}
        self.hashed: dict[str, str] = {}

    def part(self, subject: int, fields: dict) -> str:
        key_id, key = self.keys[subject]
        plain = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        if (key_id, plain) not in self.sealed:
            nonce = os.urandom(NONCE)
            data = nonce + key.encrypt(nonce, plain.encode(), b"%d" % key_id)
            text = base64.urlsafe_b64encode(data).decode()
            self.sealed[key_id, plain] = f"{PREFIX}.{key_id}.{text}"
        return self.sealed[key_id, plain]

    def hash(self, text: str) -> str:
        if text not in self.hashed:
            self.hashed[text] = search_hash(text) if text else ""
        return self.hashed[text]


def seal(entries: list[dict]) -> list[dict]:
    """The entries (plain column values) as they are stored: each person's data sealed."""
    parts = [_parts_of(entry) for entry in entries]
    subjects = {subject for found in parts for subject in found}
    if not subjects:
        return entries
    sealer = _Sealer(_live_keys(subjects))
    return [
        _sealed(entry, found, sealer) if found else entry
        for entry, found in zip(entries, parts, strict=True)
    ]


def _parts_of(entry: dict) -> dict[int, dict]:
    """The entry's personal data, by the person it is about: the actor's email, address and
    browser; in an entry about a user, their label and the entry's metadata (their changed
    values, an email they asked about), and the address and browser of an anonymous actor
    (most often themselves, signed out)."""
    parts: dict[int, dict] = {}
    actor, target = entry["user_id"], _subject_of_target(entry)
    if any(entry[field] for field in ACTOR_FIELDS) and (actor or target) is not None:
        parts[actor if actor is not None else target] = {f: entry[f] for f in ACTOR_FIELDS}
    if target is not None and (entry["resource_label"] or entry["metadata"]):
        own = {"resource_label": entry["resource_label"], "metadata": entry["metadata"]}
        parts.setdefault(target, {}).update(own)
    return parts


def _sealed(entry: dict, parts: dict[int, dict], sealer: _Sealer) -> dict:
    hidden = {field for fields in parts.values() for field in fields}
    stored = {
        **entry,
        **{field: BLANK[field] for field in hidden if field in BLANK},
        "sealed": " ".join(sealer.part(subject, fields) for subject, fields in parts.items()),
        "email_hash": sealer.hash(entry["user_email"]),
        "ip_hash": sealer.hash(entry["ip_address"] or ""),
    }
    if "metadata" in hidden:
        stored["metadata"] = dict.fromkeys(entry["metadata"], ERASED)
    # What an erasure leaves: the description with [erased] in place of the data.
    stored["description"] = _description(
        {**stored, **{field: ERASED for field in hidden & BLANK.keys() if entry[field]}}
    )
    return stored


def _description(entry: dict) -> str:
    """The entry's description from the values it shows: the same as it was written with where
    the data is live, and `[erased]` in its place where it is not (an action no longer
    registered keeps what it was written with)."""
    metadata = entry["metadata"]
    if not registry.is_registered(entry["action"]) or not isinstance(metadata, dict):
        return entry["description"]
    label = entry["resource_label"]
    named = f"{entry['resource_type']} {label or entry['resource_id']}"
    return audit_context.clean_text(
        registry.action(entry["action"]).describe(
            actor=entry["user_email"] or "anonymous",
            target=named if entry["resource_type"] else "",
            **metadata,
        ),
        DESCRIPTION_LENGTH,
    )


def reveal(entries: list[AuditLog]) -> None:
    """Show the entries' personal data where their subject's key is live, `[erased]` where it
    was destroyed; in place, with one query for the keys of all of them."""
    sealed = {entry.pk: _read_parts(entry.sealed) for entry in entries if entry.sealed}
    if not sealed:
        return
    key_ids = {key_id for found in sealed.values() for key_id, _ in found}
    keys = {
        key_id: (subject, _opened(subject, wrapped))
        for key_id, subject, wrapped in SubjectKey.objects.filter(id__in=key_ids).values_list(
            "id", "subject", "wrapped"
        )
    }
    for entry in entries:
        if entry.pk in sealed:
            _show(entry, sealed[entry.pk], keys)


def _opened(subject: int, wrapped) -> AESGCM | None:
    """The key, or None: erased (or its row rewritten, which reads as erased)."""
    try:
        return _unwrap(subject, bytes(wrapped)) if wrapped is not None else None
    except (InvalidTag, ValueError):
        return None


def _read_parts(sealed: str) -> list[tuple[int, bytes]]:
    """(key id, nonce and ciphertext) of each part; a part rewritten out of shape in the
    database reads as erased (and breaks its entry's digest)."""
    found = []
    for part in sealed.split():
        prefix, _, rest = part.partition(".")
        key_id, _, data = rest.partition(".")
        try:
            if prefix != PREFIX or not 0 < int(key_id) < 2**63:
                raise ValueError(part)
            found.append((int(key_id), base64.urlsafe_b64decode(data)))
        except ValueError:
            found.append((0, b""))
    return found


def _show(entry: AuditLog, parts: list[tuple[int, bytes]], keys: dict) -> None:
    shown = {}
    target = _subject_of_target(vars(entry))
    for key_id, data in parts:
        subject, key = keys.get(key_id, (None, None))
        try:
            shown.update(json.loads(key.decrypt(data[:NONCE], data[NONCE:], b"%d" % key_id)))
        except (AttributeError, InvalidTag, ValueError):  # erased (or not this trail's)
            if subject is None or subject == (entry.user_id or target):
                shown.update(user_email=ERASED, ip_address=None, user_agent=ERASED)
            if subject is None or subject == target:
                shown["resource_label"] = ERASED
    for field, value in shown.items():
        setattr(entry, field, value)
    entry.description = _description(vars(entry))


def with_email(term: str) -> Q:
    """The entries of the people whose email is `term` or starts with it, while they are not
    erased: as the actor (by the keyed hash of an email they used, or their id) or as the user
    an entry is about. Older entries hold the email in plain text, found by their columns."""
    live = SubjectKey.objects.filter(erased_at=None).values("subject")
    users = get_user_model().objects.filter(email__istartswith=term.strip(), pk__in=live)
    ids = list(users.order_by("pk").values_list("pk", flat=True)[:MAX_SEARCHED_USERS])
    return (
        Q(email_hash=search_hash(term), user_id__in=live)
        | Q(user_id__in=ids)
        | Q(resource_type=user_resource_type(), resource_id__in=[str(pk) for pk in ids])
    )


def with_address(ip: str) -> Q:
    """The entries from this IP address: in plain text, or by its keyed hash where sealed
    (not an erased person's own)."""
    ip = audit_context.clean_ip(ip)
    live = SubjectKey.objects.filter(erased_at=None).values("subject")
    return Q(ip_address=ip) | Q(ip_hash=search_hash(ip)) & (Q(user_id=None) | Q(user_id__in=live))


def entries_of(subject: int) -> Q:
    return Q(user_id=subject) | Q(resource_type=user_resource_type(), resource_id=str(subject))


@transaction.atomic
def erase_subject(subject: int, *, basis: str, via: str | None = None) -> dict:
    """Destroy the person's keys: their entries keep verifying and show `[erased]`. Refused
    while a legal hold keeps any entry by or about them. One audit entry records it first (on
    PostgreSQL the owner's audit_erase_subject() requires it, and checks the holds again under
    a lock), and an AdminAction names the staff member who asked (`via`: the staff API; a
    command has none). Says how many keys were destroyed, and how many older entries, written
    before sealing, keep their data in plain text (`unsealed`)."""
    from audit import holds, services

    basis = basis.strip()
    if not basis:
        raise ValidationError({"basis": ["Say on what basis the data is erased."]})
    active = holds.active_holds()
    held = holds.held_by(active)
    if any(hold.user_id == subject for hold in active) or (
        held is not None and AuditLog.objects.filter(entries_of(subject)).filter(held).exists()
    ):
        raise Held(HELD)
    unsealed = AuditLog.objects.filter(entries_of(subject), sealed="").exclude(
        user_email="", ip_address=None, user_agent="", resource_label=""
    )
    details = {"subject": subject, "unsealed": unsealed.count(), "basis": basis}
    services.log("audit.subject_erased", target=(roles.ERASURE_TYPE, subject), metadata=details)
    by_email = audit_context.current().actor()[1]
    forget_keys((subject,))
    transaction.on_commit(partial(forget_keys, (subject,)))  # and what a writer kept meanwhile
    if connection.vendor == "postgresql":
        keys = _erase_as_owner(subject, by_email, basis)
    else:
        keys = SubjectKey.objects.filter(subject=subject, erased_at=None).update(
            wrapped=None, erased_at=timezone.now(), erased_by_email=by_email, basis=basis
        )
    if via:
        services.record_admin_action(via, action="audit.subject_erased", details=details)
    return {**details, "keys": keys}


def _erase_as_owner(subject: int, by_email: str, basis: str) -> int:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit_erase_subject(%s, %s, %s)", [subject, by_email, basis])
            return cursor.fetchone()[0]
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == roles.HELD:  # placed meanwhile
            raise Held(HELD) from error
        raise


class Held(ConflictError):
    """A legal hold keeps the person's entries."""
