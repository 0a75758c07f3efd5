"""Legal holds (audit/models.py LegalHold): entries the retention cleanup never deletes and
an erasure never reaches, whatever their age, until a staff member releases the hold. Placing
and releasing are audited, and so is each cleanup's count of the entries a hold kept."""

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import context as audit_context
from audit import registry, services
from audit.models import LegalHold

RELEASED = "This hold was released already."
NOT_ACTIVE = "P0002"  # no_data_found, from audit_release_hold()
CRITERIA = ("user_id", "resource_type", "resource_id", "category", "starts_at", "ends_at")


def criteria_of(hold: LegalHold) -> dict:
    values = {field: getattr(hold, field) for field in CRITERIA}
    return services.normalize_json({k: v for k, v in values.items() if v not in (None, "")})


@transaction.atomic
def place_legal_hold(
    *,
    reason: str,
    user_id: int | None = None,
    resource_type: str = "",
    resource_id: str = "",
    category: str = "",
    starts_at=None,
    ends_at=None,
    via: str,
) -> LegalHold:
    reason = reason.strip()
    errors = {}
    if not reason:
        errors["reason"] = ["Say why the entries are held."]
    if resource_id and not resource_type:
        errors["resource_type"] = ["A resource id needs its type."]
    if category and category not in registry.categories():
        errors["category"] = [f"Not a category of the trail: {', '.join(registry.categories())}."]
    if starts_at and ends_at and ends_at <= starts_at:
        errors["ends_at"] = ["Must be after starts_at."]
    if errors:
        raise ValidationError(errors)
    hold = LegalHold.objects.create(
        reason=reason,
        user_id=user_id,
        resource_type=resource_type,
        resource_id=resource_id,
        category=category,
        starts_at=starts_at,
        ends_at=ends_at,
        placed_by_email=audit_context.current().actor()[1],
    )
    details = {"hold": hold.pk, "reason": reason, "criteria": criteria_of(hold)}
    services.log("audit.hold_placed", target=("legal_hold", hold.pk), metadata=details)
    services.record_admin_action(via, action="audit.hold_placed", target=hold, details=details)
    return hold


@transaction.atomic
def release_legal_hold(hold: LegalHold, *, reason: str, via: str) -> LegalHold:
    hold = LegalHold.objects.get(pk=hold.pk)  # two at once: the owner's function refuses one
    if hold.released_at is not None:
        raise ValidationError({"non_field_errors": [RELEASED]})
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the hold ends."]})
    details = {"hold": hold.pk, "reason": reason, "criteria": criteria_of(hold)}
    services.log("audit.hold_released", target=("legal_hold", hold.pk), metadata=details)
    _release(hold, audit_context.current().actor()[1], reason)
    hold.refresh_from_db()
    services.record_admin_action(via, action="audit.hold_released", target=hold, details=details)
    return hold


def _release(hold: LegalHold, by_email: str, reason: str) -> None:
    """On PostgreSQL through the owner's audit_release_hold(), which requires the release's
    audit entry in this transaction (audit/roles.py)."""
    if connection.vendor != "postgresql":
        hold.released_at = timezone.now()
        hold.released_by_email, hold.release_reason = by_email, reason
        hold.save(update_fields=["released_at", "released_by_email", "release_reason"])
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit_release_hold(%s, %s, %s)", [hold.pk, by_email, reason])
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == NOT_ACTIVE:
            raise ValidationError({"non_field_errors": [RELEASED]}) from error
        raise


def active_holds() -> list[LegalHold]:
    return list(LegalHold.objects.filter(released_at=None).order_by("id"))


def held_by(holds: list[LegalHold]) -> Q | None:
    """The entries any of the holds keeps (None: no hold, nothing held)."""
    if not holds:
        return None
    held = Q(pk__in=[])
    for hold in holds:
        held |= hold.entries()
    return held
